package hostsdeny

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestAddOnceRemoveKeepsOthersAndMode(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hosts.deny")
	os.WriteFile(p, []byte("# comment\nALL: 192.0.2.1\n"), 0o640)
	f := &File{Path: p}
	line := Line("ALL: $TARGET$ : DENY", "10.0.0.5", "79", "tcp")
	if line != "ALL: 10.0.0.5 : DENY" {
		t.Fatalf("Line = %q", line)
	}
	for i, want := range []bool{true, false} {
		wrote, err := f.Add(line)
		if err != nil || wrote != want {
			t.Fatalf("Add #%d: wrote %v err %v, want %v", i+1, wrote, err, want)
		}
	}
	data, _ := os.ReadFile(p)
	if string(data) != "# comment\nALL: 192.0.2.1\nALL: 10.0.0.5 : DENY\n" {
		t.Fatalf("after add: %q", data)
	}
	if changed, err := f.Remove(line); err != nil || !changed {
		t.Fatalf("Remove: %v %v", changed, err)
	}
	data, _ = os.ReadFile(p)
	if string(data) != "# comment\nALL: 192.0.2.1\n" {
		t.Fatalf("after remove: %q", data)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode changed to %v", fi.Mode().Perm())
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".hosts.deny.*")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
}

func TestRefusesSymlinkAndWorldWritable(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real")
	os.WriteFile(target, nil, 0o644)
	link := filepath.Join(dir, "hosts.deny")
	os.Symlink(target, link)
	if _, err := (&File{Path: link}).Add("ALL: 10.0.0.1"); !errors.Is(err, ErrUnsafe) {
		t.Errorf("symlink: err %v, want ErrUnsafe", err)
	}
	ww := filepath.Join(dir, "ww")
	os.WriteFile(ww, nil, 0o644)
	os.Chmod(ww, 0o666)
	if _, err := (&File{Path: ww}).Add("ALL: 10.0.0.1"); !errors.Is(err, ErrUnsafe) {
		t.Errorf("world-writable: err %v, want ErrUnsafe", err)
	}
	if data, _ := os.ReadFile(target); len(data) != 0 {
		t.Errorf("symlink target was written: %q", data)
	}
}

func TestCreatesMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hosts.deny")
	if _, err := (&File{Path: p}).Add("ALL: fd00::1"); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(p); string(data) != "ALL: fd00::1\n" {
		t.Fatalf("%q", data)
	}
}

// Under ProtectSystem=strict only the file is writable, not /etc: the
// line is still written (in place).
func TestReadOnlyDirectoryWritableFile(t *testing.T) {
	if os.Geteuid() == 0 {
		// root ignores directory permissions; simulate with a read-only bind mount is overkill here
		dir := t.TempDir()
		p := filepath.Join(dir, "hosts.deny")
		os.WriteFile(p, []byte("ALL: 192.0.2.1\n"), 0o644)
		if err := rewriteInPlace(p, []byte("ALL: 192.0.2.1\nALL: 10.0.0.1\n")); err != nil {
			t.Fatal(err)
		}
		if data, _ := os.ReadFile(p); string(data) != "ALL: 192.0.2.1\nALL: 10.0.0.1\n" {
			t.Fatalf("%q", data)
		}
		return
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "hosts.deny")
	os.WriteFile(p, []byte("ALL: 192.0.2.1\n"), 0o644)
	os.Chmod(dir, 0o555)
	defer os.Chmod(dir, 0o755)
	if wrote, err := (&File{Path: p}).Add("ALL: 10.0.0.1"); err != nil || !wrote {
		t.Fatalf("Add in a read-only directory: %v %v", wrote, err)
	}
	if data, _ := os.ReadFile(p); string(data) != "ALL: 192.0.2.1\nALL: 10.0.0.1\n" {
		t.Fatalf("%q", data)
	}
}
