package main

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
)

// completion reads the other commands, so it joins the table at init.
func init() {
	commands["completion"] = command{"print the bash or zsh completion script", cmdCompletion}
}

// cmdCompletion prints a shell completion script. The commands and their
// flags are read from the commands themselves (their --help), so the
// script cannot drift from the binary.
func cmdCompletion(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("completion", "bash|zsh",
		"Prints the completion script of a shell. The .deb and make install put them where bash and zsh look;\n"+
			"by hand: portsentry-nft completion bash > /etc/bash_completion.d/portsentry-nft", stderr)
	pos, code, ok := parseArgs(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 || (pos[0] != "bash" && pos[0] != "zsh") {
		fs.Usage()
		return 2
	}
	specs := commandSpecs()
	if pos[0] == "bash" {
		writeBash(stdout, specs)
	} else {
		writeZsh(stdout, specs)
	}
	return 0
}

// commandSpec is what completion knows of one command.
type commandSpec struct {
	name, summary string
	flags         []string // "--config", ...
	fileFlags     []string // flags whose value is a file
}

// commandSpecs asks every command for its --help and reads the flags off it.
func commandSpecs() []commandSpec {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	slices.Sort(names)
	var out []commandSpec
	for _, n := range names {
		if n == "completion" {
			out = append(out, commandSpec{name: n, summary: commands[n].summary})
			continue
		}
		var help bytes.Buffer
		commands[n].run([]string{"--help"}, io.Discard, &help)
		spec := commandSpec{name: n, summary: commands[n].summary}
		for _, line := range strings.Split(help.String(), "\n") {
			// flag.PrintDefaults: "  -name value" or "  -name".
			f := strings.Fields(line)
			if !strings.HasPrefix(line, "  -") || len(f) == 0 {
				continue
			}
			flag := "-" + f[0]
			if len(f[0]) == 2 {
				flag = f[0] // a one-letter flag: -o
			}
			spec.flags = append(spec.flags, flag)
			if len(f) > 1 && slices.Contains([]string{"FILE", "F", "OUT", "S", "file", "socket"}, f[1]) {
				spec.fileFlags = append(spec.fileFlags, flag)
			}
		}
		out = append(out, spec)
	}
	return out
}

func writeBash(w io.Writer, specs []commandSpec) {
	var names []string
	for _, s := range specs {
		names = append(names, s.name)
	}
	fmt.Fprintf(w, `# bash completion for portsentry-nft (portsentry-nft completion bash)
_portsentry_nft() {
	local cur prev cmd opts files
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD-1]}
	if [ "$COMP_CWORD" -eq 1 ]; then
		COMPREPLY=($(compgen -W %q -- "$cur"))
		return
	fi
	cmd=${COMP_WORDS[1]}
	case "$cmd" in
`, strings.Join(names, " "))
	for _, s := range specs {
		args := ""
		switch s.name {
		case "completion":
			args = "bash zsh"
		case "fleet":
			args = "block unblock list setup"
		}
		fmt.Fprintf(w, "\t%s) opts=%q; files=%q; args=%q ;;\n", s.name, strings.Join(s.flags, " "), strings.Join(s.fileFlags, " "), args)
	}
	fmt.Fprint(w, `	*) return ;;
	esac
	case " $files " in
	*" $prev "*) COMPREPLY=($(compgen -f -- "$cur")); return ;;
	esac
	if [[ "$cur" == -* ]]; then
		COMPREPLY=($(compgen -W "$opts" -- "$cur"))
	elif [ -n "$args" ]; then
		COMPREPLY=($(compgen -W "$args" -- "$cur"))
	elif [ "$cmd" = import ]; then
		COMPREPLY=($(compgen -f -- "$cur"))
	fi
}
complete -F _portsentry_nft portsentry-nft
`)
}

func writeZsh(w io.Writer, specs []commandSpec) {
	fmt.Fprint(w, `#compdef portsentry-nft
# zsh completion for portsentry-nft (portsentry-nft completion zsh)
_portsentry_nft() {
	local -a cmds
	cmds=(
`)
	for _, s := range specs {
		fmt.Fprintf(w, "\t\t%q\n", s.name+":"+s.summary)
	}
	fmt.Fprint(w, `	)
	if (( CURRENT == 2 )); then
		_describe 'command' cmds
		return
	fi
	local -a opts files
	case $words[2] in
`)
	for _, s := range specs {
		fmt.Fprintf(w, "\t%s) opts=(%s); files=(%s) ;;\n", s.name, strings.Join(s.flags, " "), strings.Join(s.fileFlags, " "))
	}
	fmt.Fprint(w, `	*) return ;;
	esac
	if (( ${files[(Ie)$words[CURRENT-1]]} )); then
		_files
	elif [[ $PREFIX == -* ]]; then
		compadd -a opts
	elif [[ $words[2] == completion ]]; then
		compadd bash zsh
	elif [[ $words[2] == fleet ]] && (( CURRENT == 3 )); then
		compadd block unblock list setup
	elif [[ $words[2] == import ]]; then
		_files
	fi
}
_portsentry_nft "$@"
`)
}
