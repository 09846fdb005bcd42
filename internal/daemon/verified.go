package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/detect"
	"github.com/portsentry-nft/portsentry-nft/internal/packet"
)

// verified mode: the daemon listens on the monitored TCP ports itself, and
// a source counts only once its connection is accepted, i.e. after a
// completed three-way handshake, which a spoofed source cannot complete.
// The NFLOG path keeps logging the probes.

// runVerified listens until ctx is done and feeds accepted connections
// through the same safety checks and responder as captured probes.
func (d *Daemon) runVerified(ctx context.Context, cfg *config.Config) {
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
					d.log.Warn(fmt.Sprintf("adminalert: verified mode: TCP port %d is in use by another service; it is not a tripwire", port))
				} else {
					d.log.Error(fmt.Sprintf("adminalert: ERROR: verified mode: listen on TCP port %d: %v", port, err))
				}
				continue
			}
			n++
			own[port] = true
			wg.Go(func() { <-ctx.Done(); l.Close() })
			wg.Go(func() { d.acceptLoop(ctx, l, cfg.PortBanner, accepted) })
		}
	}
	d.log.Info(fmt.Sprintf("adminalert: verified mode: listening on %d TCP ports; only completed connections are acted on", n))
	d.ownPorts.Store(&own)
	det := detect.New(detectConfig(cfg))
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-accepted:
			now := time.Now()
			verdict, src := det.Observe(&p, now)
			if verdict == detect.Trigger {
				d.act(p, src, now, det, nil)
			} else {
				d.alertCapped(event{what: evProbe, probe: p}, now)
			}
		}
	}
}

func (d *Daemon) acceptLoop(ctx context.Context, l net.Listener, banner string, out chan<- packet.Probe) {
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
