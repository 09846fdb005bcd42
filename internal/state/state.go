// Package state keeps what must outlive the daemon process: the active
// blocks with their expiry times (so a reboot, which empties the kernel's
// sets, restores every block with its remaining time), how often each
// address was blocked before (for longer repeat-offender blocks), and
// PortSentry's two text files, the history file (one line per block, in
// PortSentry 1.2's format, so existing tooling keeps reading it) and the
// blocked file of the current run.
//
// The kernel is the source of truth while the daemon runs; this is its
// memory across restarts. Records are appended to a journal (one line per
// change; see journal.go), made durable by Store.Sync (see durable.go), and
// compacted when it is mostly history.
package state

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
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
	// Evidence is what the block rests on (decide.Evidence's names:
	// forgeable, corroborated, handshake, administrator); "" in records
	// older than it.
	Evidence string `json:",omitempty"`
	// From is the fleet host whose record it mirrors (origin fleet): each
	// such host has a bounded share of the sets here.
	From string `json:",omitempty"`
	// Tool is the scanner that sent the probe (internal/scanner's names:
	// nmap-syn, masscan, ..., unknown); "" when no probe is known (an
	// administrator's block, an adopted element) and in older records.
	Tool string `json:",omitempty"`
}

// EvidenceForgeable is Block.Evidence for a block on probes, which anyone
// can forge: never an offence.
const EvidenceForgeable = "forgeable"

// Origin is where a block came from.
type Origin string

// The origins of blocks. Each is one more way into the same decision and
// the same ledger, never a path of its own.
const (
	OriginDetect Origin = "detect" // the detector: a scan reached the trigger
	OriginManual Origin = "manual" // an administrator: portsentry-nft block
	// OriginKernel: the kernel's first strike added the element in the
	// probe's own packet path; the daemon followed it (or adopted it, when
	// it was stopped or lost the probe's copy).
	OriginKernel Origin = "kernel"
	// OriginFleet: another host of the fleet blocked it (or the fleet's
	// hosts, together, saw it probe: a correlated block); mirrored here.
	OriginFleet Origin = "fleet"
)

// Origins lists every origin, for metrics and documentation.
var Origins = []Origin{OriginDetect, OriginManual, OriginKernel, OriginFleet}

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
	journal journalFile // nil once closed, or while broken after a failed rewrite
	closed  bool
	// active indexes recs, the blocks in force (see record.go): a map of
	// small values and a dense slice take half the room of a map of records.
	active index
	recs   []rec
	ext    map[key]*ext
	words  words
	// times: past block counts of addresses without a block in force
	// (bounded); a block in force holds its own (rec.off).
	times map[key]offender
	n6    int // active IPv6 blocks (the rest are IPv4)
	// fleet counts the active blocks of origin fleet, from those of each
	// fleet host (Block.From).
	fleet int
	from  map[string]int
	lines int // journal lines, to decide on compaction
	// scan is what Prepare found in the journal; follow, while Load
	// tells of the blocks it reads (see load.go).
	scan   scanned
	follow *follower

	// Durability (see durable.go), under mu.
	written, durable uint64        // changes appended; the last one known on disk
	broken           error         // the journal is not appended to until rewritten
	retryAt          time.Time     // no rewrite before then, after one failed
	retryEvery       time.Duration // retryEvery, but for tests
	failures         uint64        // write, fsync and rewrite failures since Open
	lastErr          error

	syncMu sync.Mutex // one fsync at a time (taken before mu)

	// texts: the history and blocked files, under mu.
	texts []*appender
}

const journalName = "blocks.journal"

// Open loads the journal (dropping expired blocks), compacts it, and
// truncates the blocked file for this run: Prepare, then Load.
func Open(p Paths, now time.Time) (*Store, error) {
	s, err := Prepare(p)
	if err != nil {
		return nil, err
	}
	if _, err := s.Load(now, now, nil); err != nil {
		return nil, err
	}
	return s, nil
}

