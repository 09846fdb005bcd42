package state

import (
	"bufio"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var errInjected = errors.New("injected fault")

// faults wraps every journal file (and the rewrite's temporary file) the
// package opens: writes and fsyncs fail on demand, fsyncs are counted.
type faults struct {
	failWrite atomic.Bool // writes fail, after writing half their bytes (a short write)
	failSync  atomic.Bool
	delay     time.Duration // each journal fsync takes this long (a slow disk)
	syncs     atomic.Int64  // fsyncs of the journal itself
	tmpSyncs  atomic.Int64  // fsyncs of rewrites
	dirSyncs  atomic.Int64
}

func injectFaults(t *testing.T) *faults {
	ff := &faults{}
	open, dir := openFile, syncDir
	openFile = func(name string, flag int, perm fs.FileMode) (journalFile, error) {
		f, err := open(name, flag, perm)
		if err != nil {
			return nil, err
		}
		return &faultFile{f, ff, strings.HasSuffix(name, ".tmp")}, nil
	}
	syncDir = func(d string) error {
		ff.dirSyncs.Add(1)
		return dir(d)
	}
	t.Cleanup(func() { openFile, syncDir = open, dir })
	return ff
}

type faultFile struct {
	journalFile
	ff  *faults
	tmp bool
}

func (f *faultFile) Write(p []byte) (int, error) {
	if f.ff.failWrite.Load() {
		n, _ := f.journalFile.Write(p[:len(p)/2])
		return n, errInjected
	}
	return f.journalFile.Write(p)
}

func (f *faultFile) WriteString(s string) (int, error) { return f.Write([]byte(s)) }

func (f *faultFile) Sync() error {
	if f.tmp {
		f.ff.tmpSyncs.Add(1)
	} else {
		f.ff.syncs.Add(1)
		time.Sleep(f.ff.delay)
	}
	if f.ff.failSync.Load() {
		return errInjected
	}
	return f.journalFile.Sync()
}

func addr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}) }

func blk(i int) Block {
	return Block{Addr: addr(i), Timeout: time.Hour, Expires: now.Add(time.Hour), Times: 1, Kind: "TCP SYN scan", Proto: "TCP", Port: 79, Ports: []uint16{79, 80}}
}

func addrs(bs []Block) []netip.Addr {
	var out []netip.Addr
	for _, b := range bs {
		out = append(out, b.Addr)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// journalLines checks that every line of the journal is whole and decodes.
func journalLines(t *testing.T, dir string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, journalName))
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Errorf("journal ends in a torn line: %q", data[max(0, len(data)-40):])
	}
	n := 0
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for ; sc.Scan(); n++ {
		if _, err := decodeEntry(sc.Text()); err != nil {
			t.Errorf("journal line %d does not decode: %q", n+1, sc.Text())
		}
	}
	return n
}

