package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version and commit are set by the Makefile with -ldflags -X.
var (
	version = "dev"
	commit  = ""
)

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", "", "Prints the version, the commit it was built from and the Go version.", stderr)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	c := commit
	if c == "" {
		c = "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					c = s.Value
				}
			}
		}
	}
	fmt.Fprintf(stdout, "portsentry-nft %s (commit %s, %s)\n", version, c, runtime.Version())
	return 0
}