// Prepare makes the Store of p and scans its journal (its lines, and the
// addresses a del line lifts: see Load) without replaying it. The Store
// holds nothing until Load has read the journal, which it must before
// any other use.
func Prepare(p Paths) (*Store, error) {
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	s := &Store{words: words{list: []string{""}, idx: map[string]uint16{}}, paths: p, active: newIndex(0), ext: map[key]*ext{}, times: map[key]offender{}, retryEvery: retryEvery}
	for _, path := range []string{p.History, p.Blocked} {
		if path != "" {
			s.texts = append(s.texts, &appender{path: path})
		}
	}
	sc, err := scanJournal(s.journalPath())
	if err != nil {
		return nil, err
	}
	s.scan = sc
	return s, nil
}

// Lines is how many lines Prepare found in the journal: before Load, an
// upper bound of the blocks it will hold.
func (s *Store) Lines() int { return s.scan.lines }

// finishLoad reports what load found and starts the journal.
func (s *Store) finishLoad(r loaded) error {
	if r.bad > 0 {
		s.Warnings = append(s.Warnings, fmt.Sprintf("journal %s: skipped %d malformed lines", s.journalPath(), r.bad))
	}
	if r.torn > 0 {
		// Appending after it would glue the next record to the fragment,
		// losing that record too.
		s.Warnings = append(s.Warnings, fmt.Sprintf("journal ended in a torn line (%d bytes); dropped it", r.torn))
	}
	if err := s.startJournal(r); err != nil {
		return err
	}
	if s.paths.Blocked != "" {
		if err := os.WriteFile(s.paths.Blocked, nil, 0o600); err != nil {
			// Not fatal: blocks and the journal are what matter.
			s.Warnings = append(s.Warnings, fmt.Sprintf("blocked file %s cannot be reset: %v", s.paths.Blocked, err))
		}
	}
	return nil
}

// put and drop change active and keep the per-family count.
// put reports whether b replaced a block in force, and its record.
func (s *Store) put(b *Block) (old rec, again bool) {
	k := keyOf(b.Addr)
	old, was := s.unput(k)
	off := old.off
	if !was {
		off = s.times[k].n
		delete(s.times, k)
	}
	if !k.Is4() {
		s.n6++
	}
	r, x := s.pack(b)
	r.k, r.off = k, off
	if b.Origin == OriginFleet {
		if s.from == nil {
			s.from = map[string]int{}
		}
		// The interned copy: b's may share a journal line's buffer.
		s.from[s.wordsOf(&r, x)[wFrom]]++
		s.fleet++
	}
	s.active.set(k, int32(len(s.recs)))
	s.recs = append(s.recs, r)
	if x != nil {
		s.ext[k] = x
	}
	return old, was
}

func (s *Store) drop(a netip.Addr) { s.dropKey(keyOf(a)) }

// dropKey ends k's block; its offence count stays in times.
func (s *Store) dropKey(k key) {
	if old, ok := s.unput(k); ok && old.off > 0 {
		s.times[k] = offender{old.off, old.expires}
	}
}

// unput removes k's record from active and the counts.
func (s *Store) unput(k key) (rec, bool) {
	i, ok := s.active.get(k)
	if !ok {
		return rec{}, false
	}
	old := s.recs[i]
	if !k.Is4() {
		s.n6--
	}
	if Origin(s.word(k, &old, wOrigin)) == OriginFleet {
		from := s.word(k, &old, wFrom)
		s.fleet--
		if s.from[from]--; s.from[from] <= 0 {
			delete(s.from, from)
		}
	}
	s.active.del(k)
	last := len(s.recs) - 1
	if int(i) != last {
		s.recs[i] = s.recs[last]
		s.active.set(s.recs[i].k, i)
	}
	s.recs = s.recs[:last]
	if cap(s.recs) > 1024 && cap(s.recs) > 4*len(s.recs) {
		// Most blocks ended (a flood's expired): give the room back.
		s.recs = slices.Clip(slices.Clone(s.recs))
	}
	if old.ext {
		delete(s.ext, k)
	}
	return old, true
}

