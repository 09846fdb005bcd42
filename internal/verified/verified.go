// Package verified is tcp.verified mode: the daemon listens on the
// monitored TCP ports itself, and a source counts only once its
// connection is accepted, i.e. after a completed three-way handshake,
// which a spoofed source cannot complete. The NFLOG path keeps logging
// the probes; the decision and the ledger are the same as for captured
// probes.
package verified

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/detect"
	"github.com/portsentry-nft/portsentry-nft/internal/packet"
	"github.com/portsentry-nft/portsentry-nft/internal/pipeline"
)

// Config is what verified mode needs.
type Config struct {
	Settings *config.Config
	Log      *alert.Log
	Alerts   *alert.Queue
	// Detect makes verified mode's own detector.
	Detect detect.Config
	// Act decides on a source that reached the trigger (the pipeline's Act).
	Act func(det *detect.Detector, t *pipeline.Trigger, now time.Time) bool
}

// Mode runs verified mode.
type Mode struct {
	c   Config
	own atomic.Pointer[map[uint16]bool]
}

// New makes verified mode; Run starts it.
func New(c Config) *Mode { return &Mode{c: c} }

// Own reports whether the daemon itself listens on TCP port (a tripwire,
// not a service).
func (m *Mode) Own(port uint16) bool {
	own := m.own.Load()
	return own != nil && (*own)[port]
}

// Run listens until ctx is done and feeds accepted connections to Act.
func (m *Mode) Run(ctx context.Context) {
	cfg := m.c.Settings
	accepted := make(chan packet.Probe, 1024)
	var wg sync.WaitGroup
	defer wg.Wait()
	hosts := []string{""} // all addresses, both families
	if len(cfg.WatchAddrs) > 0 {
		hosts = hosts[:0]
		for _, a := range cfg.WatchAddrs {
			hosts = append(hosts, a.String())
		}
	}
	var lc net.ListenConfig
	n := 0
	own := map[uint16]bool{}
	for _, port := range cfg.TCP.Monitored {
		for _, h := range hosts {
			l, err := lc.Listen(ctx, "tcp", net.JoinHostPort(h, strconv.Itoa(int(port))))
			if err != nil {
				if errors.Is(err, syscall.EADDRINUSE) {
					m.c.Log.Warnf("verified mode: TCP port %d is in use by another service; it is not a tripwire", port)
				} else {
					m.c.Log.Errorf("verified mode: listen on TCP port %d: %v", port, err)
				}
				continue
			}
			n++
			own[port] = true
			wg.Go(func() { <-ctx.Done(); l.Close() })
			wg.Go(func() { acceptLoop(ctx, l, cfg.PortBanner, accepted) })
		}
	}
	m.c.Log.Infof("verified mode: listening on %d TCP ports; only completed connections are acted on", n)
	m.own.Store(&own)
	det := detect.New(m.c.Detect)
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-accepted:
			now := time.Now()
			verdict, src := det.Observe(&p, now)
			if verdict == detect.Trigger {
				m.c.Act(det, &pipeline.Trigger{Probe: p, Src: src}, now)
			} else {
				m.c.Alerts.Capped(alert.Event{What: alert.KindProbe, Probe: p}, now)
			}
		}
	}
}

func acceptLoop(ctx context.Context, l net.Listener, banner string, out chan<- packet.Probe) {
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		ra, _ := netip.ParseAddrPort(c.RemoteAddr().String())
		la, _ := netip.ParseAddrPort(c.LocalAddr().String())
		if banner != "" {
			c.SetWriteDeadline(time.Now().Add(time.Second))
			c.Write([]byte(banner + "\n"))
		}
		c.Close()
		p := packet.Probe{Src: ra.Addr().Unmap(), Dst: la.Addr().Unmap(), Proto: packet.TCP,
			SrcPort: ra.Port(), DstPort: la.Port(), Flags: packet.FlagSYN, Kind: packet.KindConnect}
		select {
		case out <- p:
		default: // a flood of connects: the detector would block them anyway
		}
	}
}
