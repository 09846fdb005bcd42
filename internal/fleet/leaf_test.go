package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// startHubAndLeaf runs a hub server (JetStream domain hub) and a leaf
// server (domain site_a) logged in to it, and waits for their link.
func startHubAndLeaf(t *testing.T) (hub, leaf *server.Server) {
	t.Helper()
	port := freePorts(t, 1)[0]
	hub = startServer(t, &server.Options{DontListen: true, JetStreamDomain: "hub",
		LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: port}})
	u, err := url.Parse(fmt.Sprintf("nats-leaf://127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	leaf = startServer(t, &server.Options{DontListen: true, JetStreamDomain: "site_a",
		LeafNode: server.LeafNodeOpts{Remotes: []*server.RemoteLeafOpts{{URLs: []*url.URL{u}}}}})
	deadline := time.Now().Add(10 * time.Second)
	for hub.NumLeafNodes() != 1 || leaf.NumLeafNodes() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the leaf did not connect to the hub")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return hub, leaf
}

func atSite(c *config.Fleet, _ *Options) { c.Domain, c.LocalDomain = "hub", "site_a" }
func onHub(c *config.Fleet, _ *Options)  { c.Domain = "hub" }

// A host at a site (logged in to its leaf: fleet.domain hub,
// fleet.local_domain site_a) and a host on the hub: each one's block
// reaches the other. The site's host writes to the hub's bucket, under its
// own key, and watches its leaf's copy: a mirror of the hub's bucket with
// its limits, which holds the hub's record with the same revision.
func TestLeafSiteSharesWithTheHub(t *testing.T) {
	hub, leaf := startHubAndLeaf(t)
	h1 := startHost(t, hub, "h1", onHub)
	h1.waitReady(t)
	h2 := startHost(t, leaf, "h2", atSite)
	h2.waitReady(t)
	a1, a2 := addr("203.0.113.1"), addr("203.0.113.2")
	exp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	h1.c.Publish(Block{Addr: a1, Expires: exp, Origin: OriginDetect})
	if b := h2.sink.waitBlocks(t, a1, 1)[0]; b.Host != "h1" || !b.Expires.Equal(exp) {
		t.Errorf("h2 got %+v", b)
	}
	h2.c.Publish(Block{Addr: a2, Expires: exp, Origin: OriginDetect})
	if b := h1.sink.waitBlocks(t, a2, 1)[0]; b.Host != "h2" || !b.Expires.Equal(exp) {
		t.Errorf("h1 got %+v", b)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hubJS, localJS := jsOn(t, hub), jsOn(t, leaf)
	hs, err := hubJS.Stream(ctx, "KV_"+BucketBlocks)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := localJS.Stream(ctx, "KV_"+BucketBlocks)
	if err != nil {
		t.Fatal(err)
	}
	lc, hc := ls.CachedInfo().Config, hs.CachedInfo().Config
	if lc.Mirror == nil || lc.Mirror.Name != hc.Name || lc.MaxAge != hc.MaxAge || lc.MaxBytes != hc.MaxBytes ||
		lc.SubjectDeleteMarkerTTL != 0 || !lc.AllowMsgTTL || len(lc.Subjects) != 0 {
		t.Errorf("the site's copy: %+v\nthe hub's bucket: %+v", lc, hc)
	}
	key := HostAddrKey("h2", a2)
	hkv, err := hubJS.KeyValue(ctx, BucketBlocks)
	if err != nil {
		t.Fatal(err)
	}
	he, err := hkv.Get(ctx, key)
	if err != nil {
		t.Fatalf("h2's record on the hub: %v", err)
	}
	lkv, err := localJS.KeyValue(ctx, BucketBlocks)
	if err != nil {
		t.Fatal(err)
	}
	// The copy follows the hub on its own (h1 read the hub's).
	le, err := lkv.Get(ctx, key)
	for deadline := time.Now().Add(5 * time.Second); err != nil && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		le, err = lkv.Get(ctx, key)
	}
	if err != nil || le.Revision() != he.Revision() {
		t.Errorf("h2's record in the copy: %v (revision %d, the hub's %d)", err, revision(le), he.Revision())
	}
}

