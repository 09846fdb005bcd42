package legacy

import (
	"errors"
	"fmt"
	"strings"
)

// token is a word or an operator of a shell command line.
type token struct {
	word string
	op   string // "|", "&&", ";", ">" ... ; "" for a word
}

// placeholders are the words PortSentry (and portsentry-nft) substitute;
// they look like shell variables but are not.
var placeholders = []string{"$TARGET$", "$PORT$", "$MODE$"}

// lexShell splits a command line the way POSIX sh would split it into words
// and operators (quotes and backslashes removed), without expanding
// anything. shellUse describes the first thing in the line that only a
// shell can do (an operator, a substitution, a variable, globbing, ...), or
// is "" when the words can be run as argv without a shell. err is set for a
// line sh itself would reject (an unterminated quote).
func lexShell(s string) (toks []token, shellUse string, err error) {
	var (
		b      strings.Builder
		inWord bool
	)
	use := func(what string) {
		if shellUse == "" {
			shellUse = what
		}
	}
	flush := func() {
		if inWord {
			toks = append(toks, token{word: b.String()})
			b.Reset()
			inWord = false
		}
	}
	// dollar handles a '$' at s[i]; it returns how many bytes it consumed.
	dollar := func(i int) int {
		for _, p := range placeholders {
			if strings.HasPrefix(s[i:], p) {
				b.WriteString(p)
				return len(p)
			}
		}
		switch {
		case strings.HasPrefix(s[i:], "$("):
			use("command substitution $(...)")
		case strings.HasPrefix(s[i:], "${"):
			use("variable expansion ${...}")
		case i+1 < len(s) && isVarByte(s[i+1]):
			j := i + 1
			for j < len(s) && isVarByte(s[j]) {
				j++
			}
			use("variable " + s[i:j])
		}
		b.WriteByte('$')
		return 1
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			flush()
			i++
		case c == '\\':
			if i+1 >= len(s) {
				return toks, shellUse, errors.New("ends with a backslash")
			}
			b.WriteByte(s[i+1])
			inWord = true
			i += 2
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return toks, shellUse, errors.New("unterminated single quote")
			}
			b.WriteString(s[i+1 : i+1+j])
			inWord = true
			i += j + 2
		case c == '"':
			inWord = true
			i++
			closed := false
			for i < len(s) && !closed {
				switch c := s[i]; {
				case c == '"':
					closed = true
					i++
				case c == '\\' && i+1 < len(s) && strings.IndexByte("$`\"\\\n", s[i+1]) >= 0:
					b.WriteByte(s[i+1])
					i += 2
				case c == '$':
					i += dollar(i)
				case c == '`':
					use("command substitution `...`")
					b.WriteByte(c)
					i++
				default:
					b.WriteByte(c)
					i++
				}
			}
			if !closed {
				return toks, shellUse, errors.New("unterminated double quote")
			}
		case c == '$':
			inWord = true
			i += dollar(i)
		case strings.IndexByte("|&;<>()", c) >= 0:
			flush()
			op := string(c)
			if i+1 < len(s) && (s[i+1] == c && c != '(' && c != ')' || s[i+1] == '&' && (c == '>' || c == '<')) {
				op += string(s[i+1])
			}
			use(fmt.Sprintf("the shell operator %q", op))
			toks = append(toks, token{op: op})
			i += len(op)
		case c == '`':
			use("command substitution `...`")
			b.WriteByte(c)
			inWord = true
			i++
		case c == '*' || c == '?' || c == '[':
			use(fmt.Sprintf("the wildcard %q", string(c)))
			b.WriteByte(c)
			inWord = true
			i++
		case (c == '~' || c == '#') && !inWord:
			if c == '~' {
				use("home directory expansion ~")
			} else {
				use("a # comment")
			}
			b.WriteByte(c)
			inWord = true
			i++
		case c == '=' && !inWord:
			b.WriteByte(c)
			inWord = true
			i++
		case c == '=' && len(toks) == 0 && isName(b.String()):
			use("a variable assignment " + b.String() + "=")
			b.WriteByte(c)
			i++
		default:
			b.WriteByte(c)
			inWord = true
			i++
		}
	}
	flush()
	return toks, shellUse, nil
}

func isVarByte(c byte) bool {
	return c == '_' || ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z') || ('0' <= c && c <= '9')
}

func isName(s string) bool {
	if s == "" || ('0' <= s[0] && s[0] <= '9') {
		return false
	}
	for i := range len(s) {
		if !isVarByte(s[i]) {
			return false
		}
	}
	return true
}

// splitCommand turns a PortSentry command line into argv for running
// without a shell. When the line needs a shell, argv is [/bin/sh -c line]
// and shellUse says why.
func splitCommand(line string) (argv []string, shellUse string, err error) {
	toks, shellUse, err := lexShell(line)
	if err != nil {
		return nil, "", err
	}
	if shellUse != "" {
		return []string{"/bin/sh", "-c", strings.TrimSpace(line)}, shellUse, nil
	}
	for _, t := range toks {
		argv = append(argv, t.word)
	}
	if len(argv) == 0 {
		return nil, "", errors.New("no command")
	}
	return argv, "", nil
}
