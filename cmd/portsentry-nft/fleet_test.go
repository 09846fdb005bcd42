package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// adminFile starts a JetStream server on a loopback port and writes an
// administrator's file for it, named name (admin, or a host's name).
func adminFile(t *testing.T, name string) string {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	f := filepath.Join(t.TempDir(), "admin.yaml")
	y := fmt.Sprintf("block: {timeout: 2h}\nfleet:\n  servers: [nats://%s]\n  name: %s\n", ns.Addr().(*net.TCPAddr), name)
	if err := os.WriteFile(f, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestFleetCommand: as the administrator, with no daemon, setup makes the
// buckets, block writes records under admin that list shows, unblock
// writes the lifts.
func TestFleetCommand(t *testing.T) {
	f := adminFile(t, "admin")
	code, out, errb := run(t, "fleet", "setup", "--config", f, "--hosts", "2", "--replicas", "1")
	if code != 0 || !regexp.MustCompile(`portsentry_blocks +33554432 +7d +1 `).MatchString(out) || !strings.Contains(out, "max_file: none") {
		t.Fatalf("setup: exit %d\n%s%s", code, out, errb)
	}
	code, out, errb = run(t, "fleet", "block", "203.0.113.7", "2001:db8::7", "--config", f, "--reason", "abuse feed")
	if code != 0 || out != "blocked 2 addresses on every host for 2h0m0s\n" {
		t.Fatalf("block: exit %d\n%s%s", code, out, errb)
	}
	code, out, errb = run(t, "fleet", "unblock", "--config", f, "2001:db8::7")
	if code != 0 || out != "lifted 2001:db8::7 on every host\n" {
		t.Fatalf("unblock: exit %d\n%s%s", code, out, errb)
	}
	code, out, errb = run(t, "fleet", "list", "--config", f, "--json")
	var l listing
	if err := json.Unmarshal([]byte(out), &l); code != 0 || err != nil {
		t.Fatalf("list: exit %d, %v\n%s%s", code, err, out, errb)
	}
	if len(l.Blocks) != 1 || l.Blocks[0].Addr != "203.0.113.7" || l.Blocks[0].Host != "admin" || !l.Blocks[0].Admin ||
		l.Blocks[0].Evidence != "admin" || l.Blocks[0].Reason != "abuse feed" || len(l.Lifts) != 1 || l.Lifts[0].Addr != "2001:db8::7" {
		t.Errorf("list: %+v", l)
	}
	code, out, _ = run(t, "fleet", "list", "--config", f)
	if code != 0 || !strings.Contains(out, "203.0.113.7") || !strings.Contains(out, "LIFTED") {
		t.Errorf("list: exit %d\n%s", code, out)
	}
}

// TestFleetCommandRefuses: the administrator's file must name the
// administrator; a host's is refused at fleet.name; usage errors exit 2.
func TestFleetCommandRefuses(t *testing.T) {
	f := adminFile(t, "h1")
	code, _, errb := run(t, "fleet", "block", "203.0.113.7", "--config", f)
	if code != 1 || !strings.Contains(errb, f+":4:9: fleet.name: the fleet administrator's file needs name: admin") {
		t.Errorf("a host's file: exit %d, %q", code, errb)
	}
	for _, args := range [][]string{{"fleet"}, {"fleet", "nope"}, {"fleet", "block", "203.0.113.7"},
		{"fleet", "block", "--config", f}, {"fleet", "unblock", "not-an-ip", "--config", f}, {"fleet", "setup", "--hosts", "0", "--config", f}} {
		if code, _, _ := run(t, args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}
