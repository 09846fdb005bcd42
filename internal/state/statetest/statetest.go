// Package statetest gives tests a state directory on a small tmpfs of its
// own, to fill and to free: what a full disk does to the journal is then
// the kernel's own ENOSPC, short writes included, not an imitation of it.
// Mounting needs root; without it the test is skipped, saying why.
package statetest

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// Disk is a tmpfs mounted on Dir for one test.
type Disk struct {
	Dir string
	t   testing.TB
}

// fillName is the file that takes the free space.
const fillName = ".fill"

// NewDisk mounts a tmpfs of size bytes on dir (made if missing, a new
// temporary directory when ""), unmounted when the test ends.
func NewDisk(t testing.TB, dir string, size int) *Disk {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP: mounting a small tmpfs to fill needs root")
	}
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	opts := "size=" + strconv.Itoa(size) + ",mode=0700"
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, opts); err != nil {
		t.Skipf("SKIP: cannot mount a tmpfs on %s (%v): a full disk is not tested here", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return &Disk{Dir: dir, t: t}
}

// Fill takes every free block of the tmpfs: a file written until the
// kernel answers ENOSPC.
func (d *Disk) Fill() {
	d.t.Helper()
	f, err := os.OpenFile(filepath.Join(d.Dir, fillName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		d.t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err = f.Write(buf); err != nil {
			break
		}
	}
	if !errors.Is(err, syscall.ENOSPC) {
		d.t.Fatalf("filling %s: %v, want ENOSPC", d.Dir, err)
	}
}

// Free removes what Fill wrote: the space returns.
func (d *Disk) Free() {
	d.t.Helper()
	if err := os.Remove(filepath.Join(d.Dir, fillName)); err != nil {
		d.t.Fatal(err)
	}
}
