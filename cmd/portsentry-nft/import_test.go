package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// impRun runs "portsentry-nft import args...".
func impRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = dispatch(append([]string{"import"}, args...), &o, &e)
	return code, o.String(), e.String()
}

var impDiagLine = regexp.MustCompile(`^[^:]+(:\d+)?: (warning|error): \S`)

// impCheckStderr checks that every stderr line is a file:line diagnostic.
func impCheckStderr(t *testing.T, stderr string) {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		if l != "" && !impDiagLine.MatchString(l) {
			t.Errorf("stderr line is not file:line: warning|error: ...: %q", l)
		}
	}
}

// TestImportBetaGolden imports the 2.0 beta conf the way docs/migrating.md shows
// and compares stdout and stderr with the golden files the legacy package
// keeps; then check and rules accept the result.
func TestImportBetaGolden(t *testing.T) {
	t.Chdir("../..")
	code, stdout, stderr := impRun(t, "--ignore", "testdata/legacy/psionic-2.0-beta.ignore", "testdata/legacy/psionic-2.0-beta.conf")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	wantYAML, err := os.ReadFile("testdata/legacy/psionic-2.0-beta.yaml")
	if err != nil {
		t.Fatal(err)
	}
	wantWarn, err := os.ReadFile("testdata/legacy/psionic-2.0-beta.warnings")
	if err != nil {
		t.Fatal(err)
	}
	if stdout != string(wantYAML) {
		t.Errorf("stdout differs from testdata/legacy/psionic-2.0-beta.yaml:\n%s", stdout)
	}
	if stderr != string(wantWarn) {
		t.Errorf("stderr differs from testdata/legacy/psionic-2.0-beta.warnings:\n%s", stderr)
	}
	impCheckStderr(t, stderr)

	out := filepath.Join(t.TempDir(), "portsentry.yaml")
	if err := os.WriteFile(out, []byte(stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	var o, e bytes.Buffer
	if code := dispatch([]string{"check", "--config", out}, &o, &e); code != 0 || !strings.Contains(o.String(), ": OK (29 TCP and 17 UDP ports monitored, 6 ignore entries") {
		t.Errorf("check: exit %d\n%s%s", code, o.String(), e.String())
	}
	o.Reset()
	e.Reset()
	if code := dispatch([]string{"rules", "--config", out}, &o, &e); code != 0 || !strings.Contains(o.String(), "table inet portsentry") {
		t.Errorf("rules: exit %d\n%s%s", code, o.String(), e.String())
	}
}

func TestImportOutputFile(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "portsentry.yaml")
	// Flags after the conf work too.
	code, stdout, stderr := impRun(t, "../../testdata/legacy/classic-1.2-full.conf", "--mode", "stcp", "--mode", "audp", "-o", out)
	if code != 0 || stdout != "" {
		t.Fatalf("exit %d, stdout %q\n%s", code, stdout, stderr)
	}
	impCheckStderr(t, stderr)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), "# Imported from ../../testdata/legacy/classic-1.2-full.conf (PortSentry 1.2) by portsentry-nft import.\n") ||
		!strings.Contains(string(data), "# PortSentry ran -stcp -audp (from --mode stcp,audp).") {
		t.Errorf("unexpected YAML:\n%s", data)
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("mode of %s: %v %v", out, st.Mode(), err)
	}
	var o, e bytes.Buffer
	if code := dispatch([]string{"check", "--config", out}, &o, &e); code != 0 {
		t.Errorf("check: exit %d\n%s%s", code, o.String(), e.String())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left in %s: %v", dir, entries)
	}
}

