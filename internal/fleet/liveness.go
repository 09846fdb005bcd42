package fleet

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
)

// Liveness: whether the server this host is connected to is still there.
//
// The library's own check counts PINGs without a PONG and resets the
// count on a PONG only: when the process or the servers fall seconds
// behind (a fleet of 1000 hosts under a burst), a connection that is
// delivering messages all along is declared stale, and the reconnect that
// follows costs the servers more at the worst moment. Here any inbound
// message (the watches' records, their consumers' idle heartbeats every
// 5 s, replies) is a sign of life. Only after a quiet spell (livenessQuiet
// to twice that, drawn per connection, so that hosts do not ping
// together) does the host send a PING; a connection that brought neither
// a message nor that PING's PONG for livenessGrace more is given up
// (nats.Conn.ForceReconnect): 20-30 s after its last sign of life. A
// write stalled for flusherTimeout (a burst into a server cut off without
// a reset) ends the connection sooner (connect.go).
const (
	livenessQuiet = 10 * time.Second
	livenessGrace = 10 * time.Second
	livenessTick  = 2 * time.Second // how often the counters are looked at (no request)
	// libraryPing: the library's own check, kept as a last resort far
	// behind this one (an interval of 2 minutes, 3 outstanding).
	libraryPing        = 2 * time.Minute
	libraryPingsMissed = 3
)

// pinger is what the check needs of a connection.
type pinger interface {
	Stats() nats.Statistics
	FlushTimeout(time.Duration) error
}

// liveness is the check of one connection.
type liveness struct {
	quiet    time.Duration // the quiet spell that makes a PING
	inMsgs   uint64        // messages received at the last look
	lastSign time.Time     // the last sign of life
	ping     chan error    // the outstanding PING's answer; nil: none
}

func newLiveness(nc pinger, now time.Time, quiet time.Duration) *liveness {
	return &liveness{quiet: quiet, inMsgs: nc.Stats().InMsgs, lastSign: now}
}

// dead looks at the connection at now: a message received since the last
// look, or a PONG, is a sign of life; a PING goes out after a quiet spell.
// It reports whether the connection has shown no sign of life for the
// quiet spell and livenessGrace.
func (l *liveness) dead(nc pinger, now time.Time) bool {
	if in := nc.Stats().InMsgs; in != l.inMsgs {
		l.inMsgs, l.lastSign = in, now
	}
	if l.ping != nil {
		select {
		case err := <-l.ping:
			l.ping = nil
			if err == nil {
				l.lastSign = now
			}
		default:
		}
	}
	quiet := now.Sub(l.lastSign)
	if quiet >= l.quiet && l.ping == nil {
		ch := make(chan error, 1)
		l.ping = ch
		go func() { ch <- nc.FlushTimeout(livenessGrace) }()
	}
	return quiet >= l.quiet+livenessGrace
}

// watchLiveness checks the connection until ctx is done, and makes the
// library reconnect when it is dead.
func (c *Client) watchLiveness(ctx context.Context, nc *nats.Conn) {
	quiet := livenessQuiet + rand.N(livenessQuiet)
	t := time.NewTicker(livenessTick)
	defer t.Stop()
	l := newLiveness(nc, time.Now(), quiet)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		if !nc.IsConnected() {
			l = newLiveness(nc, now, quiet)
			continue
		}
		if l.dead(nc, now) {
			c.log.Warn("fleet: no sign of life from the server; reconnecting", "quiet", now.Sub(l.lastSign).Round(time.Second))
			l = newLiveness(nc, now, quiet)
			if err := nc.ForceReconnect(); err != nil {
				c.log.Warn("fleet: reconnect", "err", err)
			}
		}
	}
}
