// Package state keeps what must outlive the daemon process: the active
// blocks with their expiry times (so a reboot, which empties the kernel's
// sets, restores every block with its remaining time), how often each
// address was blocked before (for longer repeat-offender blocks), and
// PortSentry's two text files, the history file (one line per block, in
// PortSentry 1.2's format, so existing tooling keeps reading it) and the
// blocked file of the current run.
//
// The kernel is the source of truth while the daemon runs; this is its
// memory across restarts. Records are appended to a journal (one JSON line
// per change, cheap and crash-safe; see journal.go), compacted when it is
// mostly history.
package state

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// Block is one active block.
type Block struct {
	Addr    netip.Addr
	Expires time.Time
	Timeout time.Duration
	Kind    string    // scan type that triggered it, "manual" for the CLI
	Proto   string    // TCP or UDP
	Port    uint16    // port of the triggering probe
	Ports   []uint16  // ports probed (bounded)
	First   time.Time // first probe of the episode
	Last    time.Time // last probe
	Times   int       // how many times this address has been blocked, this one included
	Host    string    // resolved name, if any
	// HostsDeny is the hosts.deny line written for this block, if any.
	HostsDeny string
	// Origin is who decided the block.
	Origin Origin
	// Weak: the block rests on a single probe, which anyone can spoof. It
	// does not count as an offence (no longer blocks next time) unless
	// more probes corroborate it (Strengthen), and a full set gives it up
	// first.
	Weak bool
}

// Origin is where a block came from.
type Origin string

// The origins of blocks. Each is one more way into the same decision and
// the same ledger, never a path of its own.
const (
	OriginDetect Origin = "detect" // the detector: a scan reached the trigger
	OriginManual Origin = "manual" // an administrator: portsentry-nft block
)

// Origins lists every origin, for metrics and documentation.
var Origins = []Origin{OriginDetect, OriginManual}

// ParseOrigin reads an origin as the journal writes it.
func ParseOrigin(s string) (Origin, error) {
	for _, o := range Origins {
		if string(o) == s {
			return o, nil
		}
	}
	return "", fmt.Errorf("unknown origin %q", s)
}

// journal lines
type entry struct {
	Op    string // "add", "del", "times"
	Block *Block
	Addr  netip.Addr
	Times int
	Last  time.Time // times: when the last block ended
}

// Paths says where the files live.
type Paths struct {
	Dir     string // journal lives here (blocks.journal)
	History string // PortSentry HISTORY_FILE
	Blocked string // PortSentry BLOCKED_FILE
}

// Store is the state of one daemon. It is safe for concurrent use.
type Store struct {
	// Warnings are problems Open met that do not stop the daemon (a
	// PortSentry text file it cannot write, say).
	Warnings []string

	mu      sync.Mutex
	paths   Paths
	journal *os.File
	active  map[netip.Addr]*Block
	times   map[netip.Addr]offender // past block counts, kept after blocks expire (bounded)
	n6      int                     // active IPv6 blocks (the rest are IPv4)
	lines   int                     // journal lines, to decide on compaction
}

const journalName = "blocks.journal"

// Open loads the journal (dropping expired blocks), compacts it, and
// truncates the blocked file for this run.
func Open(p Paths, now time.Time) (*Store, error) {
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	s := &Store{paths: p, active: map[netip.Addr]*Block{}, times: map[netip.Addr]offender{}}
	lines, err := s.load(now)
	if err != nil {
		return nil, err
	}
	// Rewrite the journal only when it is mostly history; a restart with
	// many live blocks then costs one read, not a rewrite.
	if lines > 1024 && lines > 2*(len(s.active)+len(s.times)) || lines == 0 {
		err = s.compact()
	} else {
		err = s.openJournal(lines)
	}
	if err != nil {
		return nil, err
	}
	if p.Blocked != "" {
		if err := os.WriteFile(p.Blocked, nil, 0o600); err != nil {
			// Not fatal: blocks and the journal are what matter.
			s.Warnings = append(s.Warnings, fmt.Sprintf("blocked file %s cannot be reset: %v", p.Blocked, err))
		}
	}
	return s, nil
}

// put and drop change active and keep the per-family count.
func (s *Store) put(b *Block) {
	if _, ok := s.active[b.Addr]; !ok && b.Addr.Is6() {
		s.n6++
	}
	s.active[b.Addr] = b
}

func (s *Store) drop(a netip.Addr) {
	if _, ok := s.active[a]; ok && a.Is6() {
		s.n6--
	}
	delete(s.active, a)
}

// Count is the number of active blocks by family, in constant time (a
// metrics scrape reads it).
func (s *Store) Count() (v4, v6 int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.active) - s.n6, s.n6
}

func (s *Store) journalPath() string { return filepath.Join(s.paths.Dir, journalName) }

// load replays the journal and returns how many lines it had.
func (s *Store) load(now time.Time) (int, error) {
	f, err := os.Open(s.journalPath())
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", s.journalPath(), err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	lines := 0
	for ; sc.Scan(); lines++ {
		e, err := decodeEntry(sc.Text())
		if err != nil {
			// A torn last line after a crash is expected; anything else is skipped too.
			continue
		}
		switch e.Op {
		case "add":
			if e.Block != nil && e.Block.Addr.IsValid() {
				b := *e.Block
				s.put(&b)
				s.remember(b.Addr, b.Times, b.Expires)
			}
		case "del":
			s.drop(e.Addr)
		case "times":
			s.times[e.Addr] = offender{e.Times, e.Last}
		}
	}
	for a, b := range s.active {
		if !b.Expires.After(now) {
			s.drop(a)
		}
	}
	for a, o := range s.times {
		if o.last.Before(now.Add(-RepeatMemory)) {
			delete(s.times, a)
		}
	}
	return lines, nil
}

