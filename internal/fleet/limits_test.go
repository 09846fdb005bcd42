package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// TestDeployAccountLimits (T5): deploy/nats gives the fleet's account
// JetStream limits (max_file, max_mem), which bound what all the hosts
// together, a compromised one among them, can make the servers keep.
func TestDeployAccountLimits(t *testing.T) {
	ns := startDeployServer(t)
	ai, err := hostJS(t, ns, "h2").AccountInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ai.Limits.MaxStore != 1<<30 || ai.Limits.MaxMemory != 64<<20 {
		t.Errorf("the account's limits as h2 sees them: max_file %d, max_mem %d; want 1GiB, 64MiB", ai.Limits.MaxStore, ai.Limits.MaxMemory)
	}
}

// TestBucketsHaveLimits (T3, T4): the buckets a host creates are bounded
// by the servers: MaxBytes on each, MaxAge fleet.max_timeout on blocks
// and lifts and the correlation window on sightings.
func TestBucketsHaveLimits(t *testing.T) {
	ns := startServer(t, nil)
	h1 := startHost(t, ns, "h1")
	h1.waitReady(t)
	js := adminJS(t, ns)
	for bucket, age := range map[string]time.Duration{BucketBlocks: 7 * 24 * time.Hour, BucketLifts: 7 * 24 * time.Hour,
		BucketSightings: 10 * time.Minute, BucketHosts: 0} {
		s, err := js.Stream(t.Context(), "KV_"+bucket)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		if cfg.MaxBytes != BucketBytes(bucket, DefaultFleetSize) || cfg.MaxAge != age || cfg.Discard != jetstream.DiscardNew {
			t.Errorf("%s: max_bytes %d, max_age %s, discard %s; want %d, %s, new", bucket, cfg.MaxBytes, cfg.MaxAge, cfg.Discard,
				BucketBytes(bucket, DefaultFleetSize), age)
		}
	}
}

// TestFloodStopsAtTheLimits (T3, T5): after the administrator's setup
// (sized here for one host), h2, compromised, writes 100,000 block records
// of 64 ports with its own credentials as fast as it can. The servers
// refuse what goes beyond the bucket's MaxBytes; the bucket stays within
// it, and the administrator's lifts still go through (their own bucket).
func TestFloodStopsAtTheLimits(t *testing.T) {
	ns := startDeployServer(t)
	adm := startAdmin(t, ns, deployAuth(t, "admin"))
	rep, err := adm.Setup(t.Context(), 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Buckets) != 4 || rep.AccountMax != 1<<30 || rep.Reserved != 21<<20+64<<10 {
		t.Errorf("setup: %+v", rep)
	}
	nc := hostJS(t, ns, "h2").Conn()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		t.Fatal(err)
	}
	ok, refused, other := flood(t, js, 100000)
	s, err := js.Stream(t.Context(), "KV_"+BucketBlocks)
	if err != nil {
		t.Fatal(err)
	}
	st := s.CachedInfo().State
	t.Logf("h2 wrote %d of 100000 records; %d refused, %v other errors; the bucket holds %d records, %d bytes", ok, refused, other, st.Msgs, st.Bytes)
	if refused == 0 || other != nil || st.Bytes > uint64(BucketBytes(BucketBlocks, 1)) {
		t.Errorf("h2's flood: %d written, %d refused (%v), %d bytes kept; want refusals beyond %d bytes", ok, refused, other, st.Bytes,
			BucketBytes(BucketBlocks, 1))
	}
	if err := adm.Unblock(t.Context(), []netip.Addr{addr("198.18.0.1")}); err != nil {
		t.Errorf("the administrator's lift with the blocks bucket full: %v", err)
	}
	// Sized for 100 hosts at 3 replicas, the buckets do not fit max_file.
	if _, err := adm.Setup(t.Context(), 100, 3); err == nil || !strings.Contains(err.Error(), "max_file") {
		t.Errorf("setup beyond the account's max_file: %v", err)
	}
}

// flood writes n block records under h2's key with js, asynchronously,
// and counts those acknowledged and those the servers refused for their
// limits; other is the first other error.
func flood(t *testing.T, js jetstream.JetStream, n int) (ok, refused int, other error) {
	t.Helper()
	ports := make([]uint16, maxPorts)
	for i := range ports {
		ports[i] = uint16(1000 + i)
	}
	exp := time.Now().Add(time.Hour)
	futs := make([]jetstream.PubAckFuture, 0, n)
	for i := range n {
		a := netip.AddrFrom4([4]byte{198, byte(18 + i>>16), byte(i >> 8), byte(i)})
		rec := blockRecord{Addr: a.String(), Expires: exp, Origin: OriginDetect, ScanType: "TCP SYN scan", Ports: ports}
		f, err := js.PublishAsync(Subject(BucketBlocks, HostAddrKey("h2", a)), marshal(rec), jetstream.WithMsgTTL(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		futs = append(futs, f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, f := range futs {
		select {
		case <-f.Ok():
			ok++
		case err := <-f.Err():
			var apiErr *jetstream.APIError
			if errors.As(err, &apiErr) && strings.Contains(apiErr.Description, "maximum bytes exceeded") {
				refused++
			} else if other == nil {
				other = err
			}
		case <-ctx.Done():
			t.Fatal("the servers did not answer the flood")
		}
	}
	return ok, refused, other
}

// TestUnboundedBucketSaid: a host that binds to a bucket the servers do
// not bound (made by an older version) says so, once, and works with it.
func TestUnboundedBucketSaid(t *testing.T) {
	ns := startServer(t, nil)
	if _, err := adminJS(t, ns).CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: BucketBlocks, History: 1,
		LimitMarkerTTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	var logs netnstest.Output
	h1 := startHost(t, ns, "h1", func(_ *config.Fleet, o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	h1.waitReady(t)
	if l := logs.String(); strings.Count(l, "a bucket without limits") != 1 || !strings.Contains(l, "bucket="+BucketBlocks) {
		t.Errorf("log:\n%s", l)
	}
}

// TestAdminList: the administrator lists every host's blocks (its own
// among them) and the lifts.
func TestAdminList(t *testing.T) {
	ns := startServer(t, nil)
	h1 := startHost(t, ns, "h1")
	h1.waitReady(t)
	adm := startAdmin(t, ns)
	a, b := addr("192.0.2.7"), addr("2001:db8::8")
	h1.c.Publish(Block{Addr: a, Expires: time.Now().Add(time.Hour), Origin: OriginDetect, ScanType: "TCP SYN scan", Evidence: EvidenceHandshake})
	if err := adm.Block(t.Context(), []netip.Addr{a, b}, time.Hour, "feed"); err != nil {
		t.Fatal(err)
	}
	h1.waitStats(t, "published", func(s Stats) bool { return s.OutboxDepth == 0 && s.Published >= 2 })
	if err := adm.Unblock(t.Context(), []netip.Addr{b}); err != nil {
		t.Fatal(err)
	}
	l, err := adm.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range l.Blocks {
		got = append(got, fmt.Sprintf("%s %s %s %v", r.Addr, r.Host, r.Evidence, r.Admin))
	}
	want := []string{"192.0.2.7 admin admin true", "192.0.2.7 h1 handshake false"}
	if !slices.Equal(got, want) || len(l.Lifts) != 1 || l.Lifts[0].Addr != b || !l.Lifts[0].Admin || l.Unreadable != 0 {
		t.Errorf("list: blocks %q, lifts %+v (%d unreadable); want %q and the lift of %s", got, l.Lifts, l.Unreadable, want, b)
	}
}
