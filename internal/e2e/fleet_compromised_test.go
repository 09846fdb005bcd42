package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portsentry-nft/portsentry-nft/internal/fleet"
	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

// The tests of this file act as a compromised h2 on the fleet's LAN: from
// h2's namespace, with h2's own credentials of deploy/nats, they write to
// the real cluster's buckets directly what the servers' permissions let h2
// write (its own keys), as the attack review did (T1-T4).

// nsDialer dials the servers from inside a namespace, for nats.go.
type nsDialer struct{ ns *netnstest.NS }

func (d nsDialer) Dial(network, address string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return d.ns.Dial(ctx, network, address)
}

// connectAs connects to the cluster from ns as user of deploy/nats (its
// example nkey, its own inbox prefix: the only one it may subscribe to).
func connectAs(t testing.TB, ns *netnstest.NS, user string, opts ...jetstream.JetStreamOpt) jetstream.JetStream {
	t.Helper()
	var urls []string
	for i := 1; i <= 3; i++ {
		urls = append(urls, fmt.Sprintf("nats://%s:%d", serverAddr(i), natsClient))
	}
	nc, err := nats.Connect(strings.Join(urls, ","), exampleAuth(t, user),
		nats.SetCustomDialer(nsDialer{ns}), nats.CustomInboxPrefix("_INBOX_"+user), nats.Timeout(20*time.Second))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// The records as internal/fleet writes them (its wire format: what a
// compromised host would write by hand).
type (
	blockRec struct {
		Addr     string    `json:"addr"`
		Expires  time.Time `json:"expires"`
		Origin   string    `json:"origin"`
		ScanType string    `json:"scan_type,omitempty"`
		Ports    []uint16  `json:"ports,omitempty"`
		Reason   string    `json:"reason,omitempty"`
		Evidence string    `json:"evidence,omitempty"`
	}
	liftRec struct {
		Addr string    `json:"addr"`
		By   string    `json:"by"`
		At   time.Time `json:"at"`
	}
	hostRec struct {
		Addrs   []string  `json:"addrs"`
		Updated time.Time `json:"updated"`
	}
)

// h2Block is a record of h2's claiming a handshake (the strongest claim a
// host can make, which the others weigh as h2's word) until exp.
func h2Block(a string, exp time.Time) blockRec {
	return blockRec{Addr: a, Expires: exp.UTC(), Origin: fleet.OriginDetect, ScanType: "TCP connect scan", Evidence: fleet.EvidenceHandshake}
}

// writeAs writes v under key of bucket and fails the test unless the
// servers acknowledge it.
func writeAs(t testing.TB, js jetstream.JetStream, bucket, key string, v any, opts ...jetstream.PublishOpt) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, fleet.Subject(bucket, key), data, opts...); err != nil {
		t.Fatalf("write %s %s: %v", bucket, key, err)
	}
}

// key is the blocks or lifts key of host's record of a.
func key(host, a string) string { return fleet.HostAddrKey(host, netip.MustParseAddr(a)) }

// waitGone waits until addr is no longer in any of hosts' sets; false if
// it still is after within.
func waitGone(t testing.TB, hosts []*fleetHost, addr string, within time.Duration) bool {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		gone := true
		for _, h := range hosts {
			if netnstest.ElementLine(listSet(t, h.ns, "blocked"), addr) != "" {
				gone = false
			}
		}
		if gone {
			return true
		}
	}
	return false
}

// requireElements fails the test unless each of hosts has addr in its set
// within `within`.
func requireElements(t testing.TB, f *fleetLAN, hosts []*fleetHost, addr string, within time.Duration) {
	t.Helper()
	took := waitElements(t, hosts, addr, time.Now(), within)
	for i, d := range took {
		if d == 0 {
			f.dump(t)
			t.Fatalf("%s does not block %s within %s", hosts[i].name, addr, within)
		}
	}
}

