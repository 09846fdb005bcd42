package fleet

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestForgedCorrelationRefused: h2, compromised, writes with its own
// credentials a correlated block that names h1, h2 and h3, and its own
// sighting (the only one it can write). h1 counts the sightings itself,
// finds one host, and refuses the record; before, the record's claim was
// enough. Once h1 and h3 saw the address too, h2's record (written
// again) is confirmed, and names the hosts h1 counted.
func TestForgedCorrelationRefused(t *testing.T) {
	ns := startDeployServer(t)
	h1 := startHost(t, ns, "h1", deployHost("h1"))
	h1.waitReady(t)
	h2 := hostJS(t, ns, "h2")
	a, other := addr("203.0.113.90"), addr("203.0.113.91")
	claim := func(a netip.Addr) {
		writeAs(t, h2, Subject(BucketSightings, SightingKey(a, "h2")), sightingRecord{At: time.Now().UTC()}, jetstream.WithMsgTTL(10*time.Minute))
		writeAs(t, h2, Subject(BucketBlocks, HostAddrKey("h2", a)), blockRecord{Addr: a.String(), Expires: time.Now().Add(time.Hour),
			Origin: OriginCorrelate, Seen: []string{"h1", "h2", "h3"}, Reason: "seen by 3 hosts"}, jetstream.WithMsgTTL(time.Hour))
	}
	claim(a)
	h1.waitStats(t, "the refusal", func(s Stats) bool { return s.Refused == 1 })
	// An ordinary block written after it arrives after its count.
	writeAs(t, h2, Subject(BucketBlocks, HostAddrKey("h2", other)), blockRecord{Addr: other.String(), Expires: time.Now().Add(time.Hour),
		Origin: OriginDetect}, jetstream.WithMsgTTL(time.Hour))
	h1.sink.waitBlocks(t, other, 1)
	if bs := h1.sink.blocksOf(a); len(bs) != 0 {
		t.Fatalf("h1 enforced h2's unconfirmed correlation: %v", bs)
	}

	// h3 and h1 saw it too (written directly: h1's own correlator would
	// otherwise block it first, on its own count).
	for _, h := range []string{"h1", "h3"} {
		writeAs(t, hostJS(t, ns, h), Subject(BucketSightings, SightingKey(a, h)), sightingRecord{At: time.Now().UTC()},
			jetstream.WithMsgTTL(10*time.Minute))
	}
	claim(a)
	b := h1.sink.waitBlocks(t, a, 1)[0]
	if !b.Corroborated || b.Host != "h2" || fmt.Sprint(b.Seen) != "[h1 h2 h3]" {
		t.Errorf("h1 got %+v, want h2's record, corroborated by h1, h2, h3", b)
	}
}

// TestConfirmQueueShares: one host's correlated records take at most
// their share of the queue of records waiting for a count; the others
// are refused at once, and another host's still get in.
func TestConfirmQueueShares(t *testing.T) {
	c, err := New(testCfg("h1"), Options{Sink: newSink(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	req := func(host string, i int) confirmReq {
		return confirmReq{b: Block{Addr: netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}), Host: host, Origin: OriginCorrelate}}
	}
	for i := range hostConfirms + 100 {
		c.askConfirm(req("h2", i))
	}
	c.askConfirm(req("h3", 1))
	if n, st := len(c.confirmIn), c.Stats(); n != hostConfirms+1 || st.Refused != 100 {
		t.Errorf("%d waiting, %d refused; want %d waiting (h2's share and h3's), 100 refused", n, st.Refused, hostConfirms+1)
	}
}
