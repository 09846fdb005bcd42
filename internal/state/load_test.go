package state

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Load tells of each block as it reads it, but never of one a later del
// line lifts, and once per address; the rest comes back as Unsettled.
func TestLoadTellsOnlyWhatNoLaterLineLifts(t *testing.T) {
	p := paths(t)
	add := func(a string, left time.Duration) string {
		return encodeEntry(entry{Op: "add", Block: &Block{Addr: netip.MustParseAddr(a), Expires: now.Add(left), Timeout: time.Hour, Times: 1}})
	}
	journal := strings.Join([]string{
		add("10.0.0.1", time.Hour),
		add("10.0.0.2", time.Hour), // lifted below
		add("10.0.0.3", time.Hour), // read again below
		add("10.0.0.4", -time.Minute),
		add("10.0.0.5", time.Hour), // lifted and blocked again below
		add("10.0.0.6", time.Millisecond),
		add("10.0.0.7", -time.Minute), // read again below, the first not told of
		add("fd00::1", time.Hour),
		"del\t10.0.0.2\n",
		add("10.0.0.3", 2*time.Hour),
		"del\t10.0.0.5\n",
		add("10.0.0.5", time.Hour),
		add("10.0.0.7", time.Hour),
		encodeEntry(entry{Op: "times", Addr: netip.MustParseAddr("10.0.0.9"), Times: 3, Last: now}),
	}, "")
	os.WriteFile(filepath.Join(p.Dir, journalName), []byte(journal), 0o600)
	s, err := Prepare(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Lines() != 14 || s.Len() != 0 {
		t.Errorf("Prepare: %d lines, %d blocks; want 14 and none yet", s.Lines(), s.Len())
	}
	var told []string
	u, err := s.Load(now, now.Add(time.Second), func(a netip.Addr, exp time.Time) {
		told = append(told, fmt.Sprintf("%s %s", a, exp.Sub(now)))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if want := []string{"10.0.0.1 1h0m0s", "10.0.0.3 1h0m0s", "fd00::1 1h0m0s"}; !slices.Equal(told, want) {
		t.Errorf("told of %q, want %q", told, want)
	}
	held, again := fmt.Sprint(sorted(u.Held)), fmt.Sprint(sorted(u.Again))
	if held != "[10.0.0.2 10.0.0.5]" || again != "[10.0.0.3 10.0.0.7]" || u.Told != 1 {
		t.Errorf("unsettled: held %s, again %s (%d told); want [10.0.0.2 10.0.0.5], [10.0.0.3 10.0.0.7] (1)", held, again, u.Told)
	}
	if s.Len() != 6 || s.TimesBlocked(netip.MustParseAddr("10.0.0.9")) != 3 {
		t.Errorf("after Load: %d blocks in force, want 6, and the times line read (the record is as Open makes it)", s.Len())
	}
	if b, ok := s.Get(netip.MustParseAddr("10.0.0.3")); !ok || !b.Expires.Equal(now.Add(2*time.Hour).Truncate(time.Millisecond)) {
		t.Errorf("10.0.0.3: %v %v, want its last line's expiry", b.Expires, ok)
	}
}

func sorted(as []netip.Addr) []netip.Addr {
	slices.SortFunc(as, netip.Addr.Compare)
	return as
}

// The scan finds the del lines wherever its buffer splits them, and at
// the journal's start; a torn last line is not a line.
func TestScanJournalFindsEveryDel(t *testing.T) {
	p := paths(t)
	var sb strings.Builder
	sb.WriteString("del\t10.0.0.1\n")
	want := map[key]struct{}{keyOf(netip.MustParseAddr("10.0.0.1")): {}}
	filler := encodeEntry(entry{Op: "add", Block: &Block{Addr: netip.MustParseAddr("10.1.0.1"), Expires: now, Timeout: time.Hour}})
	for i := range 40000 { // ~3 MiB: the scan's 1 MiB reads split lines
		sb.WriteString(filler)
		if i%997 == 0 {
			a := netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)})
			sb.WriteString("del\t" + a.String() + "\r\n")
			want[keyOf(a)] = struct{}{}
		}
	}
	sb.WriteString("del\t10.9.9.9") // torn
	os.WriteFile(filepath.Join(p.Dir, journalName), []byte(sb.String()), 0o600)
	sc, err := scanJournal(filepath.Join(p.Dir, journalName))
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(sb.String(), "\n"); sc.lines != lines {
		t.Errorf("lines %d, want %d", sc.lines, lines)
	}
	for k := range want {
		if _, ok := sc.held[k]; !ok {
			t.Errorf("del of %s not found", k.Addr())
		}
	}
	if len(sc.held) != len(want) {
		t.Errorf("%d addresses held, want %d", len(sc.held), len(want))
	}
}

// FuzzScanLines: every del line that decodes has its address held, and
// the lines are counted.
func FuzzScanLines(f *testing.F) {
	f.Add("del\t10.0.0.1\nadd\t10.0.0.2\t1\t1\t1\t1\t\t0\t0\t\"\"\t\"\"\t\"\"\t\"\"\ndel\tfd00::1\r\n")
	f.Add("\ndel\t\ndel\tx\ndel\t10.0.0.1\t\n")
	f.Fuzz(func(t *testing.T, text string) {
		if i := strings.LastIndexByte(text, '\n'); i >= 0 {
			text = text[:i+1]
		} else {
			text = ""
		}
		sc := scanned{held: map[key]struct{}{}}
		sc.scanLines([]byte(text))
		if sc.lines != strings.Count(text, "\n") {
			t.Fatalf("lines %d, want %d", sc.lines, strings.Count(text, "\n"))
		}
		for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
			e, err := decodeEntry(strings.TrimSuffix(line, "\r"))
			if err != nil || e.Op != "del" {
				continue
			}
			if _, ok := sc.held[keyOf(e.Addr)]; !ok {
				t.Fatalf("del line %q: %s not held", line, e.Addr)
			}
		}
	})
}