func (s *Store) openJournal(lines int) error {
	j, err := os.OpenFile(s.journalPath(), os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	s.journal, s.lines = j, lines
	return nil
}

// compact rewrites the journal with only what is needed, atomically.
func (s *Store) compact() error {
	if s.journal != nil {
		s.journal.Close()
		s.journal = nil
	}
	tmp := s.journalPath() + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("compact journal: %w", err)
	}
	w := bufio.NewWriter(f)
	n := 0
	for a, t := range s.times {
		if _, act := s.active[a]; !act {
			w.WriteString(encodeEntry(entry{Op: "times", Addr: a, Times: t.n, Last: t.last}))
			n++
		}
	}
	for _, b := range s.active {
		w.WriteString(encodeEntry(entry{Op: "add", Block: b}))
		n++
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("compact journal: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("compact journal: %w", err)
	}
	f.Close()
	if err := os.Rename(tmp, s.journalPath()); err != nil {
		return fmt.Errorf("compact journal: %w", err)
	}
	return s.openJournal(n)
}

func (s *Store) append(e entry) error {
	if _, err := s.journal.WriteString(encodeEntry(e)); err != nil {
		return fmt.Errorf("write %s: %w", s.journalPath(), err)
	}
	s.lines++
	if s.lines > 1024 && s.lines > 4*(len(s.active)+len(s.times)) {
		return s.compact()
	}
	return nil
}

// TimesBlocked is how many times addr was blocked before.
func (s *Store) TimesBlocked(a netip.Addr) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.times[a].n
}

// offender is what is kept of an address once its blocks have expired:
// how often it was blocked, and when the last block ended.
type offender struct {
	n    int
	last time.Time
}

// Repeat offenders are remembered for RepeatMemory after their last block,
// and at most MaxOffenders of them (the oldest forgotten first): a spoofed
// flood blocks a new address every time, and must not grow this forever.
const (
	RepeatMemory = 30 * 24 * time.Hour
	MaxOffenders = 100000
)

func (s *Store) remember(a netip.Addr, n int, last time.Time) {
	o := s.times[a]
	s.times[a] = offender{max(o.n, n), last}
	if len(s.times) > MaxOffenders {
		s.forgetOldest(len(s.times) - MaxOffenders*9/10)
	}
}

// forgetOldest drops the k offenders whose last block is oldest (never one
// with an active block).
func (s *Store) forgetOldest(k int) {
	type aged struct {
		a    netip.Addr
		last time.Time
	}
	var all []aged
	for a, o := range s.times {
		if _, act := s.active[a]; !act {
			all = append(all, aged{a, o.last})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].last.Before(all[j].last) })
	for _, x := range all[:min(k, len(all))] {
		delete(s.times, x.a)
	}
}

// Add records a committed block, and writes the history and blocked files.
func (s *Store) Add(b Block) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.put(&b)
	s.remember(b.Addr, b.Times, b.Expires)
	err := s.append(entry{Op: "add", Block: &b})
	line := historyLine(b)
	for _, path := range []string{s.paths.History, s.paths.Blocked} {
		if path == "" {
			continue
		}
		if werr := appendLine(path, line); werr != nil {
			err = errors.Join(err, werr)
		}
	}
	return err
}

// Remove forgets an active block (expired or lifted) and returns it.
func (s *Store) Remove(a netip.Addr) (Block, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.active[a]
	if !ok {
		return Block{}, false
	}
	s.drop(a)
	s.append(entry{Op: "del", Addr: a})
	return *b, true
}

// Has reports an active block of a (without copying it).
func (s *Store) Has(a netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.active[a]
	return ok
}

// Get returns the active block of a.
func (s *Store) Get(a netip.Addr) (Block, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.active[a]
	if !ok {
		return Block{}, false
	}
	return *b, true
}

// Active returns the blocks that have not expired at now, soonest expiry first.
func (s *Store) Active(now time.Time) []Block {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Block, 0, len(s.active))
	for _, b := range s.active {
		if b.Expires.After(now) {
			out = append(out, *b)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Expires.Before(out[j].Expires) })
	return out
}

// Len is the number of active blocks.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.active)
}

// Expire removes and returns the blocks expired at now.
func (s *Store) Expire(now time.Time) []Block {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Block
	for a, b := range s.active {
		if !b.Expires.After(now) {
			out = append(out, *b)
			s.drop(a)
			s.append(entry{Op: "del", Addr: a})
		}
	}
	return out
}

// Close flushes and closes the journal.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.journal == nil {
		return nil
	}
	err := s.journal.Close()
	s.journal = nil
	return err
}

// historyLine is PortSentry 1.2's history/blocked line:
// "<epoch> - MM/DD/YYYY HH:MM:SS Host: name/ip Port: N TCP Blocked".
func historyLine(b Block) string {
	t := b.Expires.Add(-b.Timeout).Local()
	host := b.Host
	if host == "" {
		host = b.Addr.String()
	}
	proto := b.Proto
	if proto == "" {
		proto = "TCP"
	}
	return fmt.Sprintf("%d - %s Host: %s/%s Port: %d %s Blocked", t.Unix(), t.Format("01/02/2006 15:04:05"), host, b.Addr, b.Port, proto)
}

func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("append to %s: %w", path, err)
	}
	_, err = f.WriteString(line + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("append to %s: %w", path, err)
	}
	return nil
}
