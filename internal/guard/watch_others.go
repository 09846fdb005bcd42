//go:build !linux

package guard

import (
	"context"
	"errors"
	"net/netip"
	"os"
)

// Watch reports addresses that became protected (by the caller's periodic
// Refresh) until ctx is done; following changes as they happen needs
// Linux.
func (g *Guard) Watch(ctx context.Context, netns *os.File, changed func(added []netip.Addr), warn func(error)) {
	if warn != nil {
		warn(errors.ErrUnsupported)
	}
	g.startReports()
	defer g.stopReports()
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.kick:
			if as := g.takeReports(); len(as) > 0 {
				changed(as)
			}
		}
	}
}
