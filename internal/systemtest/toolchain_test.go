package systemtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The targets that run Go tools (staticcheck in make lint, nfpm in make
// deb) pass on a machine where nothing was installed by hand: an empty
// HOME, GOPATH, module cache and build cache, and a PATH with only the Go
// toolchain and the system. The tools come from go.mod's tool directives
// (go tool NAME), so nothing lands in $GOPATH/bin. The tree under test is
// a copy of the checkout's files (committed or not, ignored ones left
// out), so the check sees what a fresh clone would.
func TestFreshMachineToolchain(t *testing.T) {
	requireEnabled(t, "make", "git", "go", "tar")
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	tree := copyCheckout(t)
	home, gopath := t.TempDir(), t.TempDir()
	env := []string{
		"PATH=" + filepath.Dir(goBin) + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + home,
		"GOPATH=" + gopath,
		"GOTOOLCHAIN=local",
	}
	for _, target := range []string{"lint", "deb"} {
		start := time.Now()
		if out, err := runWrapped(15*time.Minute, nil, env, nil, "fresh machine: ", "make", "-C", tree, target); err != nil {
			t.Fatalf("%v\n%s", err, tail(out, 40))
		}
		t.Logf("make %s from empty caches: %s", target, time.Since(start).Round(time.Second))
	}
	if ents, err := os.ReadDir(filepath.Join(gopath, "bin")); err == nil && len(ents) > 0 {
		t.Errorf("a target installed into $GOPATH/bin (%d files): tools must run with go tool", len(ents))
	}
	debs, _ := filepath.Glob(filepath.Join(tree, "bin", "portsentry-nft_*.deb"))
	if len(debs) != 1 {
		t.Errorf("make deb left %d packages in bin/, want 1", len(debs))
	}
	// The module cache is read-only: make it removable for t.TempDir.
	if _, err := runWrapped(time.Minute, nil, env, nil, "", "go", "clean", "-modcache"); err != nil {
		t.Log(err)
	}
}

// copyCheckout copies the repository's files (tracked and untracked, not
// ignored) into a new directory.
func copyCheckout(t *testing.T) string {
	t.Helper()
	ls := exec.Command("git", "-C", repoRoot, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	list, err := ls.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	dst := t.TempDir()
	var files [][]byte
	for _, f := range bytes.Split(list, []byte{0}) {
		if len(f) == 0 {
			continue
		}
		if _, err := os.Lstat(filepath.Join(repoRoot, string(f))); err != nil {
			continue // deleted in the work tree
		}
		files = append(files, f)
	}
	pack := exec.Command("tar", "-C", repoRoot, "--null", "-T", "-", "-cf", "-")
	pack.Stdin = bytes.NewReader(bytes.Join(files, []byte{0}))
	unpack := exec.Command("tar", "-C", dst, "-xf", "-")
	pipe, err := pack.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	unpack.Stdin = pipe
	var stderr strings.Builder
	pack.Stderr, unpack.Stderr = &stderr, &stderr
	if err := unpack.Start(); err != nil {
		t.Fatal(err)
	}
	if err := pack.Run(); err != nil {
		t.Fatalf("tar: %v %s", err, stderr.String())
	}
	if err := unpack.Wait(); err != nil {
		t.Fatalf("tar -x: %v %s", err, stderr.String())
	}
	// The Makefile's version comes from git: give the copy a repository.
	for _, args := range [][]string{{"init", "-q"}, {"add", "-A"}, {"-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"}} {
		c := exec.Command("git", append([]string{"-C", dst}, args...)...)
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	return dst
}
