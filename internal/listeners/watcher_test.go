package listeners

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeTables is a Dump function whose answer the test changes.
type fakeTables struct {
	mu      sync.Mutex
	sockets []Socket
	err     error
	calls   int
}

func (f *fakeTables) set(err error, s ...Socket) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sockets, f.err = slices.Clone(s), err
}

func (f *fakeTables) dump() ([]Socket, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return slices.Clone(f.sockets), f.err
}

func TestWatcherUpdate(t *testing.T) {
	ssh := sock(ProtoTCP, "0.0.0.0", 22)
	web := sock(ProtoTCP, "10.201.0.1", 8080)
	tftp := sock(ProtoUDP, "0.0.0.0", 69)
	f := &fakeTables{}
	w := &Watcher{Dump: f.dump}
	dst := netip.MustParseAddr("10.201.0.1")

	if w.Snapshot() == nil || w.Snapshot().Len() != 0 {
		t.Fatal("Snapshot before the first reading is not an empty Set")
	}
	steps := []struct {
		name           string
		now            []Socket
		err            error
		added, removed []Socket
		wantErr        bool
		inUse8080      bool
	}{
		{name: "first reading reports all", now: []Socket{web, ssh}, added: []Socket{ssh, web}, inUse8080: true},
		{name: "no change", now: []Socket{ssh, web}, inUse8080: true},
		{name: "same endpoint, new process: no change", now: []Socket{ssh, {Proto: ProtoTCP, Addr: web.Addr, Port: 8080, Inode: 77}}, inUse8080: true},
		{name: "service stops, another starts", now: []Socket{ssh, tftp}, added: []Socket{tftp}, removed: []Socket{web}},
		{name: "error keeps the previous set", err: errors.New("boom"), wantErr: true},
		{name: "recovers", now: []Socket{ssh, tftp, web}, added: []Socket{web}, inUse8080: true},
		{name: "everything gone", now: nil, removed: []Socket{ssh, web, tftp}},
	}
	for _, st := range steps {
		f.set(st.err, st.now...)
		before := w.Snapshot()
		added, removed, err := w.Update()
		if (err != nil) != st.wantErr {
			t.Fatalf("%s: err = %v", st.name, err)
		}
		if err != nil && w.Snapshot() != before {
			t.Errorf("%s: failed reading replaced the snapshot", st.name)
		}
		if !equalEndpoints(added, st.added) || !equalEndpoints(removed, st.removed) {
			t.Errorf("%s: added %v removed %v, want added %v removed %v", st.name, added, removed, st.added, st.removed)
		}
		if got := w.Snapshot().InUse(ProtoTCP, dst, 8080); got != st.inUse8080 {
			t.Errorf("%s: InUse(8080) = %v, want %v", st.name, got, st.inUse8080)
		}
	}
}

func equalEndpoints(a, b []Socket) bool {
	return slices.EqualFunc(a, b, func(x, y Socket) bool { return compareEndpoint(x, y) == 0 })
}

type change struct{ added, removed []Socket }

func TestWatcherRun(t *testing.T) {
	web := sock(ProtoTCP, "10.201.0.1", 8080)
	f := &fakeTables{}
	changes := make(chan change, 10)
	errs := make(chan error, 10)
	w := &Watcher{
		Interval: 10 * time.Millisecond,
		Dump:     f.dump,
		OnChange: func(a, r []Socket) {
			if len(a)+len(r) == 0 {
				t.Error("OnChange called with nothing changed")
			}
			changes <- change{a, r}
		},
		OnError: func(err error) { errs <- err },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	expect := func(what string, added, removed []Socket) {
		t.Helper()
		select {
		case c := <-changes:
			if !equalEndpoints(c.added, added) || !equalEndpoints(c.removed, removed) {
				t.Fatalf("%s: OnChange(%v, %v), want (%v, %v)", what, c.added, c.removed, added, removed)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("%s: no OnChange within 3s", what)
		}
	}
	f.set(nil, web)
	expect("listener appears", []Socket{web}, nil)
	if !w.Snapshot().InUse(ProtoTCP, web.Addr, 8080) {
		t.Error("Snapshot does not show the new listener")
	}

	// Errors are reported once, not every interval, and change nothing.
	f.set(errors.New("sock_diag down"))
	select {
	case <-errs:
	case <-time.After(3 * time.Second):
		t.Fatal("no OnError within 3s")
	}
	f.mu.Lock()
	calls := f.calls
	f.mu.Unlock()
	for {
		f.mu.Lock()
		n := f.calls
		f.mu.Unlock()
		if n >= calls+5 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-errs:
		t.Errorf("same error reported twice: %v", err)
	default:
	}
	if !w.Snapshot().InUse(ProtoTCP, web.Addr, 8080) {
		t.Error("a failed reading dropped the listener")
	}

	f.set(nil)
	expect("listener goes", nil, []Socket{web})
	select {
	case c := <-changes:
		t.Errorf("unexpected OnChange(%v, %v)", c.added, c.removed)
	default:
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// TestWatcherUpdateBeforeRun: a daemon reads once at start (to install the
// kernel sets), then runs; Run then reports only later changes.
func TestWatcherUpdateBeforeRun(t *testing.T) {
	ssh := sock(ProtoTCP, "0.0.0.0", 22)
	f := &fakeTables{}
	f.set(nil, ssh)
	changes := make(chan change, 10)
	w := &Watcher{Interval: 5 * time.Millisecond, Dump: f.dump, OnChange: func(a, r []Socket) { changes <- change{a, r} }}
	if added, _, err := w.Update(); err != nil || !equalEndpoints(added, []Socket{ssh}) {
		t.Fatalf("Update = %v, %v", added, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	w.Run(ctx)
	select {
	case c := <-changes:
		t.Errorf("Run reported the initial reading again: %v %v", c.added, c.removed)
	default:
	}
}

func TestWatcherFollow(t *testing.T) {
	ssh := sock(ProtoTCP, "0.0.0.0", 22)
	f := &fakeTables{}
	f.set(nil, ssh)
	changes := make(chan change, 10)
	w := &Watcher{Interval: 5 * time.Millisecond, Dump: f.dump}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Follow(ctx, func(a, r []Socket) { changes <- change{a, r} }) }()
	if c := <-changes; !equalEndpoints(c.added, []Socket{ssh}) || len(c.removed) > 0 {
		t.Errorf("first reading: %v %v", c.added, c.removed)
	}
	f.set(nil)
	if c := <-changes; len(c.added) > 0 || !equalEndpoints(c.removed, []Socket{ssh}) {
		t.Errorf("after the listener went: %v %v", c.added, c.removed)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Follow = %v", err)
	}
}