// Fleet counts the active blocks of origin fleet, and those mirrored from
// host (constant time: the decision asks for every fleet block).
func (s *Store) Fleet(host string) (all, from int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fleet, s.from[host]
}

// Count is the number of active blocks by family, in constant time (a
// metrics scrape reads it).
func (s *Store) Count() (v4, v6 int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active.len() - s.n6, s.n6
}

func (s *Store) journalPath() string { return filepath.Join(s.paths.Dir, journalName) }

// loaded is what load found in the journal.
type loaded struct {
	lines int   // complete lines
	bad   int   // complete lines that did not decode (skipped)
	size  int64 // bytes up to the end of the last complete line
	torn  int   // bytes after it: a last line without its newline
}

// load replays the journal. A last line without its newline is torn (the
// daemon writes each line whole, newline included) and is not replayed:
// cut short, it can still decode, as another address or time.
func (s *Store) load(now time.Time) (loaded, error) {
	var r loaded
	f, err := os.Open(s.journalPath())
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("open %s: %w", s.journalPath(), err)
	}
	defer f.Close()
	// Sized once for the lines Prepare counted (an upper bound of the
	// blocks) rather than grown a step at a time: a journal of 1M blocks
	// read in a third less.
	hint := s.scan.lines
	s.active, s.recs = newIndex(hint), make([]rec, 0, hint)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			r.size += int64(i) + 1
			return i + 1, bytes.TrimSuffix(data[:i], []byte{'\r'}), nil
		}
		if atEOF && len(data) > 0 {
			r.torn = len(data)
			return len(data), nil, nil
		}
		return 0, nil, nil
	})
	s.replay(sc, &r)
	// Backwards: dropping one moves the last record, already seen, to its place.
	for i := len(s.recs) - 1; i >= 0; i-- {
		if !s.recs[i].expiresAfter(now) {
			s.dropKey(s.recs[i].k)
		}
	}
	s.fit(hint)
	forget := nanos(now.Add(-RepeatMemory))
	for k, o := range s.times {
		if o.last < forget {
			delete(s.times, k)
		}
	}
	if err := sc.Err(); err != nil {
		// Not a reason to carry on with part of it: a rewrite would make
		// the loss permanent.
		return r, fmt.Errorf("read %s: %w", s.journalPath(), err)
	}
	return r, nil
}

// fit gives back the room made for hint blocks when far fewer are in
// force (a journal of mostly history): maps do not shrink.
func (s *Store) fit(hint int) {
	if n := len(s.recs); hint > 1024 && hint > 2*n {
		s.recs = slices.Clip(slices.Clone(s.recs))
		active := newIndex(n)
		for i := range s.recs {
			active.set(s.recs[i].k, int32(i))
		}
		s.active = active
	}
}

// startJournal rewrites the journal when it is mostly history (or new, or
// empty); a restart with many live blocks then costs one read, not a
// rewrite. A rewrite leaves a torn tail behind; otherwise it is cut off.
// A rewrite that fails (a full disk) leaves the journal as it was, and
// the Store appends to it: a start on a full disk still restores every
// block, and the journal is compacted another time.
func (s *Store) startJournal(r loaded) error {
	if r.lines > 1024 && r.lines > 2*(s.active.len()+len(s.times)) || r.lines == 0 {
		err := s.compact()
		if err == nil || r.lines == 0 || s.broken != nil {
			return err
		}
		s.Warnings = append(s.Warnings, fmt.Sprintf("journal not compacted, appended to as it is: %v", err))
	}
	if r.torn > 0 {
		if err := truncateTail(s.journalPath(), r.size); err != nil {
			return err
		}
	}
	return s.openJournal(r.lines)
}

func (s *Store) openJournal(lines int) error {
	j, err := openFile(s.journalPath(), os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	s.journal, s.lines = j, lines
	return nil
}

// TimesBlocked is how many times addr was blocked before.
func (s *Store) TimesBlocked(a netip.Addr) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int(s.offenderOf(keyOf(a)).n)
}