// T1: h2 writes lifts under its own key of h1's own detected block (an
// nmap scan of h1, which stays on h1), of an administrator's block made on
// h1 (on h1 and h3), and of its own block. Only h2's own is lifted: h1
// keeps both of its blocks, h3 keeps h1's. Before, any host's lift lifted
// every host's blocks (the review: h1's block gone on h1 and h3 within 2
// s); with every lift read as the administrator's, this test printed
// "h2's lift under its own key lifted 10.201.0.99 on h1" (h1's detected
// block), and the same of 10.201.0.96 on h1 and on h3.
func TestFleetCompromisedLiftReachesItsOwn(t *testing.T) {
	f := newFleetLAN(t, "", "  correlate: {hosts: 0}\n")
	h1, h2, h3 := f.hosts[0], f.hosts[1], f.hosts[2]
	const admin, own = "10.201.0.96", "10.201.0.95"
	js := connectAs(t, h2.ns, "h2")
	nmap(t, f.scanner, "-sS", "-p", "1,11,15,79", h1.addr)
	waitBlocked(t, h1.ns, "blocked", fleetScanner, 5*time.Second)
	if out, err := h1.d.cli("block", admin); err != nil {
		t.Fatalf("block: %v %s", err, out)
	}
	requireElements(t, f, []*fleetHost{h1, h3}, admin, 10*time.Second)
	writeAs(t, js, fleet.BucketBlocks, key("h2", own), h2Block(own, time.Now().Add(time.Hour)), jetstream.WithMsgTTL(time.Hour))
	requireElements(t, f, []*fleetHost{h1, h3}, own, 10*time.Second)

	// h2's own last: once it is lifted on h1 and h3, the others were read.
	start := time.Now()
	for _, a := range []string{fleetScanner, admin, own} {
		writeAs(t, js, fleet.BucketLifts, key("h2", a), liftRec{Addr: a, By: "h2", At: time.Now().UTC()}, jetstream.WithMsgTTL(time.Hour))
	}
	if !waitGone(t, []*fleetHost{h1, h3}, own, 10*time.Second) {
		f.dump(t)
		t.Fatalf("h2's lift of its own block of %s did not reach h1 and h3 within 10 s", own)
	}
	t.Logf("h2's lift of its own block: gone on h1 and h3 %s after the lifts", time.Since(start).Round(time.Millisecond))
	time.Sleep(time.Second)
	for _, c := range []struct {
		h    *fleetHost
		addr string
	}{{h1, fleetScanner}, {h1, admin}, {h3, admin}} {
		if netnstest.ElementLine(listSet(t, c.h.ns, "blocked"), c.addr) == "" {
			t.Errorf("h2's lift under its own key lifted %s on %s", c.addr, c.h.name)
		}
	}
}

// T2: h2 (its daemon stopped, as its root can) publishes a host record
// listing the scanner among 800 addresses. An administrator's block of
// the scanner on h1 still reaches h3: a host's record makes no address
// immune. Before, those addresses were immune to fleet blocks on every
// host (the review: h1 refused the scanner's fleet block); with a host's
// record protecting its addresses again, this test printed "the
// administrator's block of 10.201.0.99, which h2's record lists: h1
// 10.751091ms, h3 0s (0: not within 10 s)".
func TestFleetCompromisedHostRecordGrantsNoImmunity(t *testing.T) {
	f := newFleetLAN(t, "", "  correlate: {hosts: 0}\n")
	h1, h2, h3 := f.hosts[0], f.hosts[1], f.hosts[2]
	h2.d.stop() // it would write its own record back
	js := connectAs(t, h2.ns, "h2")
	rec := hostRec{Addrs: []string{h2.addr, fleetScanner}, Updated: time.Now().UTC()}
	for i := range 798 {
		rec.Addrs = append(rec.Addrs, fmt.Sprintf("10.201.%d.%d", 100+i/250, 1+i%250))
	}
	writeAs(t, js, fleet.BucketHosts, "h2", rec)
	// h1 and h3 do not even read it: a host watches its own record only.
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	if out, err := h1.d.cli("block", fleetScanner); err != nil {
		t.Fatalf("block: %v %s", err, out)
	}
	took := waitElements(t, []*fleetHost{h1, h3}, fleetScanner, start, 10*time.Second)
	if took[0] == 0 || took[1] == 0 {
		f.dump(t)
		t.Fatalf("the administrator's block of %s, which h2's record lists: h1 %s, h3 %s (0: not within 10 s)", fleetScanner, took[0], took[1])
	}
	t.Logf("the administrator's block of an address h2's record lists: on h1 %s, on h3 %s", took[0], took[1])
}

