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
	mode := fs.FileMode(0o644)
	uid, gid := -1, -1
	var data []byte
	fi, err := os.Lstat(f.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return false, fmt.Errorf("hosts.deny %s: %w", f.Path, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return false, fmt.Errorf("hosts.deny %s is a symlink: %w", f.Path, ErrUnsafe)
	case !fi.Mode().IsRegular():
		return false, fmt.Errorf("hosts.deny %s is not a regular file: %w", f.Path, ErrUnsafe)
	case fi.Mode().Perm()&0o002 != 0:
		return false, fmt.Errorf("hosts.deny %s is world-writable: %w", f.Path, ErrUnsafe)
	default:
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
		if data, err = os.ReadFile(f.Path); err != nil {
			return false, fmt.Errorf("read %s: %w", f.Path, err)
		}
	}
	var lines []string
	if len(data) > 0 {
		lines = strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	}
	lines, changed := change(lines)
	if !changed {
		return false, nil
	}
	var buf bytes.Buffer
	for _, l := range lines {
		buf.WriteString(l + "\n")
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.Path), ".hosts.deny.portsentry-*")
	if err != nil && fi != nil && (errors.Is(err, syscall.EROFS) || errors.Is(err, fs.ErrPermission)) {
		// The directory is read-only but the file is writable (systemd's
		// ProtectSystem=strict with ReadWritePaths=/etc/hosts.deny): rewrite
		// it in place, under the lock, as a last resort.
		return true, rewriteInPlace(f.Path, buf.Bytes())
	}
	if err != nil {
		return false, fmt.Errorf("write %s: %w", f.Path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write %s: %w", f.Path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write %s: %w", f.Path, err)
	}
	if uid >= 0 {
		tmp.Chown(uid, gid)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write %s: %w", f.Path, err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("write %s: %w", f.Path, err)
	}
	if err := os.Rename(tmp.Name(), f.Path); err != nil {
		return false, fmt.Errorf("write %s: %w", f.Path, err)
	}
	return true, nil
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
