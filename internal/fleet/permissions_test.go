package fleet

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// deployConf is the configuration of one server of deploy/nats.
const deployConf = "../../deploy/nats/n1.conf"

// startDeployServer runs one server with the users and permissions of
// deploy/nats, parsed from its files, alone (no cluster) and in-process.
func startDeployServer(t *testing.T) *server.Server {
	t.Helper()
	opts, err := server.ProcessConfigFile(deployConf)
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.Nkeys) != 4 {
		t.Fatalf("%s: %d nkey users, want admin, h1, h2, h3", deployConf, len(opts.Nkeys))
	}
	opts.Cluster = server.ClusterOpts{}
	opts.Routes = nil
	opts.RoutesStr = ""
	opts.DontListen = true
	opts.StoreDir = t.TempDir()
	return startServer(t, opts)
}

// TestDeployPermissions: hosts h1 and h2 of deploy/nats do all the fleet
// needs under their permissions (create the buckets, publish, watch,
// correlate, lift, purge their own records) without a single violation.
func TestDeployPermissions(t *testing.T) {
	ns := startDeployServer(t)
	var logs netnstest.Output
	as := func(user string) func(*config.Fleet, *Options) {
		return func(f *config.Fleet, o *Options) {
			asDeployUser(f, user)
			f.Correlate.Hosts = 2
			o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		}
	}
	h1, h2 := startHost(t, ns, "h1", as("h1")), startHost(t, ns, "h2", as("h2"))
	h1.waitReady(t)
	h2.waitReady(t)
	a, b := addr("203.0.113.5"), addr("203.0.113.4")
	h1.c.Publish(Block{Addr: a, Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
	h2.c.Publish(Block{Addr: b, Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
	h2.sink.waitBlocks(t, a, 1)
	h1.sink.waitBlocks(t, b, 1)
	waitOwn(t, h1, a)
	h2.c.Unblock(b) // h2's own block: lifted on h1
	h1.sink.waitFor(t, "h2's lift", func(_ []Block, ls []Lift) bool { return len(ls) == 1 })
	// The administrator's lift of h1's block: h1 purges its record.
	adm := startAdmin(t, ns, deployAuth(t, "admin"))
	if err := adm.Unblock(t.Context(), []netip.Addr{a}); err != nil {
		t.Fatal(err)
	}
	h1.sink.waitFor(t, "the administrator's lift", func(_ []Block, ls []Lift) bool { return len(ls) == 2 })
	c := addr("2001:db8::c")
	h1.c.Sighting(c)
	h2.c.Sighting(c)
	h1.sink.waitBlocks(t, c, 1)
	h2.sink.waitBlocks(t, c, 1)
	h1.c.SetOwnAddresses([]netip.Addr{addr("192.0.2.10")})
	h1.waitStats(t, "all sent", func(s Stats) bool { return s.OutboxDepth == 0 && s.PublishErrors == 0 })
	h2.waitStats(t, "all sent", func(s Stats) bool { return s.OutboxDepth == 0 && s.PublishErrors == 0 })
	// h1 purged its record after the administrator's lift.
	kv, err := adminKV(t, ns, BucketBlocks)
	if err != nil {
		t.Fatal(err)
	}
	waitPurged(t, kv, HostAddrKey("h1", a), "h1 did not purge its record")
	if l := logs.String(); strings.Contains(strings.ToLower(l), "permission") || strings.Contains(l, "level=ERROR") {
		t.Errorf("violations or errors under deploy/nats permissions:\n%s", l)
	}
}

// TestDeployPermissionBoundary: h2's credentials cannot write, delete or
// purge h1's records, nor write any record under the administrator's
// name (which every host trusts), nor delete, purge or change a bucket,
// nor read h1's inbox; they can write h2's own records.
func TestDeployPermissionBoundary(t *testing.T) {
	ns := startDeployServer(t)
	h1 := startHost(t, ns, "h1", func(f *config.Fleet, o *Options) {
		asDeployUser(f, "h1")
	})
	h1.waitReady(t) // the buckets exist
	var asyncErrs netnstest.Output
	nc, err := nats.Connect("", nats.InProcessServer(ns), deployAuth(t, "h2"),
		nats.CustomInboxPrefix("_INBOX_h2"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { asyncErrs.Write([]byte(err.Error() + "\n")) }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	a := addr("203.0.113.6")
	rec := marshal(blockRecord{Addr: a.String(), Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
	short := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), time.Second)
	}

	// Allowed: its own records.
	ctx, cancel := short()
	if _, err := js.Publish(ctx, Subject(BucketBlocks, HostAddrKey("h2", a)), rec, jetstream.WithMsgTTL(time.Hour)); err != nil {
		t.Errorf("h2 cannot write its own block: %v", err)
	}
	cancel()

	denied := []struct {
		what string
		do   func(ctx context.Context) error
	}{
		{"write a block as h1", func(ctx context.Context) error {
			_, err := js.Publish(ctx, Subject(BucketBlocks, HostAddrKey("h1", a)), rec)
			return err
		}},
		{"write a lift as h1", func(ctx context.Context) error {
			_, err := js.Publish(ctx, Subject(BucketLifts, HostAddrKey("h1", a)), rec)
			return err
		}},
		{"write a sighting as h1", func(ctx context.Context) error {
			_, err := js.Publish(ctx, Subject(BucketSightings, SightingKey(a, "h1")), rec)
			return err
		}},
		{"write h1's addresses", func(ctx context.Context) error {
			_, err := js.Publish(ctx, Subject(BucketHosts, "h1"), rec)
			return err
		}},
		{"write a block as the administrator", func(ctx context.Context) error {
			_, err := js.Publish(ctx, Subject(BucketBlocks, HostAddrKey(AdminName, a)), rec)
			return err
		}},
		{"write a lift as the administrator", func(ctx context.Context) error {
			_, err := js.Publish(ctx, Subject(BucketLifts, HostAddrKey(AdminName, a)), rec)
			return err
		}},
		{"write a sighting as the administrator", func(ctx context.Context) error {
			_, err := js.Publish(ctx, Subject(BucketSightings, SightingKey(a, AdminName)), rec)
			return err
		}},
		{"write the administrator's host record", func(ctx context.Context) error {
			_, err := js.Publish(ctx, Subject(BucketHosts, AdminName), rec)
			return err
		}},
		{"purge h1's block", func(ctx context.Context) error {
			_, err := js.PublishMsg(ctx, &nats.Msg{Subject: Subject(BucketBlocks, HostAddrKey("h1", a)), Header: purgeHeader()})
			return err
		}},
		{"delete the blocks bucket", func(ctx context.Context) error { return js.DeleteKeyValue(ctx, BucketBlocks) }},
		{"delete the blocks stream", func(ctx context.Context) error { return js.DeleteStream(ctx, "KV_"+BucketBlocks) }},
		{"purge the blocks stream", func(ctx context.Context) error {
			s, err := js.Stream(ctx, "KV_"+BucketBlocks)
			if err != nil {
				return err
			}
			return s.Purge(ctx)
		}},
		{"change the blocks bucket", func(ctx context.Context) error {
			_, err := js.UpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: BucketBlocks, History: 5})
			return err
		}},
		{"create another stream", func(ctx context.Context) error {
			_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}})
			return err
		}},
	}
	// A denied publish is never answered: each waits for its timeout, all at once.
	var wg sync.WaitGroup
	for _, d := range denied {
		wg.Go(func() {
			ctx, cancel := short()
			defer cancel()
			if err := d.do(ctx); err == nil {
				t.Errorf("h2 could %s", d.what)
			}
		})
	}
	wg.Wait()
	// Refused by the permissions, not by chance.
	for _, subj := range []string{Subject(BucketBlocks, HostAddrKey("h1", a)), Subject(BucketBlocks, HostAddrKey(AdminName, a)),
		Subject(BucketLifts, HostAddrKey(AdminName, a)), "$JS.API.STREAM.DELETE.KV_" + BucketBlocks,
		"$JS.API.STREAM.PURGE.KV_" + BucketBlocks, "$JS.API.STREAM.UPDATE.KV_" + BucketBlocks} {
		if !strings.Contains(asyncErrs.String(), `Publish to "`+subj+`"`) {
			t.Errorf("no permissions violation for %s; async errors:\n%s", subj, asyncErrs.String())
		}
	}
	// Reading h1's replies: the subscription is refused.
	if _, err := nc.SubscribeSync("_INBOX_h1.>"); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	time.Sleep(100 * time.Millisecond)
	if !strings.Contains(asyncErrs.String(), `Subscription to "_INBOX_h1.>"`) {
		t.Errorf("h2 may subscribe to h1's inbox; async errors: %s", asyncErrs.String())
	}
	// The live records are the servers' word: a host reads them, and
	// cannot publish one (live.go).
	live := LivePrefix(BucketBlocks) + HostAddrKey("h1", a)
	if _, err := nc.SubscribeSync(LivePrefix(BucketBlocks) + ">"); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(live, rec); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	time.Sleep(100 * time.Millisecond)
	if !strings.Contains(asyncErrs.String(), `Publish to "`+live+`"`) {
		t.Errorf("h2 may publish a live record; async errors: %s", asyncErrs.String())
	}
	if strings.Contains(asyncErrs.String(), `Subscription to "`+LivePrefix(BucketBlocks)) {
		t.Errorf("h2 may not follow the live records; async errors: %s", asyncErrs.String())
	}
	// Nothing of h1's changed, and the bucket is there.
	kv, err := adminKV(t, ns, BucketBlocks)
	if err != nil {
		t.Fatalf("the blocks bucket: %v", err)
	}
	if _, err := kv.Get(context.Background(), HostAddrKey("h1", a)); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("h1's key: %v, want not found", err)
	}
	if _, err := kv.Get(context.Background(), HostAddrKey("h2", a)); err != nil {
		t.Errorf("h2's own key: %v", err)
	}
}

// adminKV opens bucket as deploy/nats's administrator.
func adminKV(t *testing.T, ns *server.Server, bucket string) (jetstream.KeyValue, error) {
	t.Helper()
	js := adminJS(t, ns, deployAuth(t, "admin"))
	return js.KeyValue(context.Background(), bucket)
}
