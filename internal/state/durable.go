package state

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// Durability of the journal.
//
// Every change appended to the journal is one generation: Store.written
// counts them, Store.durable is the last one known to be on disk. An
// append is a plain write (it reaches the page cache); Sync fsyncs, and
// concurrent Syncs share one fsync (group commit).
//
// After a failed write or fsync the journal's tail is no longer trusted: a
// short write leaves a fragment the next record would be glued to, and a
// failed fsync may have dropped dirty pages that a later fsync would then
// report as clean. So the Store stops appending ("broken") and rewrites the
// journal whole from memory (compact: a new file, fsynced, renamed, the
// directory fsynced) on the next append or Sync; memory still holds every
// change, so the rewrite loses none. Rewrites are attempted at most once
// per retryEvery, so a full disk does not turn every block into a rewrite
// of the whole journal.
//
// Every such failure is an ErrNotDurable, so that a caller can tell the
// one who asked for a block that it is in force but would not survive a
// restart; Fault says whether the journal still awaits its rewrite, and
// Errors counts the failures.

// journalFile is what the Store needs of the journal and of its rewrite;
// tests wrap it to inject faults and count fsyncs.
type journalFile interface {
	io.Writer
	io.StringWriter
	Sync() error
	Close() error
}

// openFile opens the journal (and its rewrite's temporary file). A test
// replaces it to wrap the file.
var openFile = func(name string, flag int, perm fs.FileMode) (journalFile, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// syncDir fsyncs a directory, so that a file created or renamed in it
// survives a crash. A test replaces it to count or fail it.
var syncDir = func(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	err = d.Sync()
	d.Close()
	// Some file systems cannot fsync a directory (and need not).
	if err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// retryEvery bounds how often a broken journal (or a rewrite that failed)
// is rewritten.
const retryEvery = time.Second

// ErrNotDurable marks the journal's failures (errors.Is): a write, an
// fsync or a rewrite failed, so the changes since the last good Sync are
// held in memory only, and a restart before the journal is rewritten
// loses them. The error wraps the cause (ENOSPC, EIO, ...).
var ErrNotDurable = errors.New("the journal is not on disk")

// journalError is a failure of the journal: its message is the cause's,
// and it is ErrNotDurable.
type journalError struct{ err error }

func (e *journalError) Error() string        { return e.err.Error() }
func (e *journalError) Unwrap() error        { return e.err }
func (e *journalError) Is(target error) bool { return target == ErrNotDurable }

var errClosed error = &journalError{errors.New("state store closed")}

// Sync makes every change made before it (by Add, Remove, Expire, from
// any goroutine) durable: it returns nil only once they are in the journal
// and the journal is fsynced. Add does not fsync by itself, so a caller
// that records many blocks calls Add for each, then Sync once, before it
// acknowledges them.
//
// Concurrent callers share fsyncs: one fsync runs at a time, and a caller
// whose changes an fsync (or a rewrite) already covered returns without
// one of its own.
//
// After a write or fsync failure Sync returns the error, wrapped with the
// path; the next Sync (after retryEvery) rewrites the journal from memory,
// and its nil covers every change since, those whose Add failed included.
func (s *Store) Sync() error {
	s.mu.Lock()
	want := s.written
	s.mu.Unlock()

	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	if s.durable >= want {
		s.mu.Unlock()
		return nil
	}
	if s.closed {
		s.mu.Unlock()
		return errClosed
	}
	if s.broken != nil {
		err := s.repair()
		s.mu.Unlock()
		return err
	}
	f, gen := s.journal, s.written
	s.mu.Unlock()

	// Without s.mu: changes go on being appended meanwhile; the next
	// fsync covers them.
	err := f.Sync()

	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.durable >= gen:
		// A rewrite covered these changes meanwhile (and may have closed f).
		return nil
	case s.journal != f && s.broken != nil:
		// Rewritten meanwhile, and the rewrite failed: that is the error.
		return fmt.Errorf("sync %s: %w", s.journalPath(), s.broken)
	case s.journal != f:
		return errClosed
	case err != nil:
		return s.fail(withPath("sync", s.journalPath(), err))
	}
	s.durable = gen
	return nil
}

// Errors reports the journal's I/O failures since Open: how many writes,
// fsyncs and rewrites failed, and the last error. Remove and Expire do not
// return theirs; they show here, and the next Sync returns an error until
// the journal is rewritten.
func (s *Store) Errors() (n uint64, last error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failures, s.lastErr
}

// Fault returns the failure the journal awaits a rewrite after (it is
// ErrNotDurable), nil while it is sound. While it is not nil the changes
// since the failure are in memory only: a Sync (which a caller repeats,
// the ledger every second) rewrites the journal once the disk takes it
// again.
func (s *Store) Fault() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.broken
}

