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
// 5 s, replies) counts as a sign of life; only a connection that brought
// nothing for livenessMisses intervals, nor a PONG to a PING sent after
// the first quiet one, is given up (nats.Conn.ForceReconnect). The
// interval is drawn per connection between livenessInterval and twice
// that, so that hosts do not ping together. A write stalled for
// flusherTimeout (a burst into a server cut off without a reset) ends
// the connection sooner (connect.go).
const (
	livenessInterval = 10 * time.Second
	livenessMisses   = 2
	// libraryPing: the library's own check, kept as a last resort far
	// behind this one (an interval of 2 minutes, 3 outstanding).
	libraryPing        = 2 * time.Minute
	libraryPingsMissed = 3
)

// liveness is the state of the check of one connection.
type liveness struct {
	inMsgs uint64 // messages received at the last look
	quiet  int    // intervals in a row without a sign of life
}

// dead looks at the connection after one interval: a message received,
// or else a PONG to a PING within wait, is a sign of life. It reports
// whether the connection has been quiet for livenessMisses intervals.
func (l *liveness) dead(nc pinger, wait time.Duration) bool {
	in := nc.Stats().InMsgs
	if in != l.inMsgs {
		l.inMsgs, l.quiet = in, 0
		return false
	}
	err := nc.FlushTimeout(wait)
	if in2 := nc.Stats().InMsgs; err == nil || in2 != in {
		l.inMsgs, l.quiet = in2, 0
		return false
	}
	l.quiet++
	return l.quiet >= livenessMisses
}

// pinger is what the check needs of a connection.
type pinger interface {
	Stats() nats.Statistics
	FlushTimeout(time.Duration) error
}

// watchLiveness checks the connection every interval until ctx is done,
// and makes the library reconnect when it is dead.
func (c *Client) watchLiveness(ctx context.Context, nc *nats.Conn) {
	every := livenessInterval + rand.N(livenessInterval)
	t := time.NewTicker(every)
	defer t.Stop()
	var l liveness
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !nc.IsConnected() {
			l = liveness{inMsgs: nc.Stats().InMsgs}
			continue
		}
		if l.dead(nc, every) {
			c.log.Warn("fleet: no sign of life from the server; reconnecting", "quiet", time.Duration(l.quiet)*every)
			l = liveness{}
			if err := nc.ForceReconnect(); err != nil {
				c.log.Warn("fleet: reconnect", "err", err)
			}
		}
	}
}