// offenderOf is k's offence count, in its block in force or in times.
func (s *Store) offenderOf(k key) offender {
	if r, ok := s.lookup(k); ok {
		return offender{r.off, r.expires}
	}
	return s.times[k]
}

func (s *Store) setOffender(k key, o offender) {
	if r, ok := s.lookup(k); ok {
		r.off = o.n
		return
	}
	s.times[k] = o
}

// offender is what is kept of an address once its blocks have expired:
// how often it was blocked, and when the last block ended.
type offender struct {
	n    int32
	last int64 // Unix nanoseconds
}

// Repeat offenders are remembered for RepeatMemory after their last block,
// and at most MaxOffenders of them besides those with a block in force
// (the oldest forgotten first): a spoofed
// flood blocks a new address every time, and must not grow this forever.
const (
	RepeatMemory = 30 * 24 * time.Hour
	MaxOffenders = 100000
)

func (s *Store) remember(a netip.Addr, n int, last time.Time) {
	k := keyOf(a)
	o := s.offenderOf(k)
	s.setOffender(k, offender{max(o.n, int32(min(n, math.MaxInt32))), nanos(last)})
	// Offenders with a block in force are never forgotten, and bounded by
	// the sets' size: the bound is on the others. (Counting them too made
	// every block past MaxOffenders blocks in force scan them all in vain.)
	if len(s.times) > MaxOffenders {
		s.forgetOldest(len(s.times) - MaxOffenders*9/10)
	}
}

// forgetOldest drops the k offenders whose last block is oldest (never one
// with an active block).
func (s *Store) forgetOldest(k int) {
	type aged struct {
		k    key
		last int64
	}
	var all []aged
	for a, o := range s.times {
		if _, act := s.active.get(a); !act {
			all = append(all, aged{a, o.last})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].last < all[j].last })
	for _, x := range all[:min(k, len(all))] {
		delete(s.times, x.k)
	}
}

// Add records a committed block, and writes the history and blocked files.
//
// Add writes the journal but does not fsync it: the block is durable once
// a Sync that follows returns nil (one Sync covers any number of Adds).
// An error means the block did not reach the journal (an ErrNotDurable)
// or a PortSentry file (WithoutJournal keeps these); the Store keeps it
// all the same, and the rewrite that repairs the journal (the next Add,
// Remove, Expire or Sync once retryEvery has passed) writes it.
func (s *Store) Add(b Block) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.put(&b)
	s.rememberBlock(&b)
	err := s.append(entry{Op: "add", Block: &b})
	line := historyLine(b)
	now := time.Now()
	for _, t := range s.texts {
		if s.closed {
			break
		}
		if werr := t.append(line, now); werr != nil {
			err = errors.Join(err, werr)
		}
	}
	return err
}

// Remove forgets an active block (expired or lifted) and returns it. Like
// Add it does not fsync; a journal failure shows in Errors and the next
// Sync.
func (s *Store) Remove(a netip.Addr) (Block, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := keyOf(a)
	r, ok := s.lookup(k)
	if !ok {
		return Block{}, false
	}
	b := s.unpack(k, r)
	s.dropKey(k)
	// A failure is recorded (Errors) and repaired by the next rewrite.
	_ = s.append(entry{Op: "del", Addr: a})
	return b, true
}

// SetHost records name as the resolved name of a's active block (the
// name came after the block was recorded). It reports whether a holds an
// active block whose name changed. Like Add it journals the change (the
// block's record again) and does not fsync: a name is not worth an fsync,
// the next Sync covers it. The history and blocked files are not
// rewritten: their line was written at block time.
func (s *Store) SetHost(a netip.Addr, name string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	nb, ok := s.get(a)
	if !ok || nb.Host == name {
		return false, nil
	}
	nb.Host = name
	s.put(&nb)
	return true, s.append(entry{Op: "add", Block: &nb})
}

