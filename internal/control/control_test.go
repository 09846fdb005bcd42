package control

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type handler struct{}

func (handler) Status() Status                                             { return Status{Version: "t"} }
func (handler) List(context.Context) ([]Block, error)                      { return nil, nil }
func (handler) Block(_ context.Context, a []string, _ string) (int, error) { return len(a), nil }
func (handler) Unblock(_ context.Context, a []string, _ bool) (int, error) { return len(a), nil }

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the control socket serves root peers only; CI runs as root")
		}
		t.Skip("SKIPPING PRIVILEGED TEST: the control socket serves root peers only (run as root)")
	}
}

func serve(t *testing.T) (string, Bound) {
	t.Helper()
	requireRoot(t)
	path := filepath.Join(t.TempDir(), "control.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	b := Bind(path)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Serve(ctx, l, handler{}); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return path, b
}

func call(t *testing.T, path string) (*Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return Call(ctx, path, Request{Cmd: "block", Addrs: []string{"192.0.2.1"}})
}

// A request larger than MaxRequestBytes is refused after that many bytes,
// not read into memory whole.
func TestRequestSizeIsBounded(t *testing.T) {
	old := MaxRequestBytes
	MaxRequestBytes = 1 << 16
	t.Cleanup(func() { MaxRequestBytes = old })
	path, _ := serve(t)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		c.Write([]byte(`{"cmd":"block","addrs":["`))
		c.Write(bytes.Repeat([]byte("9"), 4<<20)) // 4 MiB of one "address"
	}()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		t.Fatalf("no answer to an oversized request: %v", err)
	}
	if !strings.Contains(resp.Error, "larger than 65536 bytes") {
		t.Errorf("answer %+v, want the size refusal", resp)
	}
}

// Connections that send nothing are closed after ReadTimeout, and past
// MaxConns at once a new one is told the daemon is busy, at once; when
// they are gone, requests are served again.
func TestConnectionsAreBounded(t *testing.T) {
	oldT, oldN := ReadTimeout, MaxConns
	ReadTimeout, MaxConns = time.Second, 4
	t.Cleanup(func() { ReadTimeout, MaxConns = oldT, oldN })
	path, _ := serve(t)
	var idle []net.Conn
	for range MaxConns {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	time.Sleep(100 * time.Millisecond) // let them be accepted
	start := time.Now()
	if _, err := call(t, path); err == nil || !strings.Contains(err.Error(), "busy") {
		t.Errorf("call with every slot taken: %v, want busy", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("the busy answer took %s", d)
	}
	// The idle ones are closed by the daemon after ReadTimeout.
	for _, c := range idle {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		var resp Response
		json.NewDecoder(c).Decode(&resp)
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("an idle connection was not closed")
		}
		c.Close()
	}
	resp, err := call(t, path)
	if err != nil || resp.Count != 1 {
		t.Errorf("call after the idle ones left: %+v %v", resp, err)
	}
}

// The socket file is removed at exit only if it is still ours: a successor
// that bound the same path keeps its socket.
func TestRemoveOnlyOurSocket(t *testing.T) {
	requireRoot(t)
	path := filepath.Join(t.TempDir(), "control.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ours := Bind(path)
	l.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("Close removed the socket file by name: %v", err)
	}
	// A successor takes the path (the old daemon hung in its shutdown).
	l2, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	ours.Remove()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the old daemon removed its successor's socket: %v", err)
	}
	Bind(path).Remove()
	if _, err := os.Stat(path); err == nil {
		t.Error("the owner's Remove left the socket file")
	}
}
