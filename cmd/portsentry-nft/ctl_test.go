package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/portsentry-nft/portsentry-nft/internal/control"
)

// fakeDaemon answers the control socket as the daemon would and records
// what it was asked.
type fakeDaemon struct {
	mu      sync.Mutex
	addrs   []string
	timeout string
	all     bool
	refuse  error
	// notDurable, when set, is the error block and unblock return after
	// doing their work (the journal could not be written).
	notDurable error
	// listed is what list gives; listErr cuts the list short after it.
	listed  []control.Block
	listErr error
}

func (f *fakeDaemon) Status() control.Status { return control.Status{Version: "test"} }
func (f *fakeDaemon) List(_ context.Context, each func(control.Block) error) error {
	for _, b := range f.listed {
		if err := each(b); err != nil {
			return err
		}
	}
	return f.listErr
}

func (f *fakeDaemon) Block(_ context.Context, addrs []string, timeout string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addrs, f.timeout = addrs, timeout
	if f.refuse != nil {
		return 0, f.refuse
	}
	return len(addrs), f.notDurable
}

func (f *fakeDaemon) Unblock(_ context.Context, addrs []string, all bool) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addrs, f.all = addrs, all
	if all {
		return 3, f.notDurable
	}
	return 1, f.notDurable
}

// serveFake serves f on a socket of its own. The socket takes root peers
// only (SO_PEERCRED), as the daemon's does.
func serveFake(t *testing.T, f *fakeDaemon) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the control socket takes root peers only; CI runs as root")
		}
		t.Skip("SKIPPING PRIVILEGED TEST: the control socket takes root peers only (run as root)")
	}
	path := filepath.Join(t.TempDir(), "control.sock")
	l, err := control.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { control.Serve(ctx, l, f); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return path
}

// Admins' habits: flags after the addresses, several addresses, a file of
// them with comments; one request; documented exit codes.
func TestBlockAndUnblockAsAdminsTypeThem(t *testing.T) {
	f := &fakeDaemon{}
	sock := serveFake(t, f)
	list := filepath.Join(t.TempDir(), "bad-hosts")
	os.WriteFile(list, []byte("# from the abuse desk\n198.51.100.7\n\n2001:db8::9   # v6 too\n"), 0o644)

	code, out, errOut := run(t, "block", "203.0.113.7", "--timeout", "1h", "--socket", sock)
	if code != 0 || out != "blocked 203.0.113.7\n" || f.timeout != "1h" || !slices.Equal(f.addrs, []string{"203.0.113.7"}) {
		t.Errorf("block IP --timeout 1h: exit %d, out %q, err %q; daemon got %v %q", code, out, errOut, f.addrs, f.timeout)
	}
	code, out, _ = run(t, "block", "--socket", sock, "203.0.113.8", "--file", list, "203.0.113.9")
	if want := []string{"203.0.113.8", "203.0.113.9", "198.51.100.7", "2001:db8::9"}; code != 0 || !slices.Equal(f.addrs, want) || out != "blocked 4 addresses\n" {
		t.Errorf("block with --file: exit %d, out %q; daemon got %v, want %v in one request", code, out, f.addrs, want)
	}
	code, out, _ = run(t, "unblock", "--all", "--socket", sock)
	if code != 0 || !f.all || out != "unblocked all: 3 blocks lifted\n" {
		t.Errorf("unblock --all: exit %d, out %q, all %v", code, out, f.all)
	}
	// The daemon refuses (a protected address): exit 1, and the reason.
	f.refuse = errors.New("nothing blocked: 10.0.0.1 refused: 10.0.0.1 is protected (default gateway) and is never blocked")
	code, _, errOut = run(t, "block", "10.0.0.1", "--socket", sock)
	if code != 1 || !strings.Contains(errOut, "is protected (default gateway)") {
		t.Errorf("refused block: exit %d, stderr %q; want 1 and the reason", code, errOut)
	}
	// Usage errors: exit 2.
	for _, args := range [][]string{{"block"}, {"unblock"}, {"unblock", "--all", "10.0.0.1"}, {"status", "extra"}, {"block", "--nope", "1.2.3.4"}} {
		if code, _, _ := run(t, append(args, "--socket", sock)...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage)", args, code)
		}
	}
	// Not running: exit 1, and it says so.
	code, _, errOut = run(t, "unblock", "10.0.0.1", "--socket", filepath.Join(t.TempDir(), "none.sock"))
	if code != 1 || !strings.Contains(errOut, "the daemon is not running") {
		t.Errorf("no daemon: exit %d, stderr %q", code, errOut)
	}
	// A file that cannot be read: exit 1.
	if code, _, _ := run(t, "block", "--file", "/nonexistent/list", "--socket", sock); code != 1 {
		t.Errorf("unreadable --file: exit %d, want 1", code)
	}
}

