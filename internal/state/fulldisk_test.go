package state

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/portsentry-nft/portsentry-nft/internal/state/statetest"
)

// A full disk, for real (a small tmpfs, filled): Add and Sync say the
// changes are not durable (ErrNotDurable, wrapping ENOSPC) and Fault says
// the journal awaits its rewrite; once the space returns, a Sync with
// nothing new to write rewrites it. A new Open (the process died, nothing
// was closed) then holds every block the Store held: those added and the
// one removed while the disk was full included.
func TestFullDiskRewrittenWhenSpaceReturns(t *testing.T) {
	disk := statetest.NewDisk(t, "", 256<<10)
	p := Paths{Dir: disk.Dir, History: filepath.Join(disk.Dir, "history")}
	s, err := Open(p, now)
	if err != nil {
		t.Fatal(err)
	}
	s.retryEvery = 0
	for _, i := range []int{1, 2} {
		s.Add(blk(i))
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}

	disk.Fill()
	addOnFullDisk(t, s, 3, 103) // more than the page the journal's tail is on
	s.Remove(addr(1))
	if err := s.Sync(); !errors.Is(err, ErrNotDurable) || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Sync on a full disk: %v", err)
	}
	if err := s.Fault(); !errors.Is(err, ErrNotDurable) {
		t.Errorf("Fault on a full disk: %v", err)
	}

	disk.Free()
	if err := s.Sync(); err != nil {
		t.Fatalf("Sync once the space returned: %v", err)
	}
	if err := s.Fault(); err != nil {
		t.Errorf("Fault after the rewrite: %v", err)
	}
	if n, _ := s.Errors(); n == 0 {
		t.Error("no journal errors counted")
	}
	want := addrs(s.Active(now))
	if len(want) != 101 || slices.Contains(want, addr(1)) {
		t.Fatalf("in memory: %d blocks (10.1.0.1 held: %v), want 101 without it", len(want), slices.Contains(want, addr(1)))
	}
	journalLines(t, p.Dir)

	// No Close: the process is gone, and a reboot opens what is on disk.
	s2, err := Open(p, now)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := addrs(s2.Active(now)); !slices.Equal(got, want) {
		t.Errorf("reopened: %d blocks, want the %d held", len(got), len(want))
	}
	if len(s2.Warnings) != 0 {
		t.Errorf("warnings: %q", s2.Warnings)
	}
}

// addOnFullDisk adds blocks from to until, and checks that they fail as
// a full disk fails them: the journal's error an ErrNotDurable wrapping
// ENOSPC, the history file's apart from it (WithoutJournal).
func addOnFullDisk(t *testing.T, s *Store, from, until int) {
	t.Helper()
	var journalErr, fileErr error
	for i := from; i < until; i++ {
		err := s.Add(blk(i))
		if errors.Is(err, ErrNotDurable) && journalErr == nil {
			journalErr = err
		}
		if err := WithoutJournal(err); err != nil && fileErr == nil {
			fileErr = err
		}
	}
	if !errors.Is(journalErr, syscall.ENOSPC) {
		t.Errorf("Add on a full disk: %v, want an ErrNotDurable wrapping ENOSPC", journalErr)
	}
	if errors.Is(fileErr, ErrNotDurable) || !strings.Contains(fmt.Sprint(fileErr), "history") {
		t.Errorf("WithoutJournal kept %v, want the history file's error alone", fileErr)
	}
}

// A start on a full disk (a reboot before the space returned) with a
// journal that is mostly history, which Open compacts: the compaction
// fails, and Open still restores every block from the journal as it is
// and appends to it, rather than fail and leave the daemon down.
func TestOpenOnAFullDiskRestores(t *testing.T) {
	disk := statetest.NewDisk(t, "", 512<<10)
	p := Paths{Dir: disk.Dir}
	// A running Store compacts as it goes: the journal a crash leaves.
	var journal strings.Builder
	for i := range 800 { // 1600 lines of history, on 5 addresses
		b := blk(i % 5)
		journal.WriteString(encodeEntry(entry{Op: "add", Block: &b}) + encodeEntry(entry{Op: "del", Addr: b.Addr}))
	}
	for _, i := range []int{1000, 1001} {
		b := blk(i)
		journal.WriteString(encodeEntry(entry{Op: "add", Block: &b}))
	}
	if err := os.WriteFile(filepath.Join(p.Dir, journalName), []byte(journal.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	disk.Fill()
	s, err := Open(p, now)
	if err != nil {
		t.Fatalf("Open on a full disk: %v", err)
	}
	defer s.Close()
	if got := addrs(s.Active(now)); !slices.Equal(got, []netip.Addr{addr(1000), addr(1001)}) {
		t.Errorf("restored %v, want 10.1.3.232 and 10.1.3.233", got)
	}
	if !strings.Contains(strings.Join(s.Warnings, ";"), "not compacted") {
		t.Errorf("warnings %q do not say the journal was not compacted", s.Warnings)
	}
	disk.Free()
	s.Add(blk(1002))
	if err := s.Sync(); err != nil {
		t.Errorf("Sync once the space returned: %v", err)
	}
}
