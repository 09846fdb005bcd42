package legacy

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// FuzzParseConf feeds arbitrary conf files through Parse and Import. Neither
// may panic; an error must be Diags holding at least one error (never
// ErrGenerated); a success must be YAML that config.Parse accepts. sel picks
// the dialect, the modes and whether the ignore file can be read.
// Seeds: testdata/fuzz/FuzzParseConf and the variants of variants_test.go.
func FuzzParseConf(f *testing.F) {
	for _, v := range variants {
		f.Add([]byte(v.conf), uint8(0))
	}
	f.Fuzz(func(t *testing.T, data []byte, sel uint8) {
		dialect := []Dialect{DialectAuto, Dialect12, Dialect20Beta, DialectRevived}[sel%4]
		modes := []*Modes{nil, {TCP: "atcp", UDP: "audp"}, {TCP: "stcp"}, {UDP: "sudp"}}[(sel/4)%4]
		readable := sel&16 == 0
		readFile := func(name string) ([]byte, error) {
			if !readable {
				return fakeFiles(nil)(name)
			}
			// Whatever IGNORE_FILE names reads as a small ignore file.
			return []byte("10.0.0.0/8\n192.0.2.1/24\n2001:db8::/32\n"), nil
		}
		c, err := Parse("fuzz.conf", data, dialect)
		if err != nil {
			checkDiagsErr(t, err)
			return
		}
		if c.Dialect == DialectAuto {
			t.Fatalf("Parse left the dialect on auto")
		}
		res, err := Import(c, Options{Modes: modes, ReadFile: readFile})
		if err != nil {
			checkDiagsErr(t, err)
			return
		}
		for _, w := range res.Warnings {
			if w.Severity != Warning {
				t.Fatalf("a successful import returned %s", w)
			}
		}
		if _, err := config.Parse("fuzz.yaml", res.YAML); err != nil {
			t.Fatalf("YAML fails config.Parse: %v\n%s", err, res.YAML)
		}
	})
}

func checkDiagsErr(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, ErrGenerated) {
		t.Fatal(err)
	}
	var ds Diags
	if !errors.As(err, &ds) || !ds.HasErrors() {
		t.Fatalf("error is not Diags with an error: %v", err)
	}
	for _, d := range ds {
		if strings.ContainsAny(d.String(), "\n\r") {
			t.Fatalf("diagnostic spans lines: %q", d.String())
		}
	}
}

// FuzzParseIgnore feeds arbitrary ignore files to config.ParseIgnoreFile,
// which Import uses (it lives here because this package owns the import).
// It must not panic; what it returns must be masked prefixes that read back
// the same when written one per line, and that config.Parse accepts as
// inline ignore entries.
// Seeds: testdata/fuzz/FuzzParseIgnore.
func FuzzParseIgnore(f *testing.F) {
	f.Add([]byte("127.0.0.1/32\n0.0.0.0\n"))
	f.Add([]byte("10.16.17.101/24\r\n2001:db8::1/32 # lab\r\nbackup.example.org\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, warns, err := config.ParseIgnoreFile("fuzz.ignore", data)
		if err != nil {
			var es config.Errors
			if !errors.As(err, &es) && !strings.Contains(err.Error(), "NUL") {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		var text strings.Builder
		var yaml strings.Builder
		yaml.WriteString("ignore:\n")
		for _, p := range ps {
			if !p.IsValid() || p != p.Masked() {
				t.Fatalf("prefix %v is not masked", p)
			}
			if p.Addr().Zone() != "" || p.Addr().Is4In6() {
				t.Fatalf("prefix %v has a zone or is IPv4-mapped", p)
			}
			fmt.Fprintf(&text, "%s\n", p)
			fmt.Fprintf(&yaml, "  - %q\n", p.String())
		}
		for _, w := range warns {
			if w.Line < 1 {
				t.Fatalf("warning without a line: %v", w)
			}
		}
		again, warns2, err := config.ParseIgnoreFile("again", []byte(text.String()))
		if err != nil || len(warns2) != 0 || len(again) != len(ps) {
			t.Fatalf("written back %q: %v, %v, %d prefixes", text.String(), err, warns2, len(again))
		}
		for i := range again {
			if again[i] != ps[i] {
				t.Fatalf("prefix %d: %v, then %v", i, ps[i], again[i])
			}
		}
		if _, err := config.Parse("fuzz.yaml", []byte(yaml.String())); err != nil {
			t.Fatalf("config.Parse rejects the entries: %v\n%s", err, yaml.String())
		}
	})
}