// A block or unblock the daemon did but could not put on disk is not
// acknowledged: it says what it did, warns on stderr that a restart
// would undo it, and exits 1; with --json too.
func TestNotDurableIsNotAcknowledged(t *testing.T) {
	f := &fakeDaemon{notDurable: fmt.Errorf("%w (write /var/lib/portsentry-nft/blocks.journal: no space left on device)", control.ErrNotDurable)}
	sock := serveFake(t, f)
	for _, c := range []struct {
		args []string
		out  string
	}{
		{[]string{"block", "203.0.113.7"}, "blocked 203.0.113.7\n"},
		{[]string{"block", "203.0.113.7", "203.0.113.8"}, "blocked 2 addresses\n"},
		{[]string{"unblock", "203.0.113.7"}, "unblocked 203.0.113.7\n"},
		{[]string{"unblock", "--all"}, "unblocked all: 3 blocks lifted\n"},
	} {
		code, out, errOut := run(t, append(c.args, "--socket", sock)...)
		want := "portsentry-nft " + c.args[0] + ": warning: in force now, but not on disk: a restart or a reboot before the daemon can rewrite its journal undoes it (write /var/lib/portsentry-nft/blocks.journal: no space left on device)\n"
		if code != 1 || out != c.out || errOut != want {
			t.Errorf("%v on a full disk: exit %d, stdout %q, stderr %q; want 1, %q and\n%q", c.args, code, out, errOut, c.out, want)
		}
	}
	code, out, errOut := run(t, "block", "--json", "203.0.113.9", "--socket", sock)
	var resp control.Response
	if err := json.Unmarshal([]byte(out), &resp); err != nil || code != 1 || !resp.OK || !resp.NotDurable || resp.Count != 1 || !strings.Contains(errOut, "warning: in force now") {
		t.Errorf("block --json on a full disk: exit %d, %+v (%v), stderr %q", code, resp, err, errOut)
	}
}

// The bash script completes commands, flags and file arguments as bash
// itself runs it; the zsh script parses.
func TestCompletion(t *testing.T) {
	code, script, _ := run(t, "completion", "bash")
	if code != 0 {
		t.Fatalf("completion bash: exit %d", code)
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "portsentry-nft")
	os.WriteFile(f, []byte(script), 0o644)
	complete := func(words ...string) string {
		t.Helper()
		sh := `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($#-1)); _portsentry_nft; printf '%s\n' "${COMPREPLY[@]}"`
		out, err := exec.Command("bash", append([]string{"-c", sh, "bash", f}, words...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := complete("portsentry-nft", "unbl"); got != "unblock" {
		t.Errorf("unbl -> %q, want unblock", got)
	}
	if got := complete("portsentry-nft", "block", "203.0.113.7", "--ti"); got != "--timeout" {
		t.Errorf("block IP --ti -> %q, want --timeout", got)
	}
	if got := complete("portsentry-nft", "unblock", "--a"); got != "--all" {
		t.Errorf("unblock --a -> %q, want --all", got)
	}
	if got := complete("portsentry-nft", "check", "--config", filepath.Join(dir, "portsentry-n")); got != f {
		t.Errorf("check --config <file> -> %q, want %q", got, f)
	}
	if got := complete("portsentry-nft", "import", "-"); !strings.Contains(got, "-o") || !strings.Contains(got, "--ignore") {
		t.Errorf("import - -> %q, want -o and --ignore", got)
	}
	code, zsh, _ := run(t, "completion", "zsh")
	if code != 0 || !strings.HasPrefix(zsh, "#compdef portsentry-nft\n") {
		t.Fatalf("completion zsh: exit %d:\n%s", code, zsh)
	}
	if _, err := exec.LookPath("zsh"); err == nil {
		zf := filepath.Join(dir, "_portsentry-nft")
		os.WriteFile(zf, []byte(zsh), 0o644)
		if out, err := exec.Command("zsh", "-n", zf).CombinedOutput(); err != nil {
			t.Errorf("zsh -n: %v\n%s", err, out)
		}
	} else if os.Getenv("CI") != "" {
		t.Error("zsh not installed (make test installs it)")
	}
	if code, _, _ := run(t, "completion", "fish"); code != 2 {
		t.Errorf("completion fish: exit %d, want 2", code)
	}
}

// list --json streams the blocks as one JSON array; none is [], and a list
// the daemon cuts short exits 1 with its reason, not a truncated array
// taken for the whole.
func TestListJSONStreams(t *testing.T) {
	f := &fakeDaemon{}
	sock := serveFake(t, f)
	code, out, errOut := run(t, "list", "--json", "--socket", sock)
	if code != 0 || out != "[]\n" {
		t.Errorf("empty list --json: exit %d, out %q, err %q", code, out, errOut)
	}
	for i := range 3000 {
		f.listed = append(f.listed, control.Block{Addr: fmt.Sprintf("10.201.%d.%d", i>>8, byte(i)), Set: "blocked", Origin: "detect", Ports: []uint16{22, 80}})
	}
	code, out, errOut = run(t, "list", "--json", "--socket", sock)
	var got []control.Block
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || len(got) != 3000 || got[2999].Addr != "10.201.11.183" || got[0].Ports[1] != 80 {
		t.Fatalf("list --json of 3000: exit %d, err %q, decode %v, %d blocks", code, errOut, err, len(got))
	}
	code, out, _ = run(t, "list", "--socket", sock)
	if code != 0 || strings.Count(out, "\n") != 3001 || !strings.Contains(out, "10.201.11.183") {
		t.Errorf("list of 3000: exit %d, %d lines", code, strings.Count(out, "\n"))
	}
	f.listErr = errors.New("the sets could not be read")
	code, _, errOut = run(t, "list", "--json", "--socket", sock)
	if code != 1 || !strings.Contains(errOut, "the sets could not be read") {
		t.Errorf("a list cut short: exit %d, err %q", code, errOut)
	}
}
