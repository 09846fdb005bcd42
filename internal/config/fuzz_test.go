package config

import (
	"slices"
	"testing"
	"time"
)

// FuzzParse: Parse never panics; it returns either a config that holds the
// invariants the rest of the program relies on, or a non-empty Errors whose
// every element names a file and, when it has a line, a column.
//
// Seeds: testdata/fuzz/FuzzParse (good-* and bad-* mirror testdata/config,
// kept in step by TestFuzzSeeds; the others are written by hand).
func FuzzParse(f *testing.F) {
	f.Add([]byte(""))
	f.Add(DefaultYAML())
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			if c != nil {
				t.Fatal("Parse returned a config with an error")
			}
			es, ok := err.(Errors)
			if !ok {
				t.Fatalf("error is %T, want config.Errors: %v", err, err)
			}
			if len(es) == 0 {
				t.Fatal("empty config.Errors")
			}
			for _, e := range es {
				switch {
				case e == nil:
					t.Fatal("nil *Error in Errors")
				case e.File == "":
					t.Fatalf("error without a file: %+v", e)
				case e.Line < 0 || e.Column < 0:
					t.Fatalf("negative position: %+v", e)
				case e.Line > 0 && e.Column == 0:
					t.Fatalf("line without a column: %+v", e)
				case e.Msg == "":
					t.Fatalf("error without a message: %+v", e)
				}
				_ = e.Error()
			}
			return
		}
		if c == nil {
			t.Fatal("Parse returned neither a config nor an error")
		}
		if c.File != "fuzz.yaml" {
			t.Errorf("File = %q", c.File)
		}
		if len(c.TCP.Monitored)+len(c.UDP.Monitored) == 0 {
			t.Error("valid config monitors no port")
		}
		for _, m := range [][]uint16{c.TCP.Monitored, c.UDP.Monitored} {
			if !slices.IsSorted(m) || len(slices.Compact(slices.Clone(m))) != len(m) || slices.Contains(m, 0) {
				t.Errorf("monitored ports not sorted, unique and non-zero: %v", m)
			}
		}
		for _, r := range []Response{c.TCP.Response, c.UDP.Response} {
			if r != ResponseLog && r != ResponseBlock && r != ResponseCommand {
				t.Errorf("response %q", r)
			}
			if r == ResponseCommand && len(c.Commands) == 0 {
				t.Error("response command without commands")
			}
		}
		if c.BlockTimeout() < time.Second || c.BlockTimeout() > 365*24*time.Hour {
			t.Errorf("block timeout %v", c.BlockTimeout())
		}
		if len(c.Interfaces) == 0 || c.AllInterfaces != (c.Interfaces[0] == "auto") {
			t.Errorf("interfaces %v, all %v", c.Interfaces, c.AllInterfaces)
		}
		for i, p := range c.IgnorePrefixes {
			if !p.IsValid() || p != p.Masked() || (i > 0 && p == c.IgnorePrefixes[i-1]) {
				t.Errorf("ignore prefixes not masked and unique: %v", c.IgnorePrefixes)
			}
		}
		if len(c.WatchAddrs) != len(c.Addresses) {
			t.Errorf("%d addresses, %d parsed", len(c.Addresses), len(c.WatchAddrs))
		}
		for _, f := range []string{c.State.Dir, c.State.HistoryFile, c.State.BlockedFile} {
			if f == "" || f[0] != '/' {
				t.Errorf("state path %q is not absolute", f)
			}
		}
		for _, cmd := range c.Commands {
			if len(cmd.Argv) == 0 || cmd.Timeout <= 0 {
				t.Errorf("command %+v", cmd)
			}
		}
		for _, w := range c.Warnings {
			if w.File == "" || (w.Line > 0 && w.Column == 0) {
				t.Errorf("malformed warning %+v", w)
			}
		}
	})
}
