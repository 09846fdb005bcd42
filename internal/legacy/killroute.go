package legacy

import (
	"path"
	"slices"
	"strings"
)

// recognizeKillRoute reports whether a KILL_ROUTE command only drops or
// filters $TARGET$ with a route or packet-filter tool, which portsentry-nft's
// native blocking (the nftables set inet portsentry blocked) replaces. tool
// names what was recognised: route, ipfwadm, ipchains, iptables, ipf, ipfw,
// pf or nft.
//
// Recognised forms: one such command; several joined with && or ; (the
// iptables DROP + LOG pair of the 1.2 conf); and echo/printf of a rule piped
// into "ipf -f -" or "pfctl -f -" (the OpenBSD ipf form).
func recognizeKillRoute(cmd string) (tool string, ok bool) {
	toks, _, err := lexShell(cmd)
	if err != nil {
		return "", false
	}
	cmds, ok := simpleCommands(toks)
	if !ok {
		return "", false
	}
	// echo 'block in ... from $TARGET$/32 to any' | ipf -f -
	if len(cmds) == 2 && cmds[1].after == "|" {
		return pipedRule(cmds[0].words, cmds[1].words)
	}
	// One or more blocking commands joined by && or ;.
	for i, c := range cmds {
		if i > 0 && c.after != "&&" && c.after != ";" {
			return "", false
		}
		t := classifyBlock(c.words)
		if t == "" {
			return "", false
		}
		if i == 0 {
			tool = t
		}
	}
	return tool, tool != ""
}

// simple is one simple command of a line, and the operator that joined it
// to the one before.
type simple struct {
	words []string
	after string
}

// simpleCommands splits a line's tokens into simple commands, dropping
// redirections (>/dev/null, 2>&1) and sudo/doas/... in front; false for
// what a kill command is not (subshells, case, an empty command).
func simpleCommands(toks []token) ([]simple, bool) {
	var cmds []simple
	cur := simple{}
	skipNext := false
	for _, t := range toks {
		switch {
		case t.op == "|" || t.op == "&&" || t.op == ";" || t.op == "||" || t.op == "&":
			cmds = append(cmds, cur)
			cur = simple{after: t.op}
		case t.op != "":
			if t.op == "(" || t.op == ")" || t.op == ";;" {
				return nil, false
			}
			skipNext = true
		case skipNext:
			skipNext = false
		default:
			cur.words = append(cur.words, t.word)
		}
	}
	cmds = append(cmds, cur)
	for i := range cmds {
		cmds[i].words = stripPrefixCmds(cmds[i].words)
		if len(cmds[i].words) == 0 {
			return nil, false
		}
	}
	return cmds, true
}

// pipedRule recognises echo/printf of a rule with $TARGET$ piped into
// "ipf -f -" or "pfctl -f -".
func pipedRule(src, dst []string) (string, bool) {
	feeder := path.Base(src[0])
	if (feeder == "echo" || feeder == "printf") && hasTarget(src[1:]) && slices.Contains(dst[1:], "-f") {
		switch path.Base(dst[0]) {
		case "ipf":
			return "ipf", true
		case "pfctl":
			return "pf", true
		}
	}
	return "", false
}

// stripPrefixCmds drops sudo/doas/command/exec in front of a command.
func stripPrefixCmds(w []string) []string {
	for len(w) > 0 {
		switch path.Base(w[0]) {
		case "sudo", "doas", "command", "exec", "nice":
			w = w[1:]
			continue
		}
		return w
	}
	return w
}

func hasTarget(words []string) bool {
	return slices.ContainsFunc(words, func(w string) bool { return strings.Contains(w, "$TARGET$") })
}

// classifyBlock names the tool of one simple command that blocks $TARGET$, or "".
func classifyBlock(w []string) string {
	if len(w) < 2 || !hasTarget(w[1:]) {
		return ""
	}
	args := w[1:]
	has := func(s ...string) bool {
		return slices.ContainsFunc(args, func(a string) bool { return slices.Contains(s, a) })
	}
	joined := " " + strings.Join(args, " ") + " "
	prog := path.Base(w[0])
	switch {
	case prog == "route":
		// route add [-host|-net] $TARGET$ (gw X | reject | -blackhole | X)
		if has("add") {
			return "route"
		}
	case prog == "ip":
		// ip [-4|-6] route add|replace blackhole|unreachable|prohibit $TARGET$
		if has("route", "r", "ro", "rou", "rout") && has("add", "replace", "a") && has("blackhole", "unreachable", "prohibit") {
			return "route"
		}
	case prog == "ipfwadm":
		return "ipfwadm"
	case prog == "ipchains":
		return "ipchains"
	case strings.HasPrefix(prog, "iptables"), strings.HasPrefix(prog, "ip6tables"):
		return "iptables"
	case prog == "ipfw":
		if has("add") {
			return "ipfw"
		}
	case prog == "pfctl":
		// pfctl -t TABLE -T add $TARGET$
		if has("-T") && has("add") {
			return "pf"
		}
	case prog == "nft":
		if strings.Contains(joined, " add element ") ||
			(strings.Contains(joined, " rule ") && (strings.Contains(joined, " add ") || strings.Contains(joined, " insert ")) &&
				(strings.Contains(joined, " drop ") || strings.Contains(joined, " reject "))) {
			return "nft"
		}
	}
	return ""
}
