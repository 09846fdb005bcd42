package guard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// debounce is how long Watch gathers changes before it refreshes: a DHCP
// renewal or an interface coming up sends a burst of route and address
// messages, and one refresh after the first of them covers them all.
const debounce = 100 * time.Millisecond

// rewatchEvery retries the resolv.conf directories that could not be
// watched (systemd-resolved not started yet) and follows a symlink that
// now points elsewhere.
const rewatchEvery = 30 * time.Second

// Watch follows what the protected addresses are made of, as it changes,
// until ctx is done: route and address changes (rtnetlink, in the network
// namespace netns; nil: the calling process's own) and the resolv.conf
// files (inotify on their directories, and on those of their symlink
// targets: resolv.conf is usually replaced by a rename). Each change
// refreshes the snapshot within 100 ms (debounce).
//
// changed is called on Watch's goroutine, one call at a time, with the
// addresses that became protected since the last call, whichever Refresh
// found them (this one, the periodic one, a reload); the first call has
// every address protected when Watch starts. warn gets what could not be
// set up; the rest still works, and the caller's periodic Refresh remains
// the fallback.
func (g *Guard) Watch(ctx context.Context, netns *os.File, changed func(added []netip.Addr), warn func(error)) {
	if warn == nil {
		warn = func(error) {}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	events := make(chan struct{}, 1)
	signal := func() {
		select {
		case events <- struct{}{}:
		default:
		}
	}
	// Subscribe first, then read: a change between the two is not lost.
	fw := g.subscribe(ctx, &wg, netns, signal, warn)
	g.startReports()
	defer g.stopReports()
	g.Refresh()

	tick := time.NewTicker(rewatchEvery)
	defer tick.Stop()
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
			if fire == nil {
				fire = time.After(debounce)
			}
		case <-fire:
			fire = nil
			fw.rewatch()
			// Errors of the sources are the periodic Refresh's to report.
			g.Refresh()
		case <-tick.C:
			fw.rewatch()
		case <-g.kick:
			if as := g.takeReports(); len(as) > 0 {
				changed(as)
			}
		}
	}
}

// subscribe follows route and address notifications and the resolv.conf
// files on goroutines of wg, calling signal on each change; it returns
// the files' watch (nil-safe when it could not be set up).
func (g *Guard) subscribe(ctx context.Context, wg *sync.WaitGroup, netns *os.File, signal func(), warn func(error)) *fileWatch {
	if c, err := dialRoutes(netns); err != nil {
		warn(err)
	} else {
		wg.Go(func() {
			if err := followRoutes(ctx, c, signal); err != nil {
				warn(err)
			}
		})
	}
	fw, err := newFileWatch(g.src.ResolvConf)
	if err != nil {
		warn(err)
		return fw
	}
	wg.Go(func() {
		if err := fw.follow(ctx, signal); err != nil {
			warn(err)
		}
	})
	return fw
}

// Route and address notifications: a default route that comes or goes, an
// address added or removed.
const routeGroups = unix.RTMGRP_IPV4_ROUTE | unix.RTMGRP_IPV6_ROUTE | unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR

func dialRoutes(netns *os.File) (*netlink.Conn, error) {
	cfg := &netlink.Config{Groups: routeGroups}
	if netns != nil {
		// netlink enters the namespace on a locked thread, opens the
		// socket and returns; the socket stays in the namespace.
		cfg.NetNS = int(netns.Fd())
	}
	c, err := netlink.Dial(unix.NETLINK_ROUTE, cfg)
	runtime.KeepAlive(netns)
	if err != nil {
		return nil, fmt.Errorf("guard: route and address changes (rtnetlink) cannot be followed, only read every 30 s: %w", err)
	}
	return c, nil
}

// followRoutes signals every notification until ctx is done. Their content
// does not matter: the guard reads the routes and addresses anew.
func followRoutes(ctx context.Context, c *netlink.Conn, signal func()) error {
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	for {
		_, err := c.Receive()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, unix.ENOBUFS):
			// Notifications were lost: something changed.
			signal()
		case err != nil:
			c.Close()
			return fmt.Errorf("guard: rtnetlink: %w; route changes are now only read every 30 s", err)
		default:
			signal()
		}
	}
}

// fileWatch follows the resolv.conf files by inotify on their directories.
type fileWatch struct {
	paths []string
	f     *os.File
	mu    sync.Mutex
	dirs  map[int32]string           // watch descriptor -> directory
	names map[string]map[string]bool // directory -> file names that matter
}

const dirEvents = unix.IN_CLOSE_WRITE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_CREATE | unix.IN_DELETE | unix.IN_ONLYDIR

func newFileWatch(paths []string) (*fileWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("guard: resolv.conf changes cannot be followed, only read every 30 s: inotify: %w", err)
	}
	fw := &fileWatch{paths: paths, f: os.NewFile(uintptr(fd), "inotify"), dirs: map[int32]string{}}
	fw.rewatch()
	return fw, nil
}

// rewatch watches the directory of each file and of its symlink's target;
// a directory that does not exist yet is tried again later.
func (fw *fileWatch) rewatch() {
	if fw == nil {
		return
	}
	names := map[string]map[string]bool{}
	want := func(p string) {
		dir, name := filepath.Dir(p), filepath.Base(p)
		if names[dir] == nil {
			names[dir] = map[string]bool{}
		}
		names[dir][name] = true
	}
	for _, p := range fw.paths {
		want(p)
		if t, err := filepath.EvalSymlinks(p); err == nil && t != p {
			want(t)
		}
	}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.names = names
	rc, err := fw.f.SyscallConn()
	if err != nil {
		return
	}
	// Control fails once the file is closed (its number may be another
	// file's by then).
	rc.Control(func(fd uintptr) {
		for dir := range names {
			// Adding a watch again for the same directory returns the
			// same descriptor.
			if wd, err := unix.InotifyAddWatch(int(fd), dir, dirEvents); err == nil {
				fw.dirs[int32(wd)] = dir
			}
		}
	})
}

// matters says whether an event in the directory of wd about name may
// change a resolv.conf.
func (fw *fileWatch) matters(wd int32, mask uint32, name string) bool {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if mask&unix.IN_Q_OVERFLOW != 0 {
		return true
	}
	dir, ok := fw.dirs[wd]
	if mask&unix.IN_IGNORED != 0 {
		// The directory is gone (or unwatched): its files may be too.
		delete(fw.dirs, wd)
		return ok
	}
	return ok && fw.names[dir][name]
}

func (fw *fileWatch) follow(ctx context.Context, signal func()) error {
	stop := context.AfterFunc(ctx, func() { fw.f.Close() })
	defer stop()
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := fw.f.Read(buf)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			fw.f.Close()
			return fmt.Errorf("guard: inotify: %w; resolv.conf changes are now only read every 30 s", err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			end := off + unix.SizeofInotifyEvent + int(ev.Len)
			if end > n {
				break
			}
			name := string(bytes.TrimRight(buf[off+unix.SizeofInotifyEvent:end], "\x00"))
			if fw.matters(ev.Wd, ev.Mask, name) {
				signal()
			}
			off = end
		}
	}
}
