package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

type handler struct{}

func (handler) Status() Status                                             { return Status{Version: "t"} }
func (handler) List(context.Context, func(Block) error) error              { return nil }
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
	return serveWith(t, &Server{})
}

// serveWith serves the test handler with srv's bounds.
func serveWith(t *testing.T, srv *Server) (string, Bound) {
	t.Helper()
	requireRoot(t)
	if srv.Handler == nil {
		srv.Handler = handler{}
	}
	path := filepath.Join(t.TempDir(), "control.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	b := Bind(path)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, l); close(done) }()
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
	path, _ := serveWith(t, &Server{MaxRequestBytes: 1 << 16})
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

// dialIdle opens n connections that send nothing.
func dialIdle(t *testing.T, path string, n int) []net.Conn {
	t.Helper()
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range n {
		c, err := net.DialTimeout("unix", path, 5*time.Second)
		if err != nil {
			t.Fatalf("idle connection %d: %v", len(conns)+1, err)
		}
		conns = append(conns, c)
	}
	return conns
}

// closedWithin reports whether the daemon closed c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c) // nil at EOF, ECONNRESET if unread
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

// Connections that send nothing, or not a whole request, are closed after
// IdleTimeout; past MaxConns a new one takes the place of the oldest
// silent one, which is closed at once.
func TestIdleConnectionsAreClosed(t *testing.T) {
	path, _ := serveWith(t, &Server{IdleTimeout: time.Second, MaxConns: 4})
	idle := dialIdle(t, path, 4)
	idle[3].Write([]byte(`{"cmd":"sta`)) // half a request
	time.Sleep(100 * time.Millisecond)   // let them be accepted
	start := time.Now()
	if resp, err := call(t, path); err != nil || resp.Count != 1 {
		t.Errorf("call with every place held by silent connections: %+v %v", resp, err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("the answer took %s", d)
	}
	if !closedWithin(idle[0], 100*time.Millisecond) {
		t.Error("the oldest silent connection kept its place")
	}
	for i, c := range idle[1:] {
		if !closedWithin(c, 2*time.Second) {
			t.Errorf("silent connection %d still open %s after it was made (IdleTimeout 1s)", i+2, time.Since(start).Round(time.Millisecond))
		}
	}
}

// stuck is a handler whose block waits until release is closed.
type stuck struct {
	handler
	entered chan struct{}
	release chan struct{}
}

func (s stuck) Block(_ context.Context, a []string, _ string) (int, error) {
	s.entered <- struct{}{}
	<-s.release
	return len(a), nil
}

// Past MaxConns requests being answered, a new connection is told the
// daemon is busy, at once; when they are answered, requests are served
// again.
func TestBusyWhenEveryPlaceIsAnswering(t *testing.T) {
	h := stuck{entered: make(chan struct{}), release: make(chan struct{})}
	path, _ := serveWith(t, &Server{Handler: h, MaxConns: 2})
	errs := make(chan error, 2)
	for range 2 {
		go func() { _, err := call(t, path); errs <- err }()
		<-h.entered
	}
	start := time.Now()
	if _, err := Call(context.Background(), path, Request{Cmd: "status"}); err == nil || !strings.Contains(err.Error(), "busy") {
		t.Errorf("call with every place answering: %v, want busy", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("the busy answer took %s", d)
	}
	close(h.release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("a request being answered: %v", err)
		}
	}
	if resp, err := Call(context.Background(), path, Request{Cmd: "status"}); err != nil || resp.Status == nil {
		t.Errorf("status after the others were answered: %+v %v", resp, err)
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

// raiseFileLimit makes room for n more open files in this process (the
// attacker's ends and the daemon's both live here), or skips.
func raiseFileLimit(t *testing.T, n uint64) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	want := old
	if want.Cur < n {
		want.Cur = min(n, want.Max)
	}
	if want.Cur < n {
		t.Skipf("SKIPPING: RLIMIT_NOFILE hard limit %d is below the %d files this test holds", want.Max, n)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

// The attacker's test (C1): a root process holds 1,000 connections open
// and sends nothing, and opens 1,000 more while the admin asks; the
// admin's status and unblock still get an answer, at once, and every idle
// connection is closed by the daemon within DefaultIdleTimeout.
func TestIdleConnectionsLeaveRoomForTheAdmin(t *testing.T) {
	const idle = 1000
	raiseFileLimit(t, 4*idle+256)
	path, _ := serve(t)
	conns := dialIdle(t, path, idle)
	more := make(chan []net.Conn, 1)
	go func() { // the attacker keeps coming
		var cs []net.Conn
		for range idle {
			c, err := net.DialTimeout("unix", path, 5*time.Second)
			if err != nil {
				break
			}
			cs = append(cs, c)
		}
		more <- cs
	}()
	for _, req := range []Request{{Cmd: "status"}, {Cmd: "unblock", Addrs: []string{"192.0.2.1"}}} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := time.Now()
		_, err := Call(ctx, path, req)
		cancel()
		if d := time.Since(start); err != nil || d > 2*time.Second {
			t.Errorf("%s with %d idle connections held: %v after %s, want an answer within 2s", req.Cmd, idle, err, d.Round(time.Millisecond))
		}
	}
	cs := <-more
	conns = append(conns, cs...)
	t.Cleanup(func() {
		for _, c := range cs {
			c.Close()
		}
	})
	if len(cs) < idle {
		t.Errorf("the daemon refused connections: %d of %d made", len(cs), idle)
	}
	deadline := time.Now().Add(DefaultIdleTimeout + time.Second)
	for i, c := range conns {
		if !closedWithin(c, time.Until(deadline)) {
			t.Fatalf("idle connection %d still open %s after the last was made (DefaultIdleTimeout %s)", i+1, DefaultIdleTimeout+time.Second, DefaultIdleTimeout)
		}
	}
}