// T4: h2 writes, with no Nats-TTL, a record that claims to last a year,
// then one that claims an hour. h1 applies the second, refuses the first
// (and logs why), and still refuses it after a restart. Before, h1 capped
// it at fleet.max_timeout and applied it again for 7 days after every
// restart; with the cap instead of the refusal, this test printed
// "10.201.0.94 is in set blocked but must not be".
func TestFleetCompromisedFarExpiryRefused(t *testing.T) {
	f := newFleetLAN(t, "", "  correlate: {hosts: 0}\n")
	h1, h2 := f.hosts[0], f.hosts[1]
	const far, near = "10.201.0.94", "10.201.0.93"
	js := connectAs(t, h2.ns, "h2")
	writeAs(t, js, fleet.BucketBlocks, key("h2", far), h2Block(far, time.Now().Add(365*24*time.Hour)))
	writeAs(t, js, fleet.BucketBlocks, key("h2", near), h2Block(near, time.Now().Add(time.Hour)))
	requireElements(t, f, []*fleetHost{h1}, near, 10*time.Second)
	assertNotBlocked(t, h1.ns, far)
	h1.d.waitLog("fleet: refused a fleet block", 5*time.Second)
	if !strings.Contains(h1.d.out.String(), "addr="+far) {
		t.Errorf("h1 does not say it refused %s:\n%s", far, h1.d.out)
	}
	h1.d.stop()
	_, _ = h1.ns.Run("nft", "delete", "table", "inet", "portsentry") // a reboot
	h1.d.start()
	h1.d.waitLog("fleet: mirrored the fleet", 30*time.Second)
	requireElements(t, f, []*fleetHost{h1}, near, 10*time.Second)
	assertNotBlocked(t, h1.ns, far)
}

// T3, T5 and the goal: after the administrator's setup for the
// fleet's 3 hosts, h2 writes 100,000 block records (64 ports each,
// claiming handshakes) as fast as it can, for 60 s at most. The servers
// refuse what goes beyond the blocks bucket's max_bytes and keep it
// within; h1 and h3 (block.set_size 4000) each hold at most h2's
// fleet.host_share of it (1000); and a real nmap scan of h3 afterwards is
// blocked there. Before, all 100k were acknowledged (the buckets had no
// max_bytes), h1's and h3's sets filled, and a new scanner got 1024 of
// 1024 ports answered; with no share, this test printed "h1 holds 4000
// blocks from h2, beyond its share of 1000", the same of h3, and "h3 did
// not block a real scan after h2's flood" (nmap: "Not shown: 1024 closed
// tcp ports (reset)").
func TestFleetCompromisedFloodTakesItsShare(t *testing.T) {
	const size, share = 4000, 1000
	f := newFleetLAN(t, fmt.Sprintf("block: {set_size: %d}\n", size), "  correlate: {hosts: 0}\n")
	h1, h2, h3 := f.hosts[0], f.hosts[1], f.hosts[2]
	adminSetup(t, f, 3)
	js := connectAs(t, h2.ns, "h2", jetstream.WithPublishAsyncMaxPending(4096))
	if ai, err := js.AccountInfo(t.Context()); err != nil || ai.Limits.MaxStore != 1<<30 {
		t.Errorf("the account's limits as h2 sees them: %+v, %v; want max_file 1GiB", ai, err)
	}
	fl := floodBlocks(t, js, 100000, time.Minute)
	s, err := js.Stream(t.Context(), "KV_"+fleet.BucketBlocks)
	if err != nil {
		t.Fatal(err)
	}
	cfg, st := s.CachedInfo().Config, s.CachedInfo().State
	t.Logf("h2 wrote %d records in %s: %d acknowledged, %d refused, %d other errors (first: %v); the bucket holds %d records, %d of %d bytes",
		fl.sent, fl.took.Round(time.Millisecond), fl.ok, fl.refused, fl.others, fl.other, st.Msgs, st.Bytes, cfg.MaxBytes)
	if fl.refused == 0 || fl.ok == 0 || cfg.MaxBytes <= 0 || st.Bytes > uint64(cfg.MaxBytes) {
		t.Errorf("the servers did not stop h2's flood at the bucket's max_bytes %d", cfg.MaxBytes)
	}
	for _, h := range []*fleetHost{h1, h3} {
		n := settledElements(t, h, fl.ok)
		t.Logf("%s holds %d of h2's records (its share: %d)", h.name, n, share)
		if n > share {
			t.Errorf("%s holds %d blocks from h2, beyond its share of %d", h.name, n, share)
		}
	}
	start := time.Now()
	scan := make(chan string, 1)
	go func() { scan <- nmap(t, f.scanner, "-sS", "-p", "1-1024", h3.addr) }()
	took := waitElements(t, []*fleetHost{h3}, fleetScanner, start, 10*time.Second)
	out := <-scan
	t.Logf("a real scan of h3 after the flood: blocked %s after its start; nmap saw %s", took[0], answered(out))
	if took[0] == 0 {
		f.dump(t)
		t.Fatalf("h3 did not block a real scan after h2's flood:\n%s", out)
	}
}

