package fleet

import (
	"errors"
	"net/netip"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// TestServerRestartResumes: a server of the 3-node cluster of deploy/nats
// restarts while blocks are published. The host that was connected to it
// reconnects and resumes its watches after the last revision it handled:
// its watches deliver what it missed, not the 300 blocks the bucket
// holds again; and every host has every block.
func TestServerRestartResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three nats-server processes")
	}
	srv := startDeployCluster(t)
	hs := startDeployHosts(t, srv)
	publish := func(from int, n, first int) {
		for i := range n {
			j := first + i
			hs[from].c.Publish(Block{Addr: netip.AddrFrom4([4]byte{198, 18, byte(j >> 8), byte(j)}), Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
		}
	}
	publish(0, 300, 0)
	for _, i := range []int{1, 2} {
		hs[i].waitStats(t, "the 300 blocks", func(s Stats) bool { return s.Blocks >= 300 })
	}
	hs[0].waitStats(t, "its own 300 records", func(Stats) bool {
		hs[0].c.mu.Lock()
		defer hs[0].c.mu.Unlock()
		return len(hs[0].c.view.own) == 300
	})
	before, before1 := hs[1].c.st.records.Load(), hs[0].c.st.records.Load()

	// h2's server (the first it lists) stops and starts again on its
	// store while h3 publishes.
	s := srv[1]
	_ = s.cmd.Process.Kill()
	_, _ = s.cmd.Process.Wait()
	hs[1].waitStats(t, "h2 away from n2", func(s Stats) bool { return s.Reconnects >= 1 })
	publish(2, 10, 1000)
	restart(t, s)
	publish(2, 10, 1010)

	deadline := time.Now().Add(60 * time.Second)
	for _, i := range []int{0, 1} {
		for hs[i].c.Stats().Blocks < 320-300*(1-i) {
			if time.Now().After(deadline) {
				t.Fatalf("%s has %d blocks, want h3's 20 (and h1's 300): %+v", hs[i].c.Name(), hs[i].c.Stats().Blocks, hs[i].c.Stats())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	got := hs[1].c.st.records.Load() - before
	t.Logf("h2's watches delivered %d records from the restart on (the buckets hold 320 blocks and 3 hosts)", got)
	if got >= 300 {
		t.Fatalf("h2's watches delivered %d records after the reconnect: a replay of the buckets, not a resume", got)
	}
	// h1 stayed connected: it gets h3's 20 blocks, and no new record of
	// h2 (a host record rewritten on each reconnect reaches every host).
	if got1 := hs[0].c.st.records.Load() - before1; got1 != 20 {
		t.Errorf("h1's watches delivered %d records from the restart on, want h3's 20 blocks", got1)
	}
}

// startDeployHosts runs h1, h2 and h3 of deploy/nats on srv, each
// connected to the server of its own number first, and waits until they
// are ready.
func startDeployHosts(t *testing.T, srv []deployServer) []*host {
	var hs []*host
	for i, name := range []string{"h1", "h2", "h3"} {
		urls := []string{srv[i].url, srv[(i+1)%3].url, srv[(i+2)%3].url}
		hs = append(hs, startHost(t, nil, name, func(f *config.Fleet, o *Options) {
			f.Servers = urls
			asDeployUser(f, name)
			o.Replicas = 3
			o.NATSOptions = append(o.NATSOptions, nats.DontRandomize())
		}))
	}
	for _, h := range hs {
		select {
		case <-h.c.Ready():
		case <-time.After(60 * time.Second):
			t.Fatalf("%s not ready: %+v", h.c.Name(), h.c.Stats())
		}
	}
	return hs
}

// restart starts a stopped server of startDeployCluster again, on its
// store and ports.
func restart(t *testing.T, s deployServer) {
	restarted := exec.Command(s.cmd.Path, s.cmd.Args[1:]...)
	restarted.Dir = s.cmd.Dir
	if err := restarted.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = restarted.Process.Kill(); _ = restarted.Wait() })
}

// fakeConn is a connection as the liveness check sees it.
type fakeConn struct {
	in    atomic.Uint64
	pong  bool
	pings atomic.Int64
}

func (f *fakeConn) Stats() nats.Statistics { return nats.Statistics{InMsgs: f.in.Load()} }
func (f *fakeConn) FlushTimeout(time.Duration) error {
	f.pings.Add(1)
	if f.pong {
		return nil
	}
	return errors.New("timeout")
}

// Liveness: a connection that keeps delivering messages is alive however
// late its PONGs, and is never pinged (load cannot fake death); an idle
// one that answers PINGs, or brings its consumers' heartbeats, is alive;
// one that brings nothing, nor a PONG, is dead once quiet for the quiet
// spell and livenessGrace, not before.
func TestLiveness(t *testing.T) {
	const quiet = 10 * time.Second
	run := func(f *fakeConn, every func(step int), steps int) (deadAt time.Duration) {
		t0 := time.Unix(1_000_000, 0)
		l := newLiveness(f, t0, quiet)
		for i := 1; i <= steps; i++ {
			every(i)
			now := t0.Add(time.Duration(i) * livenessTick)
			if l.dead(f, now) {
				return now.Sub(t0)
			}
			for l.ping != nil && len(l.ping) == 0 { // the PING's answer, before the next look
				time.Sleep(time.Millisecond)
			}
		}
		return 0
	}
	busy := &fakeConn{}
	if d := run(busy, func(int) { busy.in.Add(100) }, 100); d != 0 || busy.pings.Load() != 0 {
		t.Fatalf("a delivering connection: dead after %s, %d pings", d, busy.pings.Load())
	}
	idle := &fakeConn{pong: true}
	if d := run(idle, func(int) {}, 100); d != 0 || idle.pings.Load() == 0 || idle.pings.Load() > 100*int64(livenessTick)/int64(quiet) {
		t.Fatalf("an idle connection that answers PINGs: dead after %s, %d pings in %s", d, idle.pings.Load(), 100*livenessTick)
	}
	hb := &fakeConn{}
	if d := run(hb, func(i int) {
		if i%3 == 0 {
			hb.in.Add(1)
		}
	}, 100); d != 0 {
		t.Fatalf("a connection with heartbeats every 6 s and no PONG: dead after %s", d)
	}
	gone := &fakeConn{}
	d := run(gone, func(int) {}, 100)
	if d < quiet+livenessGrace || d > quiet+livenessGrace+livenessTick {
		t.Fatalf("a connection with nothing: dead after %s, want %s", d, quiet+livenessGrace)
	}
}
