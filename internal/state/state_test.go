package state

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func paths(t *testing.T) Paths {
	d := t.TempDir()
	return Paths{Dir: d, History: filepath.Join(d, "portsentry.history"), Blocked: filepath.Join(d, "portsentry.blocked")}
}

var now = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func TestReopenRestoresUnexpiredBlocks(t *testing.T) {
	p := paths(t)
	s, err := Open(p, now)
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::2"), netip.MustParseAddr("10.0.0.3")
	s.Add(Block{Addr: a, Timeout: time.Hour, Expires: now.Add(time.Hour), Proto: "TCP", Port: 79, Times: 1})
	s.Add(Block{Addr: b, Timeout: 2 * time.Hour, Expires: now.Add(2 * time.Hour), Proto: "UDP", Port: 69, Times: 3})
	s.Add(Block{Addr: c, Timeout: time.Minute, Expires: now.Add(time.Minute), Times: 1})
	s.Remove(a)
	s.Close()

	// Ten minutes later: c has expired, a was lifted, b remains.
	s2, err := Open(p, now.Add(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	act := s2.Active(now.Add(10 * time.Minute))
	if len(act) != 1 || act[0].Addr != b || !act[0].Expires.Equal(now.Add(2*time.Hour)) || act[0].Times != 3 {
		t.Fatalf("restored %+v, want only %s expiring at +2h with times 3", act, b)
	}
	if got := s2.TimesBlocked(c); got != 1 {
		t.Errorf("times of an expired block were forgotten: %d", got)
	}
	if data, _ := os.ReadFile(p.Blocked); len(data) != 0 {
		t.Errorf("blocked file not reset for the new run: %q", data)
	}
}

// The history line is PortSentry 1.2's, so existing tooling reads it.
func TestHistoryLineFormat(t *testing.T) {
	p := paths(t)
	s, _ := Open(p, now)
	defer s.Close()
	s.Add(Block{Addr: netip.MustParseAddr("10.16.17.1"), Timeout: time.Hour, Expires: now.Add(time.Hour), Proto: "TCP", Port: 2000, Times: 1})
	data, _ := os.ReadFile(p.History)
	re := regexp.MustCompile(`^\d+ - \d\d/\d\d/\d{4} \d\d:\d\d:\d\d Host: 10\.16\.17\.1/10\.16\.17\.1 Port: 2000 TCP Blocked\n$`)
	if !re.Match(data) {
		t.Errorf("history line %q does not match PortSentry's format", data)
	}
	if !strings.HasPrefix(string(data), "1772600767 - ") {
		t.Errorf("history line %q does not start with the block's epoch", data)
	}
}

// The history file is kept open, yet a rotation (moved away, a new file
// expected) is followed within reopenCheck, and a truncation at once.
func TestHistoryFileRotated(t *testing.T) {
	p := paths(t)
	s, _ := Open(p, now)
	defer s.Close()
	add := func(i int) {
		t.Helper()
		if err := s.Add(Block{Addr: netip.AddrFrom4([4]byte{10, 16, 17, byte(i)}), Timeout: time.Hour, Expires: now.Add(time.Hour), Proto: "TCP", Port: 2000, Times: 1}); err != nil {
			t.Fatal(err)
		}
	}
	lines := func(path string) int {
		data, _ := os.ReadFile(path)
		return strings.Count(string(data), "\n")
	}
	add(1)
	add(2)
	if err := os.Rename(p.History, p.History+".1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(reopenCheck + 100*time.Millisecond)
	add(3)
	if old, cur := lines(p.History+".1"), lines(p.History); old != 2 || cur != 1 {
		t.Fatalf("after the rotation: %d lines in the old file (want 2), %d in the new (want 1)", old, cur)
	}
	// Moved away again with nothing to write: let go of within a second
	// (Expire runs every second), the old file's space freed.
	if err := os.Rename(p.History, p.History+".2"); err != nil {
		t.Fatal(err)
	}
	s.Expire(time.Now().Add(2 * reopenCheck))
	if s.texts[0].f != nil {
		t.Fatal("the moved history file is still open after Expire")
	}
	add(5)
	if data, _ := os.ReadFile(p.History); !strings.Contains(string(data), "10.16.17.5") {
		t.Fatalf("new history file after the second rotation: %q", data)
	}
	if err := os.Truncate(p.History, 0); err != nil {
		t.Fatal(err)
	}
	add(4)
	if data, _ := os.ReadFile(p.History); !strings.Contains(string(data), "10.16.17.4") || strings.Count(string(data), "\n") != 1 || data[0] == 0 {
		t.Fatalf("after truncation: %q", data)
	}
}

// A torn last line (crash mid-write) does not lose the rest.
func TestTornJournalLine(t *testing.T) {
	p := paths(t)
	s, _ := Open(p, now)
	s.Add(Block{Addr: netip.MustParseAddr("10.0.0.9"), Timeout: time.Hour, Expires: now.Add(time.Hour), Times: 1})
	s.Close()
	f, _ := os.OpenFile(filepath.Join(p.Dir, journalName), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("add\t10.0.0.")
	f.Close()
	s2, err := Open(p, now)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Len() != 1 {
		t.Fatalf("after a torn line: %d blocks, want 1", s2.Len())
	}
}

func TestExpire(t *testing.T) {
	s, _ := Open(paths(t), now)
	defer s.Close()
	s.Add(Block{Addr: netip.MustParseAddr("10.0.0.1"), Expires: now.Add(time.Second), Timeout: time.Second})
	s.Add(Block{Addr: netip.MustParseAddr("10.0.0.2"), Expires: now.Add(time.Hour), Timeout: time.Hour})
	if ex := s.Expire(now.Add(2 * time.Second)); len(ex) != 1 || ex[0].Addr.String() != "10.0.0.1" {
		t.Fatalf("expired %+v", ex)
	}
	if s.Len() != 1 {
		t.Fatalf("len %d", s.Len())
	}
}

func TestJournalRoundTrip(t *testing.T) {
	b := &Block{Addr: netip.MustParseAddr("fd00::7"), Expires: now.Add(time.Hour).Truncate(time.Millisecond), Timeout: time.Hour,
		Kind: "TCP SYN scan", Proto: "TCP", Port: 79, Ports: []uint16{79, 1}, First: now.Truncate(time.Millisecond), Last: now.Truncate(time.Millisecond),
		Times: 2, Host: "scanner.example", HostsDeny: "ALL: [fd00::7]\t: DENY \"quoted\"", Origin: OriginManual}
	e, err := decodeEntry(strings.TrimSuffix(encodeEntry(entry{Op: "add", Block: b}), "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(*e.Block) != fmt.Sprint(*b) {
		t.Errorf("round trip:\n got %+v\nwant %+v", *e.Block, *b)
	}
	// A journal line from before origins: detected, or manual by its kind.
	old := strings.Join([]string{"add", "10.0.0.9", "1", "2", "1", "79", "", "0", "0", `"manual"`, `"TCP"`, `""`, `""`}, "\t")
	if e, err := decodeEntry(old); err != nil || e.Block.Origin != OriginManual {
		t.Errorf("13-field line: %v, origin %q, want manual", err, e.Block.Origin)
	}
	for _, bad := range []string{"", "add", "add\tx", "add\t10.0.0.1\t1\t2\t3\t4\t5\t6\t7\t\"a\"\t\"b\"\t\"c\"\t\"d\"\tnowhere", "del\t10.0.0.1\textra", "times\t10.0.0.1\tx", "add\t10.0.0.1\t1\t2\t3\t4\t5\t6\t7\t\"a\"\t\"b\"\t\"c\"\tunquoted"} {
		if _, err := decodeEntry(bad); err == nil {
			t.Errorf("decodeEntry(%q) accepted", bad)
		}
	}
}

func FuzzDecodeEntry(f *testing.F) {
	f.Add(strings.TrimSuffix(encodeEntry(entry{Op: "add", Block: &Block{Addr: netip.MustParseAddr("10.0.0.1"), Expires: now, Timeout: time.Hour, Ports: []uint16{1, 2}}}), "\n"))
	f.Add(strings.TrimSuffix(encodeEntry(entry{Op: "add", Block: &Block{Addr: netip.MustParseAddr("fd00::7"), Expires: now, Timeout: time.Hour,
		Origin: OriginFleet, Weak: true, Evidence: EvidenceForgeable, From: "h2", Tool: "masscan"}}), "\n"))
	f.Add("del\t10.0.0.1")
	f.Add("times\tfd00::1\t3\t1772600767000")
	f.Add("add\t\t\t")
	f.Add("add\t10.0.0.2\t99999999999999\t9223372036854\t1\t1\t\t-99999999999999\t0\t\"\"\t\"\"\t\"\"\t\"\"")
	f.Fuzz(func(t *testing.T, line string) {
		e, err := decodeEntry(line)
		if err != nil {
			return
		}
		// What decodes re-encodes to something that decodes to the same.
		again, err := decodeEntry(strings.TrimSuffix(encodeEntry(e), "\n"))
		if err != nil {
			t.Fatalf("re-encoded %q does not decode: %v", encodeEntry(e), err)
		}
		if fmt.Sprint(again) != fmt.Sprint(e) && e.Block == nil {
			t.Fatalf("round trip changed %+v to %+v", e, again)
		}
		if e.Block != nil {
			packRoundTrip(t, *e.Block)
		}
	})
}

// packRoundTrip: the Store's compact record of b gives b back.
func packRoundTrip(t *testing.T, b Block) {
	t.Helper()
	s := &Store{words: words{list: []string{""}, idx: map[string]uint16{}}, ext: map[key]*ext{}}
	k := keyOf(b.Addr)
	r, x := s.pack(&b)
	if x != nil {
		s.ext[k] = x
	}
	got := s.unpack(k, &r)
	for _, p := range []struct{ got, want *time.Time }{{&got.Expires, &b.Expires}, {&got.First, &b.First}, {&got.Last, &b.Last}} {
		if p.want.After(maxNanos) && p.got.Equal(maxNanos) || p.want.Before(minNanos) && p.got.Equal(minNanos) {
			*p.got = *p.want // held as the nearest it can
		}
		if !p.got.Equal(*p.want) && p.got.Sub(*p.want) != time.Nanosecond {
			t.Fatalf("record of %+v gives %+v", b, got)
		}
		*p.got = *p.want
	}
	if len(b.Ports) == 0 {
		b.Ports = nil
	}
	if b.Addr.Zone() != "" || int(int32(b.Times)) != b.Times {
		return // not in records: blocks have no zone, counts fit 32 bits
	}
	if fmt.Sprint(got) != fmt.Sprint(b) {
		t.Fatalf("record of\n%+v gives\n%+v", b, got)
	}
}

// A spoofed flood blocks a new address every time: what is remembered of
// past offenders is bounded in number and in age.
func TestOffendersAreBounded(t *testing.T) {
	p := paths(t)
	s, _ := Open(Paths{Dir: p.Dir}, now)
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }
	for i := 0; i < MaxOffenders+5000; i++ {
		s.remember(addr(i), 1, now.Add(time.Duration(i)*time.Second))
	}
	if n := len(s.times); n > MaxOffenders {
		t.Fatalf("%d offenders kept, cap %d", n, MaxOffenders)
	}
	if s.TimesBlocked(addr(0)) != 0 {
		t.Error("the oldest offender was kept")
	}
	if s.TimesBlocked(addr(MaxOffenders+4999)) != 1 {
		t.Error("the newest offender was forgotten")
	}
	s.Close()

	// Persisted offenders are forgotten RepeatMemory after their last block.
	p2 := paths(t)
	s, _ = Open(Paths{Dir: p2.Dir}, now)
	x := netip.MustParseAddr("10.9.9.9")
	s.Add(Block{Addr: x, Timeout: time.Hour, Expires: now.Add(time.Hour), Times: 3})
	s.Remove(x)
	s.Close()
	soon, _ := Open(Paths{Dir: p2.Dir}, now.Add(2*time.Hour))
	if soon.TimesBlocked(x) != 3 {
		t.Errorf("offender forgotten after 2h: %d", soon.TimesBlocked(x))
	}
	soon.Close()
	late, _ := Open(Paths{Dir: p2.Dir}, now.Add(RepeatMemory+48*time.Hour))
	defer late.Close()
	if late.TimesBlocked(x) != 0 {
		t.Errorf("offender remembered after %s", RepeatMemory)
	}
}

// Count follows adds, re-adds, removals, expiry and a reload, by family.
func TestCountByFamily(t *testing.T) {
	p := paths(t)
	s, _ := Open(Paths{Dir: p.Dir}, now)
	v4, v6 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")
	s.Add(Block{Addr: v4, Timeout: time.Hour, Expires: now.Add(time.Hour)})
	s.Add(Block{Addr: v6, Timeout: time.Hour, Expires: now.Add(time.Hour)})
	s.Add(Block{Addr: v6, Timeout: time.Hour, Expires: now.Add(2 * time.Hour)})
	s.Add(Block{Addr: netip.MustParseAddr("fd00::2"), Timeout: time.Second, Expires: now.Add(time.Second)})
	if a, b := s.Count(); a != 1 || b != 2 {
		t.Errorf("count %d/%d, want 1/2", a, b)
	}
	s.Expire(now.Add(2 * time.Second))
	s.Remove(v4)
	if a, b := s.Count(); a != 0 || b != 1 {
		t.Errorf("count %d/%d after expiry and removal, want 0/1", a, b)
	}
	s.Close()
	s, _ = Open(Paths{Dir: p.Dir}, now)
	defer s.Close()
	if a, b := s.Count(); a != 0 || b != 1 {
		t.Errorf("count %d/%d after reload, want 0/1", a, b)
	}
}

// A name found after the block was recorded (resolve_host) is journaled:
// it survives a restart, and the history line keeps what it said at block
// time. A name for an address not blocked changes nothing.
func TestSetHostIsJournaled(t *testing.T) {
	p := paths(t)
	s, err := Open(p, now)
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr("10.0.0.1")
	s.Add(Block{Addr: a, Timeout: time.Hour, Expires: now.Add(time.Hour), Proto: "TCP", Port: 79, Times: 2})
	if ok, err := s.SetHost(a, "scanner.example.test"); !ok || err != nil {
		t.Fatalf("SetHost = %v, %v", ok, err)
	}
	if ok, _ := s.SetHost(a, "scanner.example.test"); ok {
		t.Error("SetHost of the same name changed something")
	}
	if ok, _ := s.SetHost(netip.MustParseAddr("10.0.0.9"), "other.example.test"); ok {
		t.Error("SetHost of an address not blocked changed something")
	}
	if b, _ := s.Get(a); b.Host != "scanner.example.test" || b.Times != 2 || b.Port != 79 {
		t.Errorf("record after SetHost: %+v", b)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(p, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if b, ok := s2.Get(a); !ok || b.Host != "scanner.example.test" || b.Times != 2 || !b.Expires.Equal(now.Add(time.Hour)) {
		t.Errorf("after a restart: %+v (held %v)", b, ok)
	}
	if s2.TimesBlocked(a) != 2 {
		t.Errorf("TimesBlocked = %d, want 2 (a name is not another block)", s2.TimesBlocked(a))
	}
	hist, _ := os.ReadFile(p.History)
	if n := strings.Count(string(hist), "\n"); n != 1 || !strings.Contains(string(hist), "Host: 10.0.0.1/10.0.0.1 Port: 79") {
		t.Errorf("history file: %q", hist)
	}
}

// What a block rests on and the fleet host it mirrors survive a restart;
// each fleet host's blocks are counted as they come and go; a block on
// forgeable evidence is never an offence.
func TestEvidenceAndFleetShares(t *testing.T) {
	p := paths(t)
	s, err := Open(Paths{Dir: p.Dir}, now)
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := netip.MustParseAddr("10.201.0.2"), netip.MustParseAddr("10.201.0.3"), netip.MustParseAddr("fd00:201::4")
	for _, blk := range []Block{
		{Addr: a, Expires: now.Add(time.Hour), Timeout: time.Hour, Times: 1, Origin: OriginFleet, Evidence: "handshake", From: "h2"},
		{Addr: b, Expires: now.Add(time.Hour), Timeout: time.Hour, Times: 1, Origin: OriginFleet, Evidence: EvidenceForgeable, From: "h2", Weak: true},
		{Addr: c, Expires: now.Add(time.Hour), Timeout: time.Hour, Times: 3, Origin: OriginDetect, Evidence: EvidenceForgeable},
	} {
		if err := s.Add(blk); err != nil {
			t.Fatal(err)
		}
	}
	if all, from := s.Fleet("h2"); all != 2 || from != 2 {
		t.Errorf("fleet counts %d, %d; want 2, 2", all, from)
	}
	if n := s.TimesBlocked(c); n != 0 {
		t.Errorf("a forgeable block counted %d offences", n)
	}
	s.Remove(b)
	if all, from := s.Fleet("h2"); all != 1 || from != 1 {
		t.Errorf("after a lift: %d, %d; want 1, 1", all, from)
	}
	s.Close()
	s, err = Open(Paths{Dir: p.Dir}, now)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, ok := s.Get(a)
	if !ok || got.Evidence != "handshake" || got.From != "h2" || got.Origin != OriginFleet {
		t.Errorf("after a restart: %+v", got)
	}
	if all, from := s.Fleet("h2"); all != 1 || from != 1 {
		t.Errorf("after a restart: %d, %d; want 1, 1", all, from)
	}
}

// The tool a block's probe came from is journaled; journals written before
// it existed (17 fields and fewer) load, their blocks with no tool.
func TestToolIsJournaled(t *testing.T) {
	p := paths(t)
	a, b := netip.MustParseAddr("10.201.0.2"), netip.MustParseAddr("10.201.0.3")
	exp := strconv.FormatInt(now.Add(time.Hour).UnixMilli(), 10)
	older := "add\t" + b.String() + "\t" + exp + "\t3600000\t1\t80\t80,81\t0\t0\t\"TCP SYN scan\"\t\"TCP\"\t\"\"\t\"\"\tdetect\t\tforgeable\t\n" +
		"add\t10.201.0.4\t" + exp + "\t3600000\t1\t80\t\t0\t0\t\"TCP SYN scan\"\t\"TCP\"\t\"\"\t\"\"\n"
	if err := os.WriteFile(filepath.Join(p.Dir, journalName), []byte(older), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(p, now)
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 2 {
		t.Fatalf("an older journal: %d blocks, want 2", s.Len())
	}
	if got, _ := s.Get(b); got.Tool != "" || got.Evidence != "forgeable" {
		t.Errorf("an older line: %+v", got)
	}
	if err := s.Add(Block{Addr: a, Expires: now.Add(time.Hour), Timeout: time.Hour, Times: 1, Kind: "TCP SYN scan", Tool: "masscan"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(p, now)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, _ := s.Get(a); got.Tool != "masscan" {
		t.Errorf("after a restart: tool %q, want masscan", got.Tool)
	}
	line := strings.Replace(encodeEntry(entry{Op: "add", Block: &Block{Addr: a, Tool: "masscan"}}), "masscan", "zmap-9", 1)
	if e, err := decodeEntry(strings.TrimSuffix(line, "\n")); err != nil || e.Block.Tool != "unknown" {
		t.Errorf("a tool this version does not know: %v, %+v", err, e.Block)
	}
}

// The compact record gives back every field of the Block it was made of,
// an IPv4 address and its IPv4-mapped IPv6 twin are two blocks, and Walk
// and Expiries see every block in force once, a page at a time.
func TestRecordRoundTripAndWalk(t *testing.T) {
	s, err := Open(Paths{Dir: t.TempDir()}, now)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	full := Block{Addr: netip.MustParseAddr("10.201.0.1"), Expires: now.Add(time.Hour), Timeout: time.Hour, Kind: "TCP SYN scan", Proto: "TCP",
		Port: 22, Ports: []uint16{22, 23, 24, 25, 26, 27}, First: now.Add(-time.Minute), Last: now, Times: 3, Host: "a.example", HostsDeny: "ALL: 10.201.0.1",
		Origin: OriginFleet, Weak: true, Evidence: "handshake", From: "host-1", Tool: "nmap-syn"}
	mapped := full
	mapped.Addr, mapped.Ports, mapped.Host, mapped.HostsDeny, mapped.Origin, mapped.From = netip.MustParseAddr("::ffff:10.201.0.1"), []uint16{22}, "", "", OriginDetect, ""
	for _, b := range []Block{full, mapped} {
		if err := s.Add(b); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []Block{full, mapped} {
		got, ok := s.Get(want.Addr)
		if !ok || !got.Expires.Equal(want.Expires) || !got.First.Equal(want.First) || !got.Last.Equal(want.Last) {
			t.Fatalf("Get(%s) = %+v, %v", want.Addr, got, ok)
		}
		got.Expires, got.First, got.Last = want.Expires, want.First, want.Last
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("Get(%s):\n got %+v\nwant %+v", want.Addr, got, want)
		}
	}
	if v4, v6 := s.Count(); v4 != 1 || v6 != 1 {
		t.Errorf("Count = %d, %d; want 1, 1", v4, v6)
	}
	for i := range 3*walkPage + 5 {
		s.Add(Block{Addr: netip.AddrFrom4([4]byte{10, 201, byte(1 + i>>8), byte(i)}), Expires: now.Add(time.Duration(i+1) * time.Second), Timeout: time.Hour})
	}
	// Lifted during the walk, in a page not yet copied: left out, and no
	// other block is missed (the last record moves to its place).
	last := 2*walkPage + 10
	lift := netip.AddrFrom4([4]byte{10, 201, byte(1 + last>>8), byte(last)})
	seen := map[netip.Addr]int{}
	err = s.Walk(now, func(b Block) error {
		if seen[b.Addr]++; len(seen) == 1 {
			s.Remove(lift)
		}
		return nil
	})
	if err != nil || len(seen) != 3*walkPage+5+2-1 {
		t.Errorf("Walk saw %d blocks (%v), want %d", len(seen), err, 3*walkPage+5+2-1)
	}
	n := 0
	s.Expiries(now.Add(time.Second), func(netip.Addr, time.Time) { n++ })
	if n != 3*walkPage+5+2-1-1 { // the first of the loop ends at now+1s
		t.Errorf("Expiries at now+1s saw %d", n)
	}
}
