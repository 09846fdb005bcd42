package fleet

import (
	"errors"
	"net/netip"
	"os/exec"
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
	var hs []*host
	for i, name := range []string{"h1", "h2", "h3"} {
		urls := []string{srv[i].url, srv[(i+1)%3].url, srv[(i+2)%3].url}
		hs = append(hs, startHost(t, nil, name, func(f *config.Fleet, o *Options) {
			f.Servers = urls
			f.User, f.Password = name, config.Secret(name+"-change-me")
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
	before := hs[1].c.st.records.Load()

	// h2's server (the first it lists) stops and starts again on its
	// store while h3 publishes.
	s := srv[1]
	_ = s.cmd.Process.Kill()
	_, _ = s.cmd.Process.Wait()
	hs[1].waitStats(t, "h2 away from n2", func(s Stats) bool { return s.Reconnects >= 1 })
	publish(2, 10, 1000)
	restarted := exec.Command(s.cmd.Path, s.cmd.Args[1:]...)
	restarted.Dir = s.cmd.Dir
	if err := restarted.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = restarted.Process.Kill(); _ = restarted.Wait() })
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
}

// fakeConn is a connection as the liveness check sees it.
type fakeConn struct {
	in   uint64
	pong bool
	// during a PING's wait, messages arrive (a loaded server's deliveries).
	during uint64
}

func (f *fakeConn) Stats() nats.Statistics { return nats.Statistics{InMsgs: f.in} }
func (f *fakeConn) FlushTimeout(time.Duration) error {
	f.in += f.during
	if f.pong {
		return nil
	}
	return errors.New("timeout")
}

// Liveness: a connection that keeps delivering messages is alive however
// late its PONGs (load cannot fake death); one quiet for livenessMisses
// intervals without a PONG is dead, and a PONG or a message resets the
// count.
func TestLiveness(t *testing.T) {
	var l liveness
	busy := &fakeConn{}
	for i := range 10 {
		busy.in += 100 // deliveries, no PONG
		if l.dead(busy, time.Second) {
			t.Fatalf("interval %d: a delivering connection declared dead", i)
		}
	}
	late := &fakeConn{during: 1}
	l = liveness{}
	for i := range 10 {
		if l.dead(late, time.Second) {
			t.Fatalf("interval %d: a connection whose messages arrive during the PING's wait declared dead", i)
		}
	}
	quiet := &fakeConn{pong: true}
	l = liveness{}
	for i := range 10 {
		if l.dead(quiet, time.Second) {
			t.Fatalf("interval %d: an idle connection that answers PINGs declared dead", i)
		}
	}
	gone := &fakeConn{}
	l = liveness{}
	if l.dead(gone, time.Second) {
		t.Fatal("dead after one quiet interval")
	}
	gone.in++ // a heartbeat: the count starts again
	for range livenessMisses {
		if l.dead(gone, time.Second) {
			t.Fatal("a message did not reset the count")
		}
	}
	if !l.dead(gone, time.Second) {
		t.Fatalf("not dead after %d quiet intervals without a PONG", livenessMisses)
	}
}
