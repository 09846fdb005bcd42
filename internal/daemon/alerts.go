package daemon

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/nft"
	"github.com/portsentry-nft/portsentry-nft/internal/packet"
)

// event is one thing to tell the admin. Events are values sent over a
// channel, so the capture goroutine neither allocates nor waits for the log.
type event struct {
	what    eventKind
	probe   packet.Probe
	timeout time.Duration
	err     error
}

type eventKind uint8

const (
	evProbe eventKind = iota
	evBlocked
	evBlockFailed
	evAlreadyBlocked
	evLogOnly
)

// alerter formats events into PortSentry's log lines on its own goroutine.
type alerter struct {
	log        *slog.Logger
	ch         chan event
	suppressed atomic.Uint64
}

func newAlerter(log *slog.Logger) *alerter {
	return &alerter{log: log, ch: make(chan event, 4096)}
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
	host := hostField(p.Src)
	switch e.what {
	case evProbe:
		a.log.Info(fmt.Sprintf("attackalert: %s from host %s to %s port: %d from %s port: %d",
			p.Kind, host, p.Proto, p.DstPort, p.Proto, p.SrcPort))
	case evBlocked:
		set := nft.SetBlocked
		if p.Src.Is6() && !p.Src.Is4In6() {
			set = nft.SetBlocked6
		}
		a.log.Info(fmt.Sprintf("attackalert: Host %s has been blocked via nftables set inet %s %s (timeout %s)",
			p.Src, nft.TableName, set, e.timeout))
	case evBlockFailed:
		a.log.Error(fmt.Sprintf("adminalert: ERROR: could not block host %s: %v", p.Src, e.err))
	case evAlreadyBlocked:
		a.log.Info(fmt.Sprintf("attackalert: Host: %s is already blocked. Ignoring", host))
	case evLogOnly:
		a.log.Info(fmt.Sprintf("attackalert: Ignoring %s response per configuration file setting.", p.Proto))
	}
}

// hostField is PortSentry's "name/ip" (the name is the address until
// reverse DNS is configured).
func hostField(a netip.Addr) string {
	s := a.String()
	return s + "/" + s
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
