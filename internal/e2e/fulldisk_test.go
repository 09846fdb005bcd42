package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/control"
	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
	"github.com/portsentry-nft/portsentry-nft/internal/state/statetest"
)

const notDurable = "warning: in force now, but not on disk"

// A full disk (issue 22, F1): the state directory is a small tmpfs, and
// it fills. A block is then not acknowledged: the CLI exits 1 with a
// warning, the element is in force all the same; so for an unblock; and
// status counts the journal's errors. The space returns and the daemon
// rewrites its journal by itself, with no other block to make it; then
// the host reboots (the daemon killed, nothing closed; the table deleted;
// the daemon started again) and every block that was in force comes
// back, the acknowledged ones and those the CLI warned about, and the
// unblocked one does not.
func TestFullDiskBlocksSurviveAReboot(t *testing.T) {
	netnstest.Require(t)
	p := netnstest.NewPair(t)
	d := &daemon{t: t, ns: p.A, config: writeConfig(t, "block: {timeout: 1h}\n")}
	disk := statetest.NewDisk(t, filepath.Join(filepath.Dir(d.config), "state"), 256<<10)
	t.Cleanup(d.stop)
	d.start()

	want := map[string]bool{"10.201.5.1": true}
	if out, err := d.cli("block", "10.201.5.1"); err != nil || out != "blocked 10.201.5.1\n" {
		t.Fatalf("block with room on the disk: %v %q", err, out)
	}
	disk.Fill()
	list := filepath.Join(filepath.Dir(d.config), "list")
	var many []string
	for i := range 100 { // more than the page the journal's tail is on
		many = append(many, fmt.Sprintf("10.201.6.%d", i))
		want[many[i]] = true
	}
	os.WriteFile(list, []byte(strings.Join(many, "\n")), 0o600)
	notAcknowledged(t, d, "blocked 100 addresses", "block", "--file", list)
	notAcknowledged(t, d, "blocked 10.201.5.2", "block", "10.201.5.2")
	notAcknowledged(t, d, "unblocked 10.201.6.7", "unblock", "10.201.6.7")
	want["10.201.5.2"], want["10.201.6.7"] = true, false
	inSets(t, p.A, "while the disk is full", want)
	if st := status(t, d); st.Counters["journal_errors"] == 0 || st.Counters["journal_durable"] != 0 {
		t.Errorf("status on a full disk: journal_errors %d, journal_durable %d; want some, and 0",
			st.Counters["journal_errors"], st.Counters["journal_durable"])
	}

	disk.Free()
	rewritten(t, d, 5*time.Second)
	for _, line := range []string{"the journal of blocks is not on disk", "to PortSentry's history or blocked file"} {
		if n := strings.Count(d.out.String(), line); n != 1 {
			t.Errorf("%q logged %d times, want once", line, n)
		}
	}

	// A reboot, with no other block since the space returned: the daemon
	// dies where it stands, the table goes.
	d.cmd.Process.Kill()
	<-d.done
	d.cmd = nil
	p.A.MustRun("nft", "delete", "table", "inet", "portsentry")
	d.start()
	inSets(t, p.A, "after the reboot", want)
	if out, err := d.cli("block", "10.201.5.3"); err != nil || out != "blocked 10.201.5.3\n" {
		t.Errorf("block after the reboot: %v %q", err, out)
	}
}

// notAcknowledged runs a block or unblock that must be carried out and
// say it is not on disk: exit 1, what it did on stdout, the warning.
func notAcknowledged(t *testing.T, d *daemon, did string, args ...string) {
	t.Helper()
	out, err := d.cli(args...)
	if err == nil || !strings.Contains(out, did+"\n") || !strings.Contains(out, "portsentry-nft "+args[0]+": "+notDurable) {
		t.Errorf("%s on a full disk: %v, output %q; want exit 1, %q and the warning that it is not on disk", strings.Join(args, " "), err, out, did)
	}
}

// rewritten waits until the daemon says its journal is on disk again, and
// status agrees.
func rewritten(t *testing.T, d *daemon, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); !strings.Contains(d.out.String(), "The journal of blocks is on disk again"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("the journal was not rewritten within %s of the space returning; daemon output:\n%s", within, d.out)
			return
		}
	}
	if st := status(t, d); st.Counters["journal_durable"] != 1 {
		t.Errorf("status after the rewrite: journal_durable %d, want 1", st.Counters["journal_durable"])
	}
}

func status(t *testing.T, d *daemon) control.Status {
	t.Helper()
	out, err := d.cli("status", "--json")
	var st control.Status
	if err == nil {
		err = json.Unmarshal([]byte(out), &st)
	}
	if err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

// inSets checks that the addresses marked true are in the blocked set, and
// those marked false are not.
func inSets(t *testing.T, ns *netnstest.NS, when string, want map[string]bool) {
	t.Helper()
	set := listSet(t, ns, "blocked")
	var lack, extra []string
	held := 0
	for a, in := range want {
		switch got := netnstest.ElementLine(set, a) != ""; {
		case in && !got:
			lack = append(lack, a)
		case !in && got:
			extra = append(extra, a)
		case in:
			held++
		}
	}
	slices.Sort(lack)
	slices.Sort(extra)
	if len(lack)+len(extra) > 0 {
		t.Errorf("%s: %d of %d blocks in force; missing %v; lifted yet blocked %v", when, held, held+len(lack), lack, extra)
	}
}