// A torn last line, whether cut mid-field or whole but for its newline, is
// dropped at Open and cut off the journal: the next record is not glued to
// it, and every complete record before it stays.
func TestTornTailDoesNotSwallowTheNextRecord(t *testing.T) {
	del12 := "del\t" + addr(12).String() + "\n"
	for name, tail := range map[string]string{
		"mid-field":           strings.TrimSuffix(encodeEntry(entry{Op: "add", Block: ptr(blk(50))}), "\n")[:30],
		"whole but unended":   strings.TrimSuffix(encodeEntry(entry{Op: "add", Block: ptr(blk(50))}), "\n"),
		"cut to another addr": del12[:len(del12)-2], // "del 10.1.0.1": would lift the wrong block
		"only a fragment":     "",
	} {
		t.Run(name, func(t *testing.T) {
			p := Paths{Dir: t.TempDir()}
			journal := filepath.Join(p.Dir, journalName)
			want := []netip.Addr{addr(99)}
			if tail == "" {
				// The journal is nothing but a torn line: Open rewrites it.
				tail = "add\t10.1.0."
			} else {
				s, err := Open(p, now)
				if err != nil {
					t.Fatal(err)
				}
				for _, i := range []int{1, 2, 3, 12} {
					s.Add(blk(i))
				}
				s.Remove(addr(2))
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				want = []netip.Addr{addr(1), addr(3), addr(12), addr(99)}
			}
			f, _ := os.OpenFile(journal, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
			f.WriteString(tail)
			f.Close()

			s, err := Open(p, now)
			if err != nil {
				t.Fatal(err)
			}
			if w := strings.Join(s.Warnings, "; "); !strings.Contains(w, "journal ended in a torn line (") || !strings.Contains(w, "dropped it") {
				t.Errorf("warnings %q do not mention the torn line", s.Warnings)
			}
			if err := s.Add(blk(99)); err != nil {
				t.Fatal(err)
			}
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
			s.Close()
			journalLines(t, p.Dir)

			s, err = Open(p, now)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := addrs(s.Active(now)); !slices.Equal(got, want) {
				t.Errorf("after the repair: %v, want %v", got, want)
			}
			if len(s.Warnings) != 0 {
				t.Errorf("warnings on a sound journal: %q", s.Warnings)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// Add writes, Sync fsyncs: Add alone never fsyncs, a Sync with nothing new
// does not either, and a journal that is created or rewritten has its
// directory fsynced.
func TestAddDoesNotSyncAndSyncDoes(t *testing.T) {
	ff := injectFaults(t)
	p := Paths{Dir: t.TempDir()}
	s, err := Open(p, now)
	if err != nil {
		t.Fatal(err)
	}
	if ff.dirSyncs.Load() == 0 || ff.tmpSyncs.Load() == 0 {
		t.Errorf("a new journal: %d directory fsyncs, %d file fsyncs", ff.dirSyncs.Load(), ff.tmpSyncs.Load())
	}
	for i := range 10 {
		s.Add(blk(i))
	}
	s.Remove(addr(3))
	if n := ff.syncs.Load(); n != 0 {
		t.Errorf("Add and Remove fsynced %d times", n)
	}
	if err := s.Sync(); err != nil || ff.syncs.Load() != 1 {
		t.Errorf("Sync: %v, %d fsyncs, want 1", err, ff.syncs.Load())
	}
	if err := s.Sync(); err != nil || ff.syncs.Load() != 1 {
		t.Errorf("Sync with nothing new: %v, %d fsyncs, want still 1", err, ff.syncs.Load())
	}
	// Compaction: mostly history.
	dirs := ff.dirSyncs.Load()
	for i := 0; i < 3000; i++ {
		s.Add(blk(1))
	}
	if ff.dirSyncs.Load() == dirs {
		t.Error("the journal was rewritten without fsyncing its directory")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := journalLines(t, p.Dir); n > 1024 {
		t.Errorf("journal not compacted: %d lines", n)
	}
}

// Write and fsync failures reach the caller; the journal is not appended
// to after them (a short write leaves a fragment) but rewritten from
// memory once the fault clears; a reopen then restores exactly what the
// last successful Sync covered.
func TestWriteAndSyncFaults(t *testing.T) {
	ff := injectFaults(t)
	p := Paths{Dir: t.TempDir()}
	s, err := Open(p, now)
	if err != nil {
		t.Fatal(err)
	}
	s.retryEvery = 0
	journal := filepath.Join(p.Dir, journalName)

	for _, i := range []int{1, 2} {
		if err := s.Add(blk(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}

	// The disk fills: half a line lands.
	ff.failWrite.Store(true)
	if err := s.Add(blk(3)); !errors.Is(err, errInjected) || !strings.Contains(err.Error(), journal) {
		t.Errorf("Add on a failing write: %v", err)
	}
	s.Remove(addr(1))
	if n, last := s.Errors(); n == 0 || !errors.Is(last, errInjected) {
		t.Errorf("Errors after failures: %d, %v", n, last)
	}
	if err := s.Sync(); !errors.Is(err, errInjected) {
		t.Errorf("Sync while writes fail: %v", err)
	}

	// The fault clears: the next Add rewrites the journal, 3 and the
	// removal of 1 included.
	ff.failWrite.Store(false)
	if err := s.Add(blk(4)); err != nil {
		t.Errorf("Add after the fault cleared: %v", err)
	}
	if err := s.Sync(); err != nil {
		t.Errorf("Sync after the fault cleared: %v", err)
	}
	journalLines(t, p.Dir)

	// An fsync fails: its error, wrapped with the path.
	ff.failSync.Store(true)
	if err := s.Add(blk(5)); err != nil {
		t.Errorf("Add does not fsync, yet: %v", err)
	}
	if err := s.Sync(); !errors.Is(err, errInjected) || !strings.HasPrefix(err.Error(), "sync "+journal+": ") {
		t.Errorf("Sync on a failing fsync: %v", err)
	}
	ff.failSync.Store(false)
	// The pages the failed fsync covered are not trusted: rewritten.
	tmp := ff.tmpSyncs.Load()
	s.Remove(addr(2))
	if ff.tmpSyncs.Load() == tmp {
		t.Error("the journal was appended to after a failed fsync, not rewritten")
	}
	if err := s.Sync(); err != nil {
		t.Errorf("Sync after the fault cleared: %v", err)
	}
	want := addrs(s.Active(now))
	if !slices.Equal(want, []netip.Addr{addr(3), addr(4), addr(5)}) {
		t.Fatalf("in memory: %v", want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(p, now)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := addrs(s.Active(now)); !slices.Equal(got, want) {
		t.Errorf("reopened: %v, want %v", got, want)
	}
	if len(s.Warnings) != 0 {
		t.Errorf("warnings: %q", s.Warnings)
	}
}

// The process dies while the journal is failing: the reopen has exactly
// the acknowledged blocks, and drops the fragment the short write left.
func TestCrashWhileWritesFail(t *testing.T) {
	ff := injectFaults(t)
	p := Paths{Dir: t.TempDir()}
	s, err := Open(p, now)
	if err != nil {
		t.Fatal(err)
	}
	s.retryEvery = 0
	s.Add(blk(1))
	s.Add(blk(2))
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	ff.failWrite.Store(true)
	if s.Add(blk(3)) == nil || s.Sync() == nil {
		t.Fatal("a failing write was acknowledged")
	}
	s.Remove(addr(1))
	s.Add(blk(4))
	// No Close: the process is gone.
	ff.failWrite.Store(false)

	s2, err := Open(p, now)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := addrs(s2.Active(now)); !slices.Equal(got, []netip.Addr{addr(1), addr(2)}) {
		t.Errorf("reopened: %v, want the acknowledged 10.1.0.1 and 10.1.0.2", got)
	}
	if !strings.Contains(strings.Join(s2.Warnings, ";"), "torn line") {
		t.Errorf("warnings %q do not mention the fragment", s2.Warnings)
	}
}

// Concurrent Add+Sync callers share fsyncs, and every block is on disk.
func TestGroupCommit(t *testing.T) {
	ff := injectFaults(t)
	ff.delay = 5 * time.Millisecond
	p := Paths{Dir: t.TempDir()}
	s, err := Open(p, now)
	if err != nil {
		t.Fatal(err)
	}
	const n = 64
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			if err := s.Add(blk(i)); err != nil {
				errs <- err
			}
			if err := s.Sync(); err != nil {
				errs <- err
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := ff.syncs.Load(); got >= n {
		t.Errorf("%d fsyncs for %d concurrent Syncs", got, n)
	} else {
		t.Logf("%d fsyncs for %d concurrent Add+Sync", got, n)
	}
	// Reopen without Close: what Sync acknowledged is on disk.
	s2, err := Open(p, now)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Len() != n {
		t.Errorf("reopened with %d blocks, want %d", s2.Len(), n)
	}
	s.Close()
}

// A journal that cannot be read to its end is not half-loaded (a rewrite
// would make the loss permanent).
func TestUnreadableJournalFailsOpen(t *testing.T) {
	p := Paths{Dir: t.TempDir()}
	os.WriteFile(filepath.Join(p.Dir, journalName), []byte(strings.Repeat("x", 2<<20)+"\n"), 0o600)
	if s, err := Open(p, now); err == nil {
		s.Close()
		t.Fatal("a journal with a 2 MB line was opened")
	}
}

// Syncs racing with rewrites (the journal replaced, the old file closed,
// while an fsync of it is under way) report no spurious error.
func TestSyncDuringCompaction(t *testing.T) {
	ff := injectFaults(t)
	ff.delay = 100 * time.Microsecond
	p := Paths{Dir: t.TempDir()}
	s, err := Open(p, now)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 1500 {
				if err := s.Add(blk(g*4 + i%4)); err != nil {
					t.Error(err)
					return
				}
				if i%15 == 0 {
					if err := s.Sync(); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if ff.tmpSyncs.Load() < 3 {
		t.Errorf("only %d rewrites: the test did not race them", ff.tmpSyncs.Load())
	}
	s, err = Open(p, now)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Len() != 16 {
		t.Errorf("reopened with %d blocks, want 16", s.Len())
	}
}
