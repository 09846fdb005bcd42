package guard

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// Watch follows resolv.conf as it is replaced (rename), also through a
// symlink into another directory (/etc/resolv.conf ->
// /run/systemd/resolve/stub-resolv.conf), and reports the new nameservers
// within the debounce, not at the next periodic Refresh.
func TestWatchFollowsResolvConf(t *testing.T) {
	f := newFixture(t)
	run := newFixture(t) // the target's directory, like /run/systemd/resolve
	run.write("stub-resolv.conf", "nameserver 127.0.0.53\n")
	link := f.path("resolv.conf")
	if err := os.Symlink(run.path("stub-resolv.conf"), link); err != nil {
		t.Fatal(err)
	}
	src := Sources{
		ResolvConf: []string{link, run.path("resolv.conf")}, // the second does not exist yet
		Route:      f.write("route", routeHeader),
		Route6:     f.write("ipv6_route", ""),
		LocalAddrs: func() ([]netip.Addr, error) { return nil, nil },
	}
	g := New(src, nil)
	reports := make(chan []netip.Addr, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Watch(ctx, nil, func(as []netip.Addr) { reports <- as }, func(err error) { t.Errorf("watch: %v", err) })
	}()
	defer func() { cancel(); <-done }()

	next := func(what string, want ...string) {
		t.Helper()
		start := time.Now()
		select {
		case got := <-reports:
			if !slices.Equal(got, addrs(want...)) {
				t.Errorf("%s: reported %v, want %v", what, got, want)
			}
			t.Logf("%s: reported after %v", what, time.Since(start).Round(time.Millisecond))
		case <-time.After(2 * time.Second):
			t.Fatalf("%s: nothing reported within 2s", what)
		}
	}
	next("start", "127.0.0.53")
	run.write("resolv.conf", "nameserver 192.0.2.1\n")
	next("upstream file created", "192.0.2.1")
	run.write("stub-resolv.conf", "nameserver 127.0.0.53\nnameserver 192.0.2.9\n")
	next("symlink target replaced", "192.0.2.9")
	// Written in place.
	if err := os.WriteFile(run.path("resolv.conf"), []byte("nameserver 2001:db8::1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	next("upstream file rewritten", "2001:db8::1")
	// Other files in the directories are no reason to refresh; a later
	// change still is.
	os.WriteFile(filepath.Join(f.dir, "hosts"), []byte("x"), 0o644)
	f.write("resolv.conf.bak", "nameserver 192.0.2.77\n")
	select {
	case got := <-reports:
		t.Errorf("reported %v for an unrelated file", got)
	case <-time.After(300 * time.Millisecond):
	}
	// The symlink is replaced by a regular file.
	f.write("resolv.conf", "nameserver 192.0.2.10\n")
	next("symlink replaced by a file", "192.0.2.10")
	if _, ok := g.Protected(netip.MustParseAddr("127.0.0.53")); ok {
		t.Error("127.0.0.53 is still protected")
	}
}
