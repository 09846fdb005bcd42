package main

import (
	"fmt"
	"io"

	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

func cmdRules(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("rules", "[--config FILE]",
		"Prints table inet portsentry as the daemon would install it, as nft -f input.\n"+
			"Check it with: portsentry-nft rules | nft -c -f -", stderr)
	cfg, _, code, ok := parseConfigCommand(fs, args, stderr)
	if !ok {
		return code
	}
	fmt.Fprint(stdout, nft.Build(cfg).Text())
	return 0
}