// Has reports an active block of a (without copying it).
func (s *Store) Has(a netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.active.get(keyOf(a))
	return ok
}

// Get returns the active block of a.
func (s *Store) Get(a netip.Addr) (Block, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.get(a)
}

func (s *Store) get(a netip.Addr) (Block, bool) {
	k := keyOf(a)
	r, ok := s.lookup(k)
	if !ok {
		return Block{}, false
	}
	return s.unpack(k, r), true
}

// lookup is k's record in force; it moves with the next put or drop.
func (s *Store) lookup(k key) (*rec, bool) {
	if n := len(s.recs); n > 0 && s.recs[n-1].k == k {
		return &s.recs[n-1], true // the one put last (a put, then its offence count)
	}
	i, ok := s.active.get(k)
	if !ok {
		return nil, false
	}
	return &s.recs[i], true
}

// Active returns the blocks that have not expired at now, soonest expiry first.
func (s *Store) Active(now time.Time) []Block {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Block, 0, s.active.len())
	for i := range s.recs {
		if r := &s.recs[i]; r.expiresAfter(now) {
			out = append(out, s.unpack(r.k, r))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Expires.Before(out[j].Expires) })
	return out
}

// Expiries calls fn with the address and expiry of every block in force
// at now, in no order, without making its Block: a restore of a million
// blocks needs only these. fn runs with the Store locked, and must not
// call it.
func (s *Store) Expiries(now time.Time, fn func(a netip.Addr, expires time.Time)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.recs {
		if r := &s.recs[i]; r.expiresAfter(now) {
			fn(r.k.Addr(), fromNanos(r.expires))
		}
	}
}

// Walk calls each with every block in force at now, in no order, a page
// at a time: the Store is locked while a page is copied, not while each
// runs, and the walk holds 17 bytes a block (their addresses, taken at
// the start), not the blocks. A block lifted during the walk is left
// out; one added during it is not listed. Walk stops at the first error
// of each, and returns it.
func (s *Store) Walk(now time.Time, each func(Block) error) error {
	s.mu.Lock()
	keys := make([]key, len(s.recs))
	for i := range s.recs {
		keys[i] = s.recs[i].k
	}
	s.mu.Unlock()
	page := make([]Block, 0, walkPage)
	for len(keys) > 0 {
		n := min(walkPage, len(keys))
		page = page[:0]
		s.mu.Lock()
		for _, k := range keys[:n] {
			if r, ok := s.lookup(k); ok && r.expiresAfter(now) {
				page = append(page, s.unpack(k, r))
			}
		}
		s.mu.Unlock()
		keys = keys[n:]
		for _, b := range page {
			if err := each(b); err != nil {
				return err
			}
		}
	}
	return nil
}

// walkPage is how many blocks Walk copies under the lock at a time.
const walkPage = 1024

// Len is the number of active blocks.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active.len()
}

// Expire removes and returns the blocks expired at now. Like Remove, it
// does not fsync, and a journal failure shows in Errors and the next Sync.
func (s *Store) Expire(now time.Time) []Block {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The ledger calls this every second: also the time to let go of a
	// rotated history or blocked file on a host with nothing to write.
	for _, t := range s.texts {
		t.letGo(now)
	}
	var out []Block
	for i := len(s.recs) - 1; i >= 0; i-- { // as in load
		if r := &s.recs[i]; !r.expiresAfter(now) {
			k := r.k
			out = append(out, s.unpack(k, r))
			s.dropKey(k)
			_ = s.append(entry{Op: "del", Addr: k.Addr()}) // as in Remove
		}
	}
	return out
}

// Close syncs (see Sync) and closes the journal. Later changes are kept in
// memory only.
func (s *Store) Close() error {
	err := s.Sync()
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for _, t := range s.texts {
		t.close()
	}
	if s.journal != nil {
		if cerr := s.journal.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", s.journalPath(), cerr)
		}
		s.journal = nil
	}
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
