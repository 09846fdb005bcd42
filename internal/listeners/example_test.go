package listeners_test

import (
	"context"
	"log/slog"
	"net/netip"

	"github.com/portsentry-nft/portsentry-nft/internal/listeners"
)

// A daemon reads the sockets once before installing its ruleset (so the
// kernel sets start out right), then keeps them and its user-space check
// current while it runs.
func ExampleWatcher() {
	monTCP, monUDP := []uint16{1, 11, 8080}, []uint16{1, 69}
	var w *listeners.Watcher
	w = &listeners.Watcher{
		OnChange: func(added, removed []listeners.Socket) {
			for _, s := range added {
				slog.Info("adminalert: port in use, no longer monitored: " + s.String() + " (" + listeners.ProcessName(s.Inode) + ")")
			}
			for _, s := range removed {
				slog.Info("adminalert: port free again, monitoring resumes: " + s.String())
			}
			// Rewrite the kernel's in-use sets from the new snapshot.
			_ = listeners.Elements(w.Snapshot().Sockets(), monTCP, monUDP)
		},
	}
	if _, _, err := w.Update(); err != nil {
		slog.Error("read listening sockets", "err", err)
	}
	_ = listeners.Elements(w.Snapshot().Sockets(), monTCP, monUDP) // install with the ruleset
	go w.Run(context.Background())

	// On the capture path, before any action (one atomic load, no allocation):
	if w.Snapshot().InUse(listeners.ProtoTCP, netip.MustParseAddr("10.201.0.1"), 8080) {
		return // a live service, not a tripwire
	}
}
