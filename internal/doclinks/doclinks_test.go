package doclinks

import (
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// root is the repository, seen from this package's directory.
const root = "../.."

// TestLinks: every relative link and anchor of the repository's Markdown
// files resolves; and the check does fail on a broken one.
func TestLinks(t *testing.T) {
	t.Run("repository", func(t *testing.T) {
		files := markdownFiles(t, root)
		for _, want := range []string{"README.md", "docs/architecture.md", "docs/log-lines.md", "docs/metrics.md"} {
			if !slices.Contains(files, want) {
				t.Fatalf("%s is not among the documents found: %v", want, files)
			}
		}
		n := 0
		for _, f := range files {
			text, err := os.ReadFile(filepath.Join(root, f))
			if err != nil {
				t.Fatal(err)
			}
			n += len(links(string(text)))
		}
		if n < 50 {
			t.Fatalf("only %d links found in %v: the reading of links is broken", n, files)
		}
		t.Logf("%d links in %d documents", n, len(files))
		for _, err := range check(root, files) {
			t.Error(err)
		}
	})
	t.Run("synthetic broken document", syntheticDocuments)
}

// syntheticDocuments: the check finds each kind of broken link in a
// made-up document, and passes the links that are right, however they are
// written.
func syntheticDocuments(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("docs/target.md", "# Target\n\n## Keys\n\n## Keys\n\n### First strike: the kernel's `add @blocked`, *fast*\n\n<a id=\"by-hand\"></a>\n\nNot a heading:\n\n```\n## Fenced\n```\n")
	write("data.txt", "text\n")
	write("good.md", strings.Join([]string{
		"# Good",
		"",
		"[a file](docs/target.md), [a heading](docs/target.md#keys), [its twin](docs/target.md#keys-1),",
		"[punctuation and code](docs/target.md#first-strike-the-kernels-add-blocked-fast), [an id](docs/target.md#by-hand),",
		"[here](#good), [a directory](docs/), [a file](data.txt), [the web](https://example.org/x#y), <https://example.org>,",
		"[a link whose text is `code`](docs/target.md) and a link that",
		"[wraps over two",
		"lines](docs/target.md#keys).",
		"",
		"`[in a code span](missing.md)`, ``[in a longer `span`](missing.md)``, and a span that",
		"wraps `[over two",
		"lines](missing.md)`.",
		"",
		"```",
		"[in a fence](missing.md)",
		"```",
		"",
		"[ref]: docs/target.md#keys",
	}, "\n"))
	if errs := check(dir, []string{"good.md"}); len(errs) > 0 {
		t.Errorf("a good document fails:\n%v", joinErrs(errs))
	}

	write("bad.md", strings.Join([]string{
		"# Bad",
		"",
		"[no such file](docs/missing.md), [no such heading](docs/target.md#nowhere),",
		"[no such heading here](#bad-1), [a heading in a fence](docs/target.md#fenced),",
		"[an anchor into a text file](data.txt#L1), [out of the tree](../outside.md),",
		"| a table | [a bad link in it](docs/target.md#key) |",
		"",
		"[ref]: docs/gone.md",
	}, "\n"))
	errs := check(dir, []string{"bad.md"})
	for _, want := range []string{"docs/missing.md", "docs/target.md#nowhere", "#bad-1", "docs/target.md#fenced",
		"data.txt#L1", "../outside.md", "docs/target.md#key", "docs/gone.md"} {
		found := false
		for _, err := range errs {
			found = found || strings.Contains(err.Error(), "link ("+want+")")
		}
		if !found {
			t.Errorf("the broken link %s is not reported; reported:\n%v", want, joinErrs(errs))
		}
	}
	if len(errs) != 8 {
		t.Errorf("%d errors, want 8:\n%v", len(errs), joinErrs(errs))
	}
}

func joinErrs(errs []error) string {
	var b strings.Builder
	for _, err := range errs {
		fmt.Fprintf(&b, "\t%v\n", err)
	}
	return b.String()
}

// TestSlug: headings become the ids GitHub gives them.
func TestSlug(t *testing.T) {
	for heading, want := range map[string]string{
		"Reactions, state and safety":                                    "reactions-state-and-safety",
		"First strike: the kernel blocks in the probe's own packet path": "first-strike-the-kernel-blocks-in-the-probes-own-packet-path",
		"Ports a scanner learns, first strike":                           "ports-a-scanner-learns-first-strike",
		"The `fleet:` section":                                           "the-fleet-section",
		"[Link](x.md) and **bold** text":                                 "link-and-bold-text",
		"Names fixed for users":                                          "names-fixed-for-users",
		"snake_case and 1-2-3":                                           "snake_case-and-1-2-3",
		"Über  zwei":                                                     "über--zwei",
	} {
		if got := slug(heading); got != want {
			t.Errorf("slug(%q) = %q, want %q", heading, got, want)
		}
	}
}

// TestCodeMapNamesEveryPackage: the code map of docs/architecture.md has
// a row for every directory of Go files under internal/ and cmd/, and
// names no package that is not there.
func TestCodeMapNamesEveryPackage(t *testing.T) {
	text, err := os.ReadFile(filepath.Join(root, "docs/architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := sectionOf(string(text), "## Code map")
	if section == "" {
		t.Fatal("docs/architecture.md has no section ## Code map")
	}
	var pkgs []string
	for _, top := range []string{"internal", "cmd"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == "testdata" {
				return filepath.SkipDir
			}
			if !d.IsDir() && strings.HasSuffix(p, ".go") {
				rel, _ := filepath.Rel(root, filepath.Dir(p))
				if pkg := filepath.ToSlash(rel); !slices.Contains(pkgs, pkg) {
					pkgs = append(pkgs, pkg)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(pkgs) < 20 {
		t.Fatalf("found only %d packages: %v", len(pkgs), pkgs)
	}
	row := regexp.MustCompile("(?m)^\\| `((?:internal|cmd)/[^`]+)` \\|")
	var named []string
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		named = append(named, m[1])
	}
	for _, p := range pkgs {
		if !slices.Contains(named, p) {
			t.Errorf("the code map of docs/architecture.md has no row for %s", p)
		}
	}
	for _, n := range named {
		if !slices.Contains(pkgs, n) {
			t.Errorf("the code map of docs/architecture.md names %s, which is not a package", n)
		}
	}
}

// sectionOf is the text of the section that starts with the line heading,
// up to the next heading of the same or a higher level.
func sectionOf(text, heading string) string {
	level := strings.IndexFunc(heading, func(r rune) bool { return r != '#' })
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if l != heading {
			continue
		}
		end := len(lines)
		for j := i + 1; j < len(lines); j++ {
			if n := strings.IndexFunc(lines[j], func(r rune) bool { return r != '#' }); n > 0 && n <= level && lines[j][n] == ' ' {
				end = j
				break
			}
		}
		return strings.Join(lines[i:end], "\n")
	}
	return ""
}

// markdownFiles lists the repository's Markdown files, relative to dir.
func markdownFiles(t *testing.T, dir string) []string {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != dir && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// check returns an error for each link of files (relative to dir) that
// does not resolve.
func check(dir string, files []string) []error {
	var errs []error
	anchors := map[string]map[string]bool{} // by file, relative to dir
	anchorsOf := func(file string) (map[string]bool, error) {
		if a, ok := anchors[file]; ok {
			return a, nil
		}
		text, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return nil, err
		}
		a := headingIDs(string(text))
		anchors[file] = a
		return a, nil
	}
	for _, file := range files {
		text, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, l := range links(string(text)) {
			if err := resolve(dir, file, l.target, anchorsOf); err != nil {
				errs = append(errs, fmt.Errorf("%s:%d: link (%s): %w", file, l.line, l.target, err))
			}
		}
	}
	return errs
}

var scheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)

// resolve checks one link target of file.
func resolve(dir, file, target string, anchorsOf func(string) (map[string]bool, error)) error {
	if scheme.MatchString(target) || strings.HasPrefix(target, "//") {
		return nil // the web, mail: not checked here
	}
	path, frag, _ := strings.Cut(target, "#")
	path, err := url.PathUnescape(path)
	if err != nil {
		return err
	}
	to := file
	if path != "" {
		to = filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(file), path)))
		if to == ".." || strings.HasPrefix(to, "../") || filepath.IsAbs(path) {
			return fmt.Errorf("%s is outside the repository", path)
		}
		if _, err := os.Stat(filepath.Join(dir, to)); err != nil {
			return fmt.Errorf("no file %s", to)
		}
	}
	if frag == "" {
		return nil
	}
	if !strings.HasSuffix(to, ".md") {
		return fmt.Errorf("an anchor into %s, which is not Markdown: it cannot be checked", to)
	}
	ids, err := anchorsOf(to)
	if err != nil {
		return err
	}
	if !ids[frag] {
		return fmt.Errorf("%s has no heading with the id %q", to, frag)
	}
	return nil
}