// adminSetup runs "portsentry-nft fleet setup --hosts n" as the fleet's
// administrator, from a machine of its own on the LAN.
func adminSetup(t testing.TB, f *fleetLAN, n int) {
	t.Helper()
	ns, _ := f.lan.Join("psFadm", "10.201.0.90")
	var urls []string
	for i := 1; i <= 3; i++ {
		urls = append(urls, fmt.Sprintf("nats://%s:%d", serverAddr(i), natsClient))
	}
	conf := writeConfig(t, fmt.Sprintf("fleet:\n  servers: [%s]\n  name: admin\n  nkey: %s\n",
		strings.Join(urls, ", "), exampleSeed(t, "admin")))
	out, err := ns.Run(daemonBinary(t), "fleet", "setup", "--config", conf, "--hosts", fmt.Sprint(n))
	if err != nil {
		t.Fatalf("fleet setup: %v\n%s", err, out)
	}
	var table []string
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "warning:") { // none expected; kept out of the table
			table = append(table, l)
		}
	}
	t.Logf("fleet setup --hosts %d:\n%s", n, strings.Join(table, "\n"))
}

// flooded counts what a flood wrote.
type flooded struct {
	sent, ok, refused, others int
	other                     error
	took                      time.Duration
}

// floodBlocks writes up to n of h2's block records (10.64.0.0/10), as fast
// as the servers take them, for `within` at most, and counts the answers.
func floodBlocks(t testing.TB, js jetstream.JetStream, n int, within time.Duration) flooded {
	t.Helper()
	ports := make([]uint16, 64)
	for i := range ports {
		ports[i] = uint16(1000 + i)
	}
	// What a host writes is its own to choose: long records fill the
	// bucket sooner (the servers take values up to 16 KiB).
	reason := strings.Repeat("compromised ", 40)
	exp := time.Now().Add(time.Hour)
	start := time.Now()
	futs := make([]jetstream.PubAckFuture, 0, n)
	for i := 0; i < n && time.Since(start) < within; i++ {
		a := netip.AddrFrom4([4]byte{10, byte(64 + i>>16), byte(i >> 8), byte(i)}).String()
		rec := h2Block(a, exp)
		rec.Ports, rec.Reason = ports, reason
		data, _ := json.Marshal(rec)
		subj := fleet.Subject(fleet.BucketBlocks, key("h2", a))
		fut, err := js.PublishAsync(subj, data, jetstream.WithMsgTTL(time.Hour))
		for errors.Is(err, jetstream.ErrTooManyStalledMsgs) && time.Since(start) < within {
			<-js.PublishAsyncComplete() // as fast as the servers answer
			fut, err = js.PublishAsync(subj, data, jetstream.WithMsgTTL(time.Hour))
		}
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		futs = append(futs, fut)
	}
	fl := flooded{sent: len(futs)}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for _, fut := range futs {
		select {
		case <-fut.Ok():
			fl.ok++
		case err := <-fut.Err():
			fl.count(err)
		case <-ctx.Done():
			t.Fatalf("the servers did not answer the flood within %s", within)
		}
	}
	fl.took = time.Since(start)
	return fl
}

// count sorts one refused write: the bucket's limit, or another error.
func (fl *flooded) count(err error) {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && strings.Contains(apiErr.Description, "maximum bytes exceeded") {
		fl.refused++
		return
	}
	if fl.others++; fl.other == nil {
		fl.other = err
	}
}

// settledElements waits until h's daemon has read the acknowledged
// records (fleet_mirrored) and its set stops growing, and returns the
// set's size.
func settledElements(t testing.TB, h *fleetHost, acked int) int {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for counter(t, h.d, "fleet_mirrored") < uint64(acked) {
		if time.Now().After(deadline) {
			t.Fatalf("%s read %d of h2's %d records within 2 minutes", h.name, counter(t, h.d, "fleet_mirrored"), acked)
		}
		time.Sleep(200 * time.Millisecond)
	}
	file := h.ns.Open()
	defer file.Close()
	n := -1
	for m := countElements(t, file, nft.SetBlocked); m != n; m = countElements(t, file, nft.SetBlocked) {
		n = m
		time.Sleep(2 * time.Second)
	}
	return n
}

// answered says how many ports of a scan got an answer (open or closed:
// a SYN-ACK or a reset), with nmap's summary lines.
func answered(out string) string {
	n, summary := 0, []string{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 2 && strings.HasSuffix(f[0], "/tcp") && (f[1] == "open" || f[1] == "closed"):
			n++
		case len(f) >= 4 && f[0] == "Not" && f[1] == "shown:":
			if k, err := strconv.Atoi(f[2]); err == nil && (f[3] == "closed" || f[3] == "open") {
				n += k
			}
			summary = append(summary, strings.TrimSpace(l))
		case strings.Contains(l, "ignored states") || strings.Contains(l, "Skipping host"):
			summary = append(summary, strings.TrimSpace(l))
		}
	}
	return fmt.Sprintf("%d ports answered (%s)", n, strings.Join(summary, " "))
}