func TestImportErrorWritesNothing(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "portsentry.conf")
	if err := os.WriteFile(conf, []byte("TCP_PORTS=\"1,11\"\r\nUDP_PORTS=\"7,70000\"\r\nFOO=\"x\"\r\nBLOCK_TCP=1"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.yaml")
	code, stdout, stderr := impRun(t, "-o", out, conf)
	if code != 1 || stdout != "" {
		t.Fatalf("exit %d, stdout %q; want 1 and nothing", code, stdout)
	}
	impCheckStderr(t, stderr)
	for _, want := range []string{
		conf + ":3: warning: unknown key FOO",
		conf + ":4: error: BLOCK_TCP: the value must be in double quotes: `BLOCK_TCP=1`",
	} {
		if !strings.Contains(stderr, want+"\n") && !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("%s was written: %v", out, err)
	}

	// Fixing the syntax reveals the value error, still with file:line.
	if err := os.WriteFile(conf, []byte("TCP_PORTS=\"1,11\"\nUDP_PORTS=\"7,70000\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = impRun(t, "-o", out, conf)
	if code != 1 || stdout != "" || !strings.Contains(stderr, conf+`:2: error: UDP_PORTS: port 70000 in "70000" is outside 1-65535`) {
		t.Errorf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("%s was written: %v", out, err)
	}

	// Binary garbage is an error, not a crash.
	bin := filepath.Join(dir, "binary")
	if err := os.WriteFile(bin, []byte("\x7fELF\x02\x01\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := impRun(t, bin); code != 1 || !strings.Contains(stderr, bin+":1: error: binary data") {
		t.Errorf("binary: exit %d\n%s", code, stderr)
	}
}

func TestImportRefusesToOverwriteInput(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "portsentry.conf")
	orig := []byte("TCP_PORTS=\"1\"\n")
	if err := os.WriteFile(conf, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := impRun(t, "-o", conf, conf)
	if code != 1 || !strings.Contains(stderr, "would overwrite the conf being imported") {
		t.Errorf("exit %d\n%s", code, stderr)
	}
	if data, _ := os.ReadFile(conf); !bytes.Equal(data, orig) {
		t.Errorf("conf changed: %q", data)
	}
}

func TestImportDefaultsFile(t *testing.T) {
	dir := t.TempDir()
	defaults := filepath.Join(dir, "portsentry")
	if err := os.WriteFile(defaults, []byte("# /etc/default/portsentry\nTCP_MODE=\"atcp\"\nUDP_MODE=\"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := "../../testdata/legacy/classic-1.2-full.conf"
	code, stdout, stderr := impRun(t, "--defaults", defaults, conf)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "# PortSentry ran -atcp (from "+defaults+").") ||
		!strings.Contains(stdout, "# UDP: PortSentry did not watch UDP") {
		t.Errorf("modes not taken from %s:\n%s", defaults, stdout)
	}
	if !strings.Contains(stderr, conf+":6: warning: UDP_PORTS is not imported: UDP is not monitored") {
		t.Errorf("stderr:\n%s", stderr)
	}

	// --mode wins, with a warning naming the defaults file.
	code, stdout, stderr = impRun(t, "--defaults", defaults, "--mode", "stcp,sudp", conf)
	if code != 0 || !strings.Contains(stdout, "# PortSentry ran -stcp -sudp (from --mode stcp,sudp).") ||
		!strings.Contains(stderr, defaults+": warning: --mode stcp,sudp overrides TCP_MODE/UDP_MODE of this file (-atcp)") {
		t.Errorf("exit %d\n%s\n%s", code, stdout, stderr)
	}

	// A bad defaults file is an error with its line.
	if err := os.WriteFile(defaults, []byte("TCP_MODE=\"fast\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = impRun(t, "--defaults", defaults, conf)
	if code != 1 || stdout != "" || !strings.Contains(stderr, defaults+`:1: error: TCP_MODE="fast" is not a valid mode`) {
		t.Errorf("exit %d\n%s\n%s", code, stdout, stderr)
	}
}

func TestImportDialectFlag(t *testing.T) {
	conf := "../../testdata/legacy/psionic-2.0-beta.conf"
	code, stdout, stderr := impRun(t, "--dialect", "1.2", "--ignore", "../../testdata/legacy/psionic-2.0-beta.ignore", conf)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "(PortSentry 1.2)") || !strings.Contains(stdout, "Dialect: forced with --dialect.") {
		t.Errorf("dialect not forced:\n%s", stdout)
	}
	// 1.2 reads the first of the duplicate lists: the comprehensive ones.
	if !strings.Contains(stderr, conf+":15: warning: TCP_PORTS is set on lines 11 and 15; line 11 wins") ||
		!strings.Contains(stderr, conf+":7: warning: unknown key INTERFACE") {
		t.Errorf("stderr:\n%s", stderr)
	}
}

func TestImportUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "want exactly one portsentry.conf, got 0"},
		{[]string{"a.conf", "b.conf"}, 2, "want exactly one portsentry.conf, got 2"},
		{[]string{"--mode", "xtcp", "a.conf"}, 2, `--mode: unknown mode "xtcp"`},
		{[]string{"--dialect", "3.0", "a.conf"}, 2, `unknown dialect "3.0"`},
		{[]string{"--help"}, 0, "Usage: portsentry-nft import"},
		{[]string{"/nonexistent/portsentry.conf"}, 1, "/nonexistent/portsentry.conf: error: open: no such file or directory"},
	} {
		code, stdout, stderr := impRun(t, tc.args...)
		if code != tc.code || stdout != "" || !strings.Contains(stderr, tc.want) {
			t.Errorf("import %q: exit %d, stdout %q, stderr:\n%s\nwant exit %d and %q", tc.args, code, stdout, stderr, tc.code, tc.want)
		}
	}
}

func TestImportStdin(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "conf")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("INTERFACE=\"eth0\"\nTCP_PORTS=\"1,11\"\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	stdin := os.Stdin
	os.Stdin = f
	defer func() { os.Stdin = stdin; f.Close() }()
	code, stdout, stderr := impRun(t, "-")
	if code != 0 || !strings.HasPrefix(stdout, "# Imported from <stdin> (PortSentry 2.0 beta)") || !strings.Contains(stdout, "interfaces: [eth0]") {
		t.Errorf("exit %d\n%s\n%s", code, stdout, stderr)
	}
}