type link struct {
	line   int
	target string
}

var (
	inlineLink = regexp.MustCompile(`\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)`)
	refLink    = regexp.MustCompile(`(?m)^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?`)
	fence      = regexp.MustCompile("^ {0,3}(```+|~~~+)")
)

// links returns the link targets of a Markdown text, outside code:
// inline links and images, and reference definitions.
func links(text string) []link {
	var out []link
	for _, p := range paragraphs(text) {
		masked := maskCode(p.text)
		for _, re := range []*regexp.Regexp{inlineLink, refLink} {
			for _, m := range re.FindAllStringSubmatchIndex(masked, -1) {
				out = append(out, link{line: p.line + strings.Count(masked[:m[0]], "\n"), target: masked[m[2]:m[3]]})
			}
		}
	}
	slices.SortStableFunc(out, func(a, b link) int { return a.line - b.line })
	return out
}

type paragraph struct {
	line int // of its first line, from 1
	text string
}

// paragraphs splits text into runs of non-blank lines outside fenced
// code blocks (a code span may wrap within a paragraph, not across one).
func paragraphs(text string) []paragraph {
	var out []paragraph
	var cur []string
	start := 0
	flush := func() {
		if len(cur) > 0 {
			out = append(out, paragraph{start, strings.Join(cur, "\n")})
			cur = nil
		}
	}
	open := ""
	for i, l := range strings.Split(text, "\n") {
		if m := fence.FindStringSubmatch(l); m != nil {
			switch {
			case open == "":
				flush()
				open = m[1]
				continue
			case m[1][0] == open[0] && len(m[1]) >= len(open) && strings.TrimSpace(l[strings.Index(l, m[1])+len(m[1]):]) == "":
				open = ""
				continue
			}
		}
		if open != "" {
			continue
		}
		if strings.TrimSpace(l) == "" {
			flush()
			continue
		}
		if len(cur) == 0 {
			start = i + 1
		}
		cur = append(cur, l)
	}
	flush()
	return out
}

