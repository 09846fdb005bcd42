package state

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"time"
)

// A restore after a reboot puts every block of the journal back into the
// kernel. Load tells of the blocks as it reads them, so that the kernel's
// insert runs while the rest of the journal is read (a journal of 1M
// blocks reads in ~0.6 s, their insert takes ~1 s), instead of after it.
// A block told of must be one the journal's later lines leave in force:
// an element put in for a block that a later line lifts would outlive a
// start that failed or crashed before the correction, and a block lifted
// once must not come back. So Prepare first scans the journal for its del
// lines (cheap: a search for "\ndel\t"), and Load holds back every address
// they name; what it tells of can then only be added again later (its
// expiry changes), never lifted. What it held back or told of twice it
// returns as Unsettled, for the caller to settle from the record in force.

// scanned is what Prepare's scan of the journal found.
type scanned struct {
	lines int              // complete lines
	held  map[key]struct{} // addresses a del line names
}

// Unsettled are the addresses a Load's live calls may not match: those
// it held back (a del line names them: Load never told of them) and those
// it read again (another expiry; Told of them it had told of before).
type Unsettled struct {
	Held, Again []netip.Addr
	Told        int
}

// follower is Load's state while it tells of the blocks it reads.
type follower struct {
	from int64 // Unix nanoseconds
	live func(a netip.Addr, expires time.Time)
	held map[key]struct{}
	// again: the addresses read again, and whether live was told of
	// their first block.
	again map[key]bool
}

// Load reads the journal that Prepare scanned (dropping the blocks
// expired at now), compacts it, and truncates the blocked file for this
// run. live, when not nil, is called with every block read that ends at
// from or later, unless a del line of the journal names its address, and
// once per address: see Unsettled for the rest. live runs on Load's
// goroutine with the Store locked, and must not call it.
func (s *Store) Load(now, from time.Time, live func(a netip.Addr, expires time.Time)) (Unsettled, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var u Unsettled
	if live != nil {
		s.follow = &follower{from: nanos(from), live: live, held: s.scan.held, again: map[key]bool{}}
		defer func() { s.follow = nil }()
	}
	r, err := s.load(now)
	if err != nil {
		return u, err
	}
	if f := s.follow; f != nil {
		for k := range f.held {
			u.Held = append(u.Held, k.Addr())
		}
		for k, told := range f.again {
			u.Again = append(u.Again, k.Addr())
			if told {
				u.Told++
			}
		}
	}
	s.scan.held = nil
	return u, s.finishLoad(r)
}

// told tells Load's follower of a block just read, if it may; again: it
// replaced a block in force, which ended at before.
func (f *follower) told(b *Block, before int64, again bool) {
	k := keyOf(b.Addr)
	if _, held := f.held[k]; held {
		return
	}
	if again {
		if _, seen := f.again[k]; !seen {
			// Its first: the one before was told of if it ended late enough.
			f.again[k] = before >= f.from
		}
		return
	}
	if nanos(b.Expires) >= f.from {
		f.live(b.Addr, b.Expires)
	}
}

// scanJournal counts the lines of the journal at path and collects the
// addresses of its del lines. A missing journal has none.
func scanJournal(path string) (scanned, error) {
	sc := scanned{held: map[key]struct{}{}}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return sc, nil
	}
	if err != nil {
		return sc, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	carry := 0 // the start of a line, moved to buf's start
	for {
		k, err := f.Read(buf[carry:])
		data := buf[:carry+k]
		end := bytes.LastIndexByte(data, '\n') + 1
		sc.scanLines(data[:end])
		carry = copy(buf, data[end:])
		if carry == len(buf) {
			carry = 0 // a line longer than any the journal holds: Load fails on it
		}
		if errors.Is(err, io.EOF) {
			return sc, nil
		}
		if err != nil {
			return sc, fmt.Errorf("read %s: %w", path, err)
		}
	}
}

// scanLines counts whole lines (data starts a line and ends one) and
// collects the addresses of the del lines among them.
func (sc *scanned) scanLines(data []byte) {
	sc.lines += bytes.Count(data, []byte{'\n'})
	del := []byte("\ndel\t")
	i := 0
	if !bytes.HasPrefix(data, del[1:]) {
		i = bytes.Index(data, del)
	}
	for i >= 0 && i < len(data) {
		if data[i] == '\n' {
			i++
		}
		rest := data[i+len(del)-1:]
		end := bytes.IndexAny(rest, "\t\r\n")
		if end < 0 {
			end = len(rest)
		}
		// A malformed address is skipped here as Load skips its line.
		if a, err := netip.ParseAddr(string(rest[:end])); err == nil {
			sc.held[keyOf(a)] = struct{}{}
		}
		next := bytes.Index(rest, del)
		if next < 0 {
			return
		}
		i += len(del) - 1 + next
	}
}
