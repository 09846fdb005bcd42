package ledger

import (
	"net/netip"

	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// Durability: Apply answers only once its operations are on disk, and a
// block that is not is not acknowledged as one.
//
// When the journal cannot be written or synced (a full disk, an I/O
// error), what Apply carried out stays carried out (the kernel enforces
// it, the ledger holds it), and Apply returns an error that is
// ErrNotDurable, wrapping the journal's: the caller (the control socket)
// tells the administrator that a restart before the journal is rewritten
// loses it. The store keeps every change in memory; every second the
// ledger has the announcing goroutine sync the journal while it awaits its
// rewrite, and the rewrite (the whole journal, atomically) succeeds as
// soon as the disk takes it again: every block in force then survives a
// reboot, those Apply warned about included. The ledger logs once when
// the journal stops being durable, and once when it is again; the
// failures are counted by the store (state.Store.Errors).

// ErrNotDurable marks an Apply whose operations were carried out but are
// not on disk (errors.Is); it wraps the journal's error.
var ErrNotDurable = state.ErrNotDurable

// sync puts the journal on disk (one fsync for every block recorded
// before it). Its error is the journal's, an ErrNotDurable.
func (l *Ledger) sync() error {
	err := l.c.Store.Sync()
	switch {
	case err != nil && l.notDurable.CompareAndSwap(false, true):
		l.c.Log.Errorf("the journal of blocks is not on disk (%v): blocks and unblocks are in force but would not survive "+
			"a restart until it is rewritten, which the daemon retries every second", err)
	case err == nil && l.notDurable.CompareAndSwap(true, false):
		l.c.Log.Infof("The journal of blocks is on disk again: every block in force survives a restart.")
	}
	return err
}

// retryJournal has the announcing goroutine sync (and so rewrite) a
// journal that awaits its rewrite: nothing else may come to write it once
// the disk takes it again. Called on the ledger's goroutine every second.
func (l *Ledger) retryJournal() {
	if l.c.Store.Fault() == nil && !l.notDurable.Load() {
		return
	}
	select {
	case l.announceQ <- announcement{}:
	default: // the queue is busy: its own syncs retry
	}
}

// filesWritten reports how writing a block's lines to PortSentry's
// history and blocked files went: a failure once, until they are written
// again (on a full disk every block's line fails, and one ERROR line per
// block would bury the rest of the log), and then that they are.
func (l *Ledger) filesWritten(a netip.Addr, err error) {
	switch {
	case err != nil && l.filesFailing.CompareAndSwap(false, true):
		l.c.Log.Errorf("could not write the block of %s to PortSentry's history or blocked file: %v "+
			"(said once, until they are written again)", a, err)
	case err == nil && l.filesFailing.CompareAndSwap(true, false):
		l.c.Log.Infof("PortSentry's history and blocked files are written again.")
	}
}