// maskCode replaces the content of code spans with x, so that nothing in
// them reads as a link; the text keeps its lines.
func maskCode(s string) string {
	b := []byte(s)
	run := func(i int) int {
		n := 0
		for i+n < len(b) && b[i+n] == '`' {
			n++
		}
		return n
	}
	for i := 0; i < len(b); {
		n := run(i)
		if n == 0 {
			i++
			continue
		}
		// Find the closing run of exactly n backticks.
		end := -1
		for j := i + n; j < len(b); {
			if m := run(j); m > 0 {
				if m == n {
					end = j
					break
				}
				j += m
				continue
			}
			j++
		}
		if end < 0 {
			i += n // no closing run: literal backticks
			continue
		}
		for k := i + n; k < end; k++ {
			if b[k] != '\n' {
				b[k] = 'x'
			}
		}
		i = end + n
	}
	return string(b)
}

var (
	atx      = regexp.MustCompile(`^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$`)
	setext   = regexp.MustCompile(`^ {0,3}(?:=+|-+)[ \t]*$`)
	htmlID   = regexp.MustCompile(`<a\s+(?:[^>]*\s)?(?:id|name)="([^"]+)"`)
	mdLink   = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
	emphasis = strings.NewReplacer("*", "")
)

// headingIDs returns the ids of a Markdown text's headings (ATX and
// setext, outside fenced code), as GitHub makes them, and of its HTML
// anchors.
func headingIDs(text string) map[string]bool {
	ids := map[string]bool{}
	add := func(base string) {
		id := base
		for n := 1; ids[id]; n++ {
			id = fmt.Sprintf("%s-%d", base, n)
		}
		ids[id] = true
	}
	for _, p := range paragraphs(text) {
		lines := strings.Split(p.text, "\n")
		for i, l := range lines {
			if m := atx.FindStringSubmatch(l); m != nil {
				add(slug(m[1]))
			} else if i > 0 && setext.MatchString(l) && !strings.Contains(lines[i-1], "|") {
				add(slug(strings.Join(lines[:i], " ")))
			}
			for _, m := range htmlID.FindAllStringSubmatch(l, -1) {
				ids[m[1]] = true
			}
		}
	}
	return ids
}

// slug is the id GitHub gives a heading: its text (links become their
// text, code spans their content, emphasis goes), lower case, with every
// character but letters, digits, marks, '-' and '_' dropped and each
// space made a '-'.
func slug(heading string) string {
	text := mdLink.ReplaceAllString(heading, "$1")
	text = emphasis.Replace(strings.ReplaceAll(text, "`", ""))
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(text)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
