package daemon

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/portsentry-nft/portsentry-nft/internal/packet"
)

// event is one thing to tell the admin. Events are values sent over a
// channel, so the capture goroutine neither allocates nor waits for the log.
type event struct {
	what   eventKind
	probe  packet.Probe
	reason string
}

type eventKind uint8

const (
	evProbe eventKind = iota
	evAlreadyBlocked
	evProtected
	evRateLimited
)

// alerter formats events into PortSentry's log lines on its own goroutine.
type alerter struct {
	log        *slog.Logger
	host       func(netip.Addr) string
	ch         chan event
	suppressed atomic.Uint64
}

func newAlerter(log *slog.Logger, host func(netip.Addr) string) *alerter {
	return &alerter{log: log, host: host, ch: make(chan event, 4096)}
}

// send queues an event; when the log cannot keep up (a flood), the line is
// counted as suppressed instead of slowing capture.
func (a *alerter) send(e event) {
	select {
	case a.ch <- e:
	default:
		a.suppressed.Add(1)
	}
}

func (a *alerter) run(done <-chan struct{}) {
	for {
		select {
		case e := <-a.ch:
			a.write(e)
		case <-done:
			for {
				select {
				case e := <-a.ch:
					a.write(e)
				default:
					return
				}
			}
		}
	}
}

func (a *alerter) write(e event) {
	p := &e.probe
	host := a.host(p.Src)
	switch e.what {
	case evProbe:
		a.log.Info(fmt.Sprintf("attackalert: %s from host %s to %s port: %d from %s port: %d",
			p.Kind, host, p.Proto, p.DstPort, p.Proto, p.SrcPort))
	case evAlreadyBlocked:
		a.log.Info(fmt.Sprintf("attackalert: Host: %s is already blocked. Ignoring", host))
	case evProtected:
		a.log.Warn(fmt.Sprintf("attackalert: Host %s is protected (%s) and is never blocked; the scan may be spoofed", p.Src, e.reason))
	case evRateLimited:
		a.log.Warn(fmt.Sprintf("attackalert: Host %s not blocked: more than block.max_per_second new blocks; logged only", p.Src))
	}
}

// joinPorts writes a port list as PortSentry's startup line does.
func joinPorts(ports []uint16) string {
	var b strings.Builder
	for i, p := range ports {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprint(&b, p)
	}
	return b.String()
}
