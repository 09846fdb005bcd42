package ledger

import (
	"context"
	"net/netip"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// Follower follows the ledger: it is told of every block recorded and
// every block lifted, and carries it out in its own medium (hosts.deny,
// commands, PortSentry's lines, the fleet). The followers are a list
// (Config.Followers, Config.Announcers); adding one is a new type and one
// line of wiring. No follower calls another.
type Follower interface {
	// Blocked is told of a block once its element is in. A follower in
	// Config.Followers runs on the ledger's goroutine before the record is
	// journaled, and may add to it (hosts.deny keeps its line there); one
	// in Config.Announcers runs once the journal is on disk, on the
	// goroutine that announces. Neither may block: slow work goes to a
	// goroutine of the follower's own.
	Blocked(ctx context.Context, e *Entry)
	// Lifted is told of every block lifted (or, for Disowned, of the
	// kernel's element the ledger never held), on the ledger's goroutine,
	// after the element is gone.
	Lifted(ctx context.Context, l Lift)
}

// Entry is a block the ledger records: the decision, what the origin knew
// and the record as it will be journaled.
type Entry struct {
	Decision decide.Decision
	Evidence Evidence
	// At is when the block was decided.
	At     time.Time
	Record state.Block
}

// Cause says why a block was lifted.
type Cause uint8

const (
	// Unblocked: an administrator's unblock on this host (reaches the
	// fleet).
	Unblocked Cause = iota
	// FleetUnblocked: an administrator's unblock that came from the fleet.
	FleetUnblocked
	// Protected: the address became protected (a new gateway, local
	// address or nameserver); offences are kept.
	Protected
	// Expired: its time ran out.
	Expired
	// Evicted: given up to make room for a stronger block.
	Evicted
	// Disowned: the kernel struck an address the decision refused; the
	// ledger never held it (Why says why).
	Disowned
)

// Administrator reports whether the lift is an administrator's word (it
// resets the offences and is logged as an unblock).
func (c Cause) Administrator() bool { return c == Unblocked || c == FleetUnblocked }

// Lift is one lifted block.
type Lift struct {
	Addr  netip.Addr
	Cause Cause
	// Held: the ledger held a record (Record); false for an unblock of an
	// address it did not hold, and for Disowned.
	Held   bool
	Record state.Block
	// Why completes alert.LiftedLine for Disowned.
	Why string
}

// Commands runs the configured commands that are not followers of a
// block: those marked first, which run before the element goes in, and
// the response "command", which blocks nothing (internal/follow).
type Commands interface {
	// Before runs the commands marked first for e, off the caller's
	// goroutine, then calls then (ok false when ctx ended first). It
	// reports false, calling nothing, when no command is marked first.
	Before(ctx context.Context, e Entry, then func(ok bool)) bool
	// Respond runs every command for e (response "command"), off the
	// caller's goroutine.
	Respond(ctx context.Context, e Entry)
}

func (l *Ledger) blocked(ctx context.Context, fs []Follower, e *Entry) {
	for _, f := range fs {
		f.Blocked(ctx, e)
	}
}

func (l *Ledger) followLift(ctx context.Context, x Lift) {
	for _, f := range l.c.Followers {
		f.Lifted(ctx, x)
	}
	for _, f := range l.c.Announcers {
		f.Lifted(ctx, x)
	}
	if l.c.OnLift != nil && x.Cause != Expired {
		l.c.OnLift(x.Addr)
	}
}
