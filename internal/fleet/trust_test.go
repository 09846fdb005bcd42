package fleet

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// The tests of this file act as a compromised host would: with that
// host's own credentials of deploy/nats, writing to the buckets directly
// what the servers' permissions let it write.

// deployHost makes a Client log in as user of deploy/nats.
func deployHost(user string) func(*config.Fleet, *Options) {
	return func(f *config.Fleet, o *Options) {
		asDeployUser(f, user)
	}
}

// hostJS is a raw connection with user's credentials of deploy/nats.
func hostJS(t *testing.T, ns interface{ ClientURL() string }, user string) jetstream.JetStream {
	t.Helper()
	return adminJS(t, ns, deployAuth(t, user), nats.CustomInboxPrefix("_INBOX_"+user))
}

// publishHostRecord writes user's own record in the hosts bucket, listing
// addrs, as the compromised host.
func publishHostRecord(t *testing.T, js jetstream.JetStream, user string, addrs ...netip.Addr) {
	t.Helper()
	rec := hostRecord{Addrs: []string{}, Updated: time.Now().UTC()}
	for _, a := range addrs {
		rec.Addrs = append(rec.Addrs, a.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, Subject(BucketHosts, user), marshal(rec)); err != nil {
		t.Fatalf("%s writes its own host record: %v", user, err)
	}
}

// TestHostRecordGrantsNoImmunity: h2, compromised, with its own
// credentials, lists a scanner's address in its record of the hosts
// bucket. h1 still applies h3's fleet block of the scanner, and a later
// record of h2 listing another address that h1 holds from h3 lifts
// nothing: what a host publishes about itself protects no address.
func TestHostRecordGrantsNoImmunity(t *testing.T) {
	ns := startDeployServer(t)
	h3 := startHost(t, ns, "h3", deployHost("h3"))
	h3.waitReady(t) // the buckets exist
	h2 := hostJS(t, ns, "h2")
	scanner, second := addr("203.0.113.66"), addr("203.0.113.67")
	publishHostRecord(t, h2, "h2", addr("192.0.2.2"), scanner)
	h3.c.Publish(Block{Addr: scanner, Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
	h3.waitStats(t, "the block sent", func(s Stats) bool { return s.Published >= 1 && s.OutboxDepth == 0 })

	// h1 starts after both: its first replay reads the hosts, then the
	// blocks.
	h1 := startHost(t, ns, "h1", deployHost("h1"))
	h1.waitReady(t)
	if bs := h1.sink.waitBlocks(t, scanner, 1); bs[0].Host != "h3" {
		t.Errorf("h1 applied %v, want h3's block", bs)
	}

	// Now as an update: h1 holds h3's block of second, then h2 claims it.
	h3.c.Publish(Block{Addr: second, Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
	h1.sink.waitBlocks(t, second, 1)
	publishHostRecord(t, h2, "h2", addr("192.0.2.2"), second)
	// h1 reads no other host's record at all (its watch of the hosts
	// bucket is of its own key): h2's claim never reaches it.
	time.Sleep(300 * time.Millisecond)
	if h1.heard("h2", second) {
		t.Error("h1 read h2's host record")
	}
	if _, ls := h1.sink.snapshot(); len(ls) != 0 {
		t.Errorf("h2's host record lifted h1's blocks: %v", ls)
	}
	if st := h1.c.Stats(); st.Refused != 0 {
		t.Errorf("h1 refused %d fleet blocks", st.Refused)
	}
}

// TestHostReadsItsOwnRecordOnly: a host starting in a fleet of five reads
// its own host record, none of the others' (before, each host read all N
// at start: N x N records at a fleet's cold start), and writes its own
// when missing, once.
func TestHostReadsItsOwnRecordOnly(t *testing.T) {
	ns := startServer(t, nil)
	for i := range 4 {
		h := startHost(t, ns, fmt.Sprintf("h%d", i+1))
		h.waitReady(t)
		h.c.SetOwnAddresses([]netip.Addr{netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})})
		h.waitStats(t, "its record sent", func(s Stats) bool { return s.OutboxDepth == 0 })
	}
	h5 := startHost(t, ns, "h5")
	h5.waitReady(t)
	h5.c.SetOwnAddresses([]netip.Addr{addr("192.0.2.5")})
	deadline := time.Now().Add(10 * time.Second)
	for !h5.heard("h5", addr("192.0.2.5")) {
		if time.Now().After(deadline) {
			t.Fatal("h5 never read its own record")
		}
		time.Sleep(20 * time.Millisecond)
	}
	h5.c.mu.Lock()
	n := len(h5.c.view.hosts)
	h5.c.mu.Unlock()
	if n != 1 || h5.c.st.records.Load() > 3 {
		t.Errorf("h5 holds %d host records and read %d records, want its own only", n, h5.c.st.records.Load())
	}
}

// heard reports whether the host has read a record of host listing a.
func (h *host) heard(host string, a netip.Addr) bool {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	return slices.Contains(h.c.view.hosts[host], a)
}

// writeAs writes v to subject with a raw connection (a host's own
// credentials: what a compromised host can do), and fails the test if the
// servers do not acknowledge it.
func writeAs(t *testing.T, js jetstream.JetStream, subject string, v any, opts ...jetstream.PublishOpt) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, subject, marshal(v), opts...); err != nil {
		t.Fatalf("write %s: %v", subject, err)
	}
}

// TestFarExpiryRefused (T4): h2, compromised, writes under its own key a
// block record with no TTL (the servers keep it until the bucket's
// MaxAge, or for ever) that claims to last a year. h1 refuses it, counts
// and logs it; before, h1 capped it at fleet.max_timeout and applied it
// again after every restart. A record with no TTL that claims an hour is
// taken: it is the claim that is refused, not the missing TTL.
func TestFarExpiryRefused(t *testing.T) {
	ns := startDeployServer(t)
	h1 := startHost(t, ns, "h1", deployHost("h1"))
	h1.waitReady(t)
	h2 := hostJS(t, ns, "h2")
	far, near := addr("203.0.113.80"), addr("203.0.113.81")
	writeAs(t, h2, Subject(BucketBlocks, HostAddrKey("h2", far)),
		blockRecord{Addr: far.String(), Expires: time.Now().Add(365 * 24 * time.Hour), Origin: OriginDetect})
	writeAs(t, h2, Subject(BucketBlocks, HostAddrKey("h2", near)),
		blockRecord{Addr: near.String(), Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
	h1.sink.waitBlocks(t, near, 1)
	if bs := h1.sink.blocksOf(far); len(bs) != 0 {
		t.Errorf("h1 enforced h2's year-long record: %v", bs)
	}
	if st := h1.c.Stats(); st.Refused != 1 {
		t.Errorf("h1 refused %d records, want 1", st.Refused)
	}
}