func revision(e jetstream.KeyValueEntry) uint64 {
	if e == nil {
		return 0
	}
	return e.Revision()
}

// jsOn is a JetStream context of the account's own domain on ns.
func jsOn(t *testing.T, ns *server.Server) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// The site's leaf holds a bucket of that name that is not a copy (made
// by hand in the wrong domain): the host says so and does not watch it.
func TestLeafRefusesABucketThatIsNotACopy(t *testing.T) {
	hub, leaf := startHubAndLeaf(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := jsOn(t, leaf).CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: BucketHosts}); err != nil {
		t.Fatal(err)
	}
	_ = hub
	var logs netnstest.Output
	h := startHost(t, leaf, "h2", atSite, func(_ *config.Fleet, o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(logs.String(), "is not a copy of the hub's") {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal of the local bucket; log:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case <-h.c.Ready():
		t.Error("ready on a bucket that is not a copy")
	default:
	}
}

// domainJS puts the domain's API prefix in front of a record's subject,
// and leaves the message it was given as it was (the outbox keeps it).
func TestDomainJSSubject(t *testing.T) {
	d := domainJS{prefix: "$JS.hub.API."}
	m := &nats.Msg{Subject: Subject(BucketBlocks, "h1.203-0-113-7"), Data: []byte("x"), Header: nats.Header{"A": {"b"}}}
	got := d.toDomain(m)
	if got.Subject != "$JS.hub.API.$KV.portsentry_blocks.h1.203-0-113-7" || string(got.Data) != "x" || got.Header.Get("A") != "b" {
		t.Errorf("toDomain: %+v", got)
	}
	if m.Subject != "$KV.portsentry_blocks.h1.203-0-113-7" {
		t.Errorf("the original changed: %s", m.Subject)
	}
}

// A host that starts at a site cut off from the hub (here: the hub is
// down) watches its leaf's copy: it gets the blocks the copy held, and
// its own block waits in its outbox until the hub is back, then reaches
// the hub's bucket.
func TestLeafHostStartsWithoutTheHub(t *testing.T) {
	port := freePorts(t, 1)[0]
	hubOpts := func(dir string) *server.Options {
		return &server.Options{DontListen: true, JetStreamDomain: "hub", StoreDir: dir,
			LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: port, ReconnectInterval: 100 * time.Millisecond}}
	}
	hubDir := t.TempDir()
	hub := startServer(t, hubOpts(hubDir))
	u, err := url.Parse(fmt.Sprintf("nats-leaf://127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	leaf := startServer(t, &server.Options{DontListen: true, JetStreamDomain: "site_a",
		LeafNode: server.LeafNodeOpts{ReconnectInterval: 100 * time.Millisecond, Remotes: []*server.RemoteLeafOpts{{URLs: []*url.URL{u}}}}})
	h1 := startHost(t, hub, "h1", onHub)
	h1.waitReady(t)
	h2 := startHost(t, leaf, "h2", atSite)
	h2.waitReady(t)
	a1, a3 := addr("203.0.113.1"), addr("203.0.113.3")
	h1.c.Publish(Block{Addr: a1, Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
	h2.sink.waitBlocks(t, a1, 1)

	hub.Shutdown()
	hub.WaitForShutdown()
	h3 := startHost(t, leaf, "h3", atSite)
	h3.waitReady(t)
	h3.sink.waitBlocks(t, a1, 1)
	h3.c.Publish(Block{Addr: a3, Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
	time.Sleep(300 * time.Millisecond)
	if st := h3.c.Stats(); st.OutboxDepth == 0 {
		t.Errorf("h3's block left its outbox with the hub down: %+v", st)
	}

	hub = startServer(t, hubOpts(hubDir))
	h3.waitStats(t, "its block published once the hub is back", func(s Stats) bool { return s.OutboxDepth == 0 && s.Published >= 2 })
	h2.sink.waitBlocks(t, a3, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := jsOn(t, hub).KeyValue(ctx, BucketBlocks)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, HostAddrKey("h3", a3)); err != nil {
		t.Errorf("h3's block on the hub: %v", err)
	}
}

// The administrator, logged in to the hub with fleet.domain hub, sets the
// buckets up there and blocks: the block reaches a host at a site
// through its leaf's copy, as the administrator's.
func TestLeafAdminOnTheHub(t *testing.T) {
	hub, leaf := startHubAndLeaf(t)
	cfg := testCfg(AdminName)
	cfg.Domain = "hub"
	a, err := DialAdmin(cfg, nats.InProcessServer(hub))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := a.Setup(ctx, 4, 1); err != nil {
		t.Fatal(err)
	}
	h2 := startHost(t, leaf, "h2", atSite)
	h2.waitReady(t)
	x := addr("203.0.113.9")
	if err := a.Block(ctx, []netip.Addr{x}, time.Hour, "test"); err != nil {
		t.Fatal(err)
	}
	if b := h2.sink.waitBlocks(t, x, 1)[0]; !b.Admin || b.Host != AdminName {
		t.Errorf("h2 got %+v", b)
	}
}

// Correlation across a site and the hub: h1 (on the hub) and h2 (at the
// site) each saw one probe of the address; with correlate.hosts 2 the
// second sighting, counted in the hub's bucket, blocks it on both, each
// counting the sightings itself (h2 through its leaf).
func TestLeafCorrelation(t *testing.T) {
	hub, leaf := startHubAndLeaf(t)
	two := func(c *config.Fleet, _ *Options) { c.Correlate.Hosts = 2 }
	h1 := startHost(t, hub, "h1", onHub, two)
	h1.waitReady(t)
	h2 := startHost(t, leaf, "h2", atSite, two)
	h2.waitReady(t)
	a := addr("203.0.113.50")
	h2.c.Sighting(a)
	time.Sleep(300 * time.Millisecond)
	h1.c.Sighting(a)
	for _, h := range []*host{h1, h2} {
		if b := h.sink.waitBlocks(t, a, 1)[0]; b.Origin != OriginCorrelate || !b.Corroborated {
			t.Errorf("%s got %+v", h.c.Name(), b)
		}
	}
}

// TestLeafResumesAfterAReconnect: a host at a site that reconnects
// resumes its watches of the site's copies after the last revision it
// handled, as in the plain cluster: the copies are the streams it watched
// before (not the hub's, whose creation times differ), so it gets what it
// missed, not every record again.
func TestLeafResumesAfterAReconnect(t *testing.T) {
	hub, leaf := startHubAndLeaf(t)
	h1 := startHost(t, hub, "h1", onHub)
	h1.waitReady(t)
	h2 := startHost(t, leaf, "h2", atSite)
	h2.waitReady(t)
	exp := time.Now().Add(time.Hour)
	for i := range 50 {
		h1.c.Publish(Block{Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)}), Expires: exp, Origin: OriginDetect})
	}
	h2.waitStats(t, "50 blocks", func(s Stats) bool { return s.Blocks == 50 })
	before := h2.c.st.records.Load()
	_, nc, _ := h2.c.conn()
	if err := nc.ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	h2.waitStats(t, "a reconnect", func(s Stats) bool { return s.Reconnects >= 1 })
	time.Sleep(3 * time.Second) // the new generation, after its jitter
	a := addr("203.0.113.200")
	h1.c.Publish(Block{Addr: a, Expires: exp, Origin: OriginDetect})
	h2.sink.waitBlocks(t, a, 1)
	if got := h2.c.st.records.Load() - before; got > 10 {
		t.Errorf("h2 handled %d records after its reconnect, for 1 new block: it replayed its site's copies", got)
	}
}