// WithoutJournal returns what err (from Add) holds besides the journal's
// failures: the PortSentry files'. A caller that reports the journal's
// state once (see Fault) reports these as they come.
func WithoutJournal(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var rest []error
		for _, e := range j.Unwrap() {
			if !errors.Is(e, ErrNotDurable) {
				rest = append(rest, e)
			}
		}
		return errors.Join(rest...)
	}
	if errors.Is(err, ErrNotDurable) {
		return nil
	}
	return err
}

// append writes one change to the journal (no fsync). It returns an error
// when the change did not reach the journal; memory has it all the same,
// and the rewrite that repairs the journal writes it.
func (s *Store) append(e entry) error {
	if s.closed {
		return errClosed
	}
	s.written++
	if s.broken != nil {
		return s.repair()
	}
	if _, err := s.journal.WriteString(encodeEntry(e)); err != nil {
		return s.fail(withPath("write", s.journalPath(), err))
	}
	s.lines++
	if s.lines > 1024 && s.lines > 4*(s.active.len()+len(s.times)) && !time.Now().Before(s.retryAt) {
		// The change is in the journal: a rewrite that fails leaves it
		// there (and counts in Errors), unless it failed after the rename.
		if err := s.compact(); err != nil && s.broken != nil {
			return err
		}
	}
	return nil
}

// withPath says which operation on which file failed, unless err does
// already (an *fs.PathError from the file itself).
func withPath(op, path string, err error) error {
	if pe, ok := err.(*fs.PathError); ok && pe.Op == op && pe.Path == path {
		return err
	}
	return fmt.Errorf("%s %s: %w", op, path, err)
}

// fail records a write or fsync failure: the journal is not appended to
// again before it is rewritten.
func (s *Store) fail(err error) error {
	err = &journalError{err}
	s.failures++
	s.lastErr = err
	if s.broken == nil {
		s.broken = err
	}
	return err
}

// repair rewrites a broken journal from memory, at most once per retryEvery.
func (s *Store) repair() error {
	if time.Now().Before(s.retryAt) {
		return fmt.Errorf("journal %s awaits a rewrite after: %w", s.journalPath(), s.broken)
	}
	return s.compact()
}

// compact rewrites the journal with only what is needed, atomically: a
// temporary file written and fsynced, renamed over the journal, the
// directory fsynced. Every change made so far is then durable.
func (s *Store) compact() error {
	path, tmp := s.journalPath(), s.journalPath()+".tmp"
	n, err := s.snapshot(tmp)
	if err == nil {
		if err = os.Rename(tmp, path); err != nil {
			err = fmt.Errorf("rename %s: %w", tmp, err)
		}
	}
	if err != nil {
		os.Remove(tmp)
		// The old journal, if any, is intact and still in use.
		return s.compactFailed(err, false)
	}
	// The path names the new file now: the old one is never written again.
	if s.journal != nil {
		s.journal.Close()
		s.journal = nil
	}
	if err := syncDir(s.paths.Dir); err != nil {
		return s.compactFailed(err, true)
	}
	j, err := openFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return s.compactFailed(fmt.Errorf("open %s: %w", path, err), true)
	}
	s.journal, s.lines, s.broken, s.durable = j, n, nil, s.written
	return nil
}

func (s *Store) compactFailed(err error, renamed bool) error {
	err = &journalError{fmt.Errorf("rewrite journal: %w", err)}
	s.failures++
	s.lastErr = err
	s.retryAt = time.Now().Add(s.retryEvery)
	if renamed {
		// No journal to append to: the next append or Sync rewrites.
		s.broken = err
	}
	return err
}

// snapshot writes what memory holds to path and fsyncs it, returning the
// number of lines.
func (s *Store) snapshot(path string) (int, error) {
	f, err := openFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", path, err)
	}
	w := bufio.NewWriterSize(f, 64<<10)
	n := 0
	for k, t := range s.times {
		if _, act := s.active.get(k); !act {
			w.WriteString(encodeEntry(entry{Op: "times", Addr: k.Addr(), Times: int(t.n), Last: fromNanos(t.last)}))
			n++
		}
	}
	for i := range s.recs {
		b := s.unpack(s.recs[i].k, &s.recs[i])
		w.WriteString(encodeEntry(entry{Op: "add", Block: &b}))
		n++
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, withPath("write", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, withPath("sync", path, err)
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("close %s: %w", path, err)
	}
	return n, nil
}

// truncateTail cuts a torn last line off the journal, durably, before
// anything is appended after it.
func truncateTail(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("repair %s: %w", path, err)
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("repair %s: %w", path, err)
	}
	return nil
}
