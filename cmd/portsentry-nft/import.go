package main

import (
	"fmt"
	"io"
)

// cmdImport is written in the legacy-import work; this placeholder keeps the build whole.
func cmdImport(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "portsentry-nft import: not implemented yet")
	return 1
}
