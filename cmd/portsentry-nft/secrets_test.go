package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// mainEnv makes the test binary run main's commands (TestMain), so that a
// test can run the daemon as a process in a namespace of its own.
const mainEnv = "PORTSENTRY_NFT_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// secret is a password no other text of the tests holds.
const secret = "Zq7-distinctive-Pw-4e1b"

// secretConfig writes a configuration of mode 0644 whose fleet logs in
// with secret over plain nats:// to a host that is not loopback (no one
// listens there), with its state and socket in dir.
func secretConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	f := filepath.Join(dir, "portsentry.yaml")
	yaml := "state: {dir: " + filepath.Join(dir, "state") + "}\ncontrol: {socket: " + filepath.Join(dir, "control.sock") + "}\n" +
		"fleet:\n  servers: [nats://" + netnstest.AddrB + ":4222]\n  name: h1\n  user: h1\n  password: " + secret + "\n" + extra
	if err := os.WriteFile(f, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(f, 0o644)
	return f
}

// check warns about a configuration others may read that holds the
// fleet's password, and about the password going in clear; it exits 0,
// and neither its warnings nor its errors show the password.
func TestCheckWarnsAboutSecrets(t *testing.T) {
	f := secretConfig(t, t.TempDir(), "")
	code, out, errOut := run(t, "check", "--config", f)
	if code != 0 || !strings.Contains(out, ": OK (") {
		t.Errorf("check: exit %d, out %q, want 0 and OK", code, out)
	}
	for _, w := range []string{
		"warning: " + f + ":4:13: fleet.servers[0]: the fleet's password goes in clear to " + netnstest.AddrB + ":4222",
		"warning: " + f + ":7:13: fleet.password: this file holds the fleet's password and is readable by group and others (mode 0644): chmod 0600 " + f,
	} {
		if !strings.Contains(errOut, w) {
			t.Errorf("check's warnings:\n%s\nwant %q", errOut, w)
		}
	}
	bad := secretConfig(t, t.TempDir(), "  password_file: /nonexistent\n  nkey: relative\n")
	code, out2, errOut2 := run(t, "check", "--config", bad)
	if code != 1 || !strings.Contains(errOut2, "fleet.password_file: the password is given twice") {
		t.Errorf("check of a config with errors: exit %d, %s", code, errOut2)
	}
	for _, s := range []string{out, errOut, out2, errOut2} {
		if strings.Contains(s, secret) {
			t.Errorf("check shows the password:\n%s", s)
		}
	}
}

// The daemon, run with its fleet password in fleet.password_file, and a
// fake NATS server in the other namespace that takes the CONNECT and
// answers nothing more (so the fleet's connection errors are logged too):
// the password goes in clear to that server, as check warns, and neither
// the daemon's log nor status, as text or JSON, shows it.
func TestDaemonNeverShowsSecret(t *testing.T) {
	netnstest.Require(t, "ncat")
	p := netnstest.NewPair(t)
	dir := t.TempDir()
	pw := filepath.Join(dir, "fleet.password")
	if err := os.WriteFile(pw, []byte(secret+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(pw, 0o644)
	f := filepath.Join(dir, "portsentry.yaml")
	yaml := "state: {dir: " + filepath.Join(dir, "state") + "}\ncontrol: {socket: " + filepath.Join(dir, "control.sock") + "}\n" +
		"fleet:\n  servers: [nats://" + netnstest.AddrB + ":4222]\n  name: h1\n  user: h1\n  password_file: " + pw + "\n"
	if err := os.WriteFile(f, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	wire := fakeNATS(t, p.B, filepath.Join(dir, "wire"))
	log, stop := runDaemon(t, p.A, f)
	sock := filepath.Join(dir, "control.sock")
	var outs []string
	for _, args := range [][]string{{"status"}, {"status", "--json"}, {"list", "--json"}} {
		code, out, errOut := run(t, append(args, "--socket", sock)...)
		if code != 0 || args[0] == "status" && !strings.Contains(out, "fleet") {
			t.Errorf("%v: exit %d, out %q, err %q", args, code, out, errOut)
		}
		outs = append(outs, out, errOut)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(wire(), secret) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(wire(), `"pass":"`+secret+`"`) {
		t.Errorf("the fake server did not get the password file's password in clear; it got:\n%s", wire())
	}
	stop()
	for _, w := range []string{"fleet.password_file: " + pw + " is readable by group and others", "the fleet's password goes in clear"} {
		if !strings.Contains(log.String(), w) {
			t.Errorf("the daemon did not log the warning %q:\n%s", w, log.String())
		}
	}
	for _, s := range append(outs, log.String()) {
		if strings.Contains(s, secret) {
			t.Errorf("the password is shown:\n%s", s)
		}
	}
}

// fakeNATS listens on ns's AddrB:4222 as a NATS server that asks for a
// password, writes what clients send to file, and answers nothing more.
// It returns a reader of the file.
func fakeNATS(t *testing.T, ns *netnstest.NS, file string) func() string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	info := `INFO {"server_id":"fake","version":"2.10.0","proto":1,"max_payload":1048576,"auth_required":true}`
	cmd := ns.Command(ctx, "ncat", "-lk", netnstest.AddrB, "4222", "--sh-exec", "printf '%s\r\n' '"+info+"'; cat >>"+file)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	return func() string {
		b, _ := os.ReadFile(file)
		return string(b)
	}
}

// runDaemon runs `portsentry-nft run --config f` (this test binary, see
// TestMain) in ns until it is monitoring; stop ends it (SIGTERM), as
// cleanup does. log is its output.
func runDaemon(t *testing.T, ns *netnstest.NS, f string) (log *netnstest.Output, stop func()) {
	t.Helper()
	log = &netnstest.Output{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := ns.Command(ctx, os.Args[0], "run", "--config", f)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var once sync.Once
	stop = func() { once.Do(func() { stopDaemon(t, cmd, done); cancel() }) }
	t.Cleanup(stop)
	waitFor(t, log, done, "PortSentry is initialized and monitoring.", 30*time.Second)
	return log, stop
}

// waitFor waits until out holds s, or the daemon exits, or within passes.
func waitFor(t *testing.T, out *netnstest.Output, done <-chan error, s string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(out.String(), s) {
		select {
		case err := <-done:
			t.Fatalf("the daemon exited (%v) before %q:\n%s", err, s, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %s:\n%s", s, within, out.String())
		}
	}
}

// stopDaemon ends the daemon with SIGTERM (it is killed after 10s).
func stopDaemon(t *testing.T, cmd *exec.Cmd, done <-chan error) {
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Error("the daemon did not stop within 10s of SIGTERM")
	}
}
