package follow

import (
	"context"

	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// Lines writes PortSentry's lines for blocks and lifts (the log contract,
// internal/alert). It belongs in ledger.Config.Announcers: a block's
// "has been blocked" line is written once its record is on disk.
type Lines struct{ Log *alert.Log }

// by says who made a block of origin o, for the blocked line.
func by(o state.Origin) string {
	switch o {
	case state.OriginManual:
		return "an administrator"
	case state.OriginKernel:
		return "the kernel"
	case state.OriginFleet:
		return "the fleet"
	}
	return ""
}

// Blocked writes the "has been blocked" line, and the hosts.deny one.
func (w Lines) Blocked(_ context.Context, e *ledger.Entry) {
	a, r := e.Decision.Addr, &e.Record
	w.Log.Attack(alert.BlockedLine(a, nft.TableName, nft.SetOf(a), r.Timeout, r.Times, by(e.Decision.Origin)))
	if r.HostsDeny != "" {
		w.Log.Attack(alert.WrappersLine(a, r.HostsDeny))
	}
}

// Lifted writes the line of the lift's cause.
func (w Lines) Lifted(_ context.Context, l ledger.Lift) {
	switch l.Cause {
	case ledger.Unblocked, ledger.FleetUnblocked:
		w.Log.Attack(alert.UnblockedLine(l.Addr))
	case ledger.Evicted:
		w.Log.Attack(alert.EvictedLine(l.Addr))
	case ledger.Disowned:
		w.Log.AttackWarn(alert.LiftedLine(l.Addr, l.Why))
	case ledger.Expired:
		w.Log.Infof("Block of host %s expired", l.Addr)
	}
}
