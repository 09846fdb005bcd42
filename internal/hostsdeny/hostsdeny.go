// Package hostsdeny adds and removes PortSentry's KILL_HOSTS_DENY lines in
// a TCP wrappers file (/etc/hosts.deny). Every change is atomic (a temporary
// file in the same directory, then rename, keeping mode and owner), a line
// is never written twice, and the file is refused when it is a symlink or
// world-writable: both would let someone else steer what root writes.
package hostsdeny

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Line expands a template: $TARGET$ is the address, $PORT$ the port,
// $MODE$ the protocol word (tcp or udp).
func Line(template, target, port, mode string) string {
	r := strings.NewReplacer("$TARGET$", target, "$PORT$", port, "$MODE$", mode)
	return r.Replace(template)
}

// File is one hosts.deny file; its methods are safe for concurrent use.
type File struct {
	Path string
	mu   sync.Mutex
}

// ErrUnsafe is returned for a symlink or a world-writable file.
var ErrUnsafe = errors.New("refusing unsafe file")

// Add appends line unless the file already has it. It reports whether it wrote.
func (f *File) Add(line string) (bool, error) {
	return f.edit(func(lines []string) ([]string, bool) {
		for _, l := range lines {
			if l == line {
				return lines, false
			}
		}
		return append(lines, line), true
	})
}

// Remove deletes every copy of line. It reports whether it changed the file.
func (f *File) Remove(line string) (bool, error) {
	return f.edit(func(lines []string) ([]string, bool) {
		out := lines[:0:0]
		for _, l := range lines {
			if l != line {
				out = append(out, l)
			}
		}
		return out, len(out) != len(lines)
	})
}

func (f *File) edit(change func([]string) ([]string, bool)) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, err := f.read()
	if err != nil {
		return false, err
	}
	var lines []string
	if len(cur.data) > 0 {
		lines = strings.Split(strings.TrimSuffix(string(cur.data), "\n"), "\n")
	}
	lines, changed := change(lines)
	if !changed {
		return false, nil
	}
	var buf bytes.Buffer
	for _, l := range lines {
		buf.WriteString(l + "\n")
	}
	return true, f.write(cur, buf.Bytes())
}

// current is the file as it stands: its content, mode and owner (the
// defaults when it does not exist yet).
type current struct {
	exists   bool
	data     []byte
	mode     fs.FileMode
	uid, gid int
}

// read reads the file, refusing one that is not safe to rewrite (a
// symlink, not a regular file, world-writable).
func (f *File) read() (current, error) {
	cur := current{mode: 0o644, uid: -1, gid: -1}
	fi, err := os.Lstat(f.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return cur, nil
	case err != nil:
		return cur, fmt.Errorf("hosts.deny %s: %w", f.Path, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return cur, fmt.Errorf("hosts.deny %s is a symlink: %w", f.Path, ErrUnsafe)
	case !fi.Mode().IsRegular():
		return cur, fmt.Errorf("hosts.deny %s is not a regular file: %w", f.Path, ErrUnsafe)
	case fi.Mode().Perm()&0o002 != 0:
		return cur, fmt.Errorf("hosts.deny %s is world-writable: %w", f.Path, ErrUnsafe)
	}
	cur.exists, cur.mode = true, fi.Mode().Perm()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		cur.uid, cur.gid = int(st.Uid), int(st.Gid)
	}
	if cur.data, err = os.ReadFile(f.Path); err != nil {
		return cur, fmt.Errorf("read %s: %w", f.Path, err)
	}
	return cur, nil
}

// write replaces the file with data atomically (a temporary file in its
// directory, synced, renamed over it), keeping its mode and owner.
func (f *File) write(cur current, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(f.Path), ".hosts.deny.portsentry-*")
	if err != nil && cur.exists && (errors.Is(err, syscall.EROFS) || errors.Is(err, fs.ErrPermission)) {
		// The directory is read-only but the file is writable (systemd's
		// ProtectSystem=strict with ReadWritePaths=/etc/hosts.deny): rewrite
		// it in place, under the lock, as a last resort.
		return rewriteInPlace(f.Path, data)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", f.Path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", f.Path, err)
	}
	if err := tmp.Chmod(cur.mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", f.Path, err)
	}
	if cur.uid >= 0 {
		tmp.Chown(cur.uid, cur.gid)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", f.Path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", f.Path, err)
	}
	if err := os.Rename(tmp.Name(), f.Path); err != nil {
		return fmt.Errorf("write %s: %w", f.Path, err)
	}
	return nil
}

func rewriteInPlace(path string, data []byte) error {
	w, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := w.Write(data); err != nil {
		w.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := w.Sync(); err != nil {
		w.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return w.Close()
}
