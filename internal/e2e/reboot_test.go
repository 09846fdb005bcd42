package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// A reboot's restore puts the journal's blocks into the kernel while it
// reads the journal: only what the journal's later lines leave in force
// may go in. Here a journal lifts a block near its end (after its add
// went by in an earlier part), shortens another, lets one run out, lifts
// and adds one again; 25000 other blocks in between. After the start the
// sets hold exactly what is in force, each with the time the journal's
// last line gives it.
func TestRebootRestoresOnlyWhatTheJournalLeavesInForce(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t, "psR")
	f := writeConfig(t, "block: {timeout: 1h}\n")
	stateDir := filepath.Join(filepath.Dir(f), "state")
	os.MkdirAll(stateDir, 0o700)
	now := time.Now()
	add := func(a string, left time.Duration) string {
		return fmt.Sprintf("add\t%s\t%d\t3600000\t1\t1\t\t0\t0\t\"TCP SYN scan\"\t\"TCP\"\t\"\"\t\"\"\n", a, now.Add(left).UnixMilli())
	}
	var j strings.Builder
	j.WriteString(add("10.201.1.1", 2*time.Hour))  // in force
	j.WriteString(add("10.201.1.2", 2*time.Hour))  // lifted at the end
	j.WriteString(add("10.201.1.3", 2*time.Hour))  // shortened at the end
	j.WriteString(add("10.201.1.4", -time.Minute)) // ran out
	j.WriteString(add("10.201.1.5", 2*time.Hour))  // its last line ran out
	j.WriteString(add("10.201.1.6", 2*time.Hour))  // lifted, then blocked again
	j.WriteString(add("fd00:201::66", 2*time.Hour))
	for i := range 25000 {
		j.WriteString(add(fmt.Sprintf("10.201.%d.%d", 100+i/256, i%256), 2*time.Hour))
	}
	j.WriteString("del\t10.201.1.2\n")
	j.WriteString(add("10.201.1.3", 30*time.Minute))
	j.WriteString(add("10.201.1.5", -time.Second))
	j.WriteString("del\t10.201.1.6\n")
	j.WriteString(add("10.201.1.6", time.Hour))
	os.WriteFile(filepath.Join(stateDir, "blocks.journal"), []byte(j.String()), 0o600)

	d := &daemon{t: t, ns: ns, config: f}
	t.Cleanup(d.stop)
	d.start()
	d.waitLog("adminalert: Restored 25004 blocks from", 5*time.Second)
	set, set6 := listSet(t, ns, "blocked"), listSet(t, ns, "blocked6")
	for a, want := range map[string]time.Duration{"10.201.1.1": 2 * time.Hour, "10.201.1.3": 30 * time.Minute, "10.201.1.6": time.Hour,
		"10.201.100.0": 2 * time.Hour, "10.201.197.167": 2 * time.Hour} {
		left := remaining(t, set, a)
		if left > want || left < want-time.Minute {
			t.Errorf("%s restored with %s left, want just under %s", a, left, want)
		}
	}
	if left := remaining(t, set6, "fd00:201::66"); left > 2*time.Hour || left < 2*time.Hour-time.Minute {
		t.Errorf("fd00:201::66 restored with %s left, want just under 2h", left)
	}
	assertNotBlocked(t, ns, "10.201.1.2", "10.201.1.4", "10.201.1.5")
	if n := strings.Count(set, "expires"); n != 25003 {
		t.Errorf("blocked holds %d elements, want 25003", n)
	}
}

// remaining is the time left to a's element in the listing of a set.
func remaining(t *testing.T, set, a string) time.Duration {
	t.Helper()
	el := netnstest.ElementLine(set, a)
	m := expiresRe.FindStringSubmatch(el)
	if m == nil {
		t.Fatalf("%s not in the set with a timeout: %q", a, el)
	}
	left, err := time.ParseDuration(m[2])
	if err != nil {
		t.Fatalf("%s: %v", el, err)
	}
	return left
}

// A start killed while its restore is under way (a crash, a power cut):
// the elements it put in are blocks the journal holds in force, never one
// its later lines lift, the journal is as it was, and the next start
// restores every block in force.
func TestRestoreKilledHalfwayLiftsNothingBack(t *testing.T) {
	netnstest.Require(t)
	const n = 300000
	ns := netnstest.New(t, "psK")
	f := writeConfig(t, "block: {set_size: 400000}\n")
	stateDir := filepath.Join(filepath.Dir(f), "state")
	os.MkdirAll(stateDir, 0o700)
	journal := filepath.Join(stateDir, "blocks.journal")
	writeMillionJournal(t, journal, n)
	lifted := []netip.Addr{millionAddr(0), millionAddr(n / 2), millionAddr(n - 1)}
	jf, err := os.OpenFile(journal, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range lifted {
		fmt.Fprintf(jf, "del\t%s\n", a)
	}
	jf.Close()
	before, _ := os.ReadFile(journal)

	d := &daemon{t: t, ns: ns, config: f, out: &netnstest.Output{}}
	t.Cleanup(d.stop)
	d.cmd = ns.Command(context.Background(), daemonBinary(t), "run", "--config", f)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	q := newElementQuery(t, ns)
	defer q.c.Close()
	// Killed once the first part is in.
	for deadline := time.Now().Add(10 * time.Second); q.get(millionAddr(1)) != nil; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no element within 10 s; daemon output:\n%s", d.out)
		}
	}
	d.cmd.Process.Kill()
	d.cmd.Wait()
	if strings.Contains(d.out.String(), "Restored") {
		t.Logf("the restore ended before the kill: only what follows is checked")
	}
	for _, a := range lifted {
		if q.get(a) == nil {
			t.Errorf("%s, lifted by the journal's last lines, is in the set after a restore killed halfway", a)
		}
	}
	if after, _ := os.ReadFile(journal); string(after) != string(before) {
		t.Errorf("the journal changed (%d -> %d bytes) in a restore killed halfway", len(before), len(after))
	}

	d.cmd = nil
	d.start()
	d.waitLog(fmt.Sprintf("adminalert: Restored %d blocks from", n-len(lifted)), 10*time.Second)
	for _, a := range lifted {
		if q.get(a) == nil {
			t.Errorf("%s, lifted by the journal's last lines, is in the set", a)
		}
	}
	for i := 1; i < n-1; i += n / 500 {
		if a := millionAddr(i); a != lifted[1] && q.get(a) != nil {
			t.Errorf("%s is not in the set after the second start", a)
		}
	}
}
