package nft_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

// BenchmarkPeerUpdate measures what keeping peers/peers6 costs a packet:
// one TCP stream B -> A (ncat, 20 MB in segments of 536 bytes, no GSO, so
// each segment crosses A's input hook as a packet of an assured
// connection, and each one meets the update rule), with the default
// ruleset, with the same ruleset without peers (peer_window 0), and with
// the default ruleset whose IPv4 update rule is there amplify times (the
// rule's own cost, out of the noise of the whole path), alternated in the
// same run; and, for comparison, with amplify copies of the alternative
// that updates once per connection (a ct mark). It reports the time a
// packet took with each (sender and receiver together: the whole path, on
// the same cores), their ratio, one update's cost ((amplified - default) /
// (amplify - 1)) and one mark test's ((marked - without) / amplify).
func BenchmarkPeerUpdate(b *testing.B) {
	netnstest.Require(b, "ncat")
	p := netnstest.NewPair(b)
	for _, ns := range []struct {
		n   *netnstest.NS
		dev string
	}{{p.A, "veth-a"}, {p.B, "veth-b"}} {
		ns.n.MustRun("ip", "link", "set", ns.dev, "mtu", "576", "gso_max_segs", "1")
	}
	on := nft.Build(config.Default(), nft.Shape{}).Text()
	off := nft.Build(mustParse(b, "block: {peer_window: 0s}\n"), nft.Shape{}).Text()
	const amplify = 512
	line := "\t\tmeta l4proto tcp ct status assured update @peers { ip saddr timeout 30m }\n"
	amplified := strings.Replace(on, line, strings.Repeat(line, amplify), 1)
	// The alternative: a connection mark, so each connection updates once
	// and later packets stop at the mark's test (what each copy then costs).
	marked := "\t\tmeta l4proto tcp ct status assured ct mark & 0x1 == 0x0 ct mark set ct mark | 0x1 update @peers { ip saddr timeout 30m }\n"
	markAmplified := strings.Replace(on, line, strings.Repeat(marked, amplify), 1)
	texts := []string{on, off, amplified, markAmplified}
	per := make([][]float64, len(texts))
	for round := range 6 {
		for i := range texts {
			k := (i + round) % len(texts)
			load(b, p.A, texts[k])
			per[k] = append(per[k], streamPerPacket(b, p, 20<<20))
			if k == 0 && round == 0 {
				if out := p.A.MustRun("nft", "list", "set", "inet", "portsentry", "peers"); netnstest.ElementLine(out, netnstest.AddrB) == "" {
					b.Fatalf("the stream made no peer:\n%s", out)
				}
			}
		}
	}
	mOn, mOff, mAmp, mMark := median(per[0]), median(per[1]), median(per[2]), median(per[3])
	b.ReportMetric(mOn, "ns/pkt-peers")
	b.ReportMetric(mOff, "ns/pkt-without")
	b.ReportMetric(mOn/mOff, "ratio")
	b.ReportMetric((mAmp-mOn)/(amplify-1), "ns/update")
	b.ReportMetric((mMark-mOff)/amplify, "ns/mark-test")
	b.Logf("ns a packet with peers %v, without %v, with %d updates %v, with %d mark tests %v", per[0], per[1], amplify, per[2], amplify, per[3])
}

// load replaces ns's table with text (nft -f).
func load(b *testing.B, ns *netnstest.NS, text string) {
	b.Helper()
	ns.Run("nft", "delete", "table", "inet", "portsentry")
	f := filepath.Join(b.TempDir(), "r.nft")
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		b.Fatal(err)
	}
	ns.MustRun("nft", "-f", f)
}

// streamPerPacket sends n bytes from B to A over one TCP connection and
// returns the nanoseconds a packet took (A's received packets).
func streamPerPacket(b *testing.B, p *netnstest.Pair, n int) float64 {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rx := func() int {
		v, err := strconv.Atoi(strings.TrimSpace(p.A.MustRun("cat", "/sys/class/net/veth-a/statistics/rx_packets")))
		if err != nil {
			b.Fatal(err)
		}
		return v
	}
	srv := p.A.Command(ctx, "ncat", "-l", "9000", "--recv-only")
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	before, start := rx(), time.Now()
	if out, err := p.B.Run("sh", "-c", fmt.Sprintf("head -c %d /dev/zero | ncat --send-only %s 9000", n, netnstest.AddrA)); err != nil {
		b.Fatal(err, out)
	}
	if err := srv.Wait(); err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	return float64(took.Nanoseconds()) / float64(rx()-before)
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
