package legacy

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// maxErrors caps the errors Parse reports for one file, so that feeding it
// a binary file gives a short answer.
const maxErrors = 20

// Line is one KEY="value" setting of a conf file.
type Line struct {
	Num   int    // 1-based line number
	Key   string // as written
	Value string // between the double quotes, as written
	Text  string // the whole line, without surrounding white space

	indented bool
}

// Conf is a parsed conf file: every setting line and, for each key, the one
// line the dialect puts in force.
type Conf struct {
	// Name is the file name used in messages and in the YAML header.
	Name string
	// Dialect is the dialect the file was read as (never DialectAuto).
	Dialect Dialect
	// DialectReason says why, e.g. "forced with --dialect" or "INTERFACE on line 7".
	DialectReason string
	// Lines are the settings in file order, duplicates and unknown keys included.
	Lines []Line

	win      map[string]int   // key -> index in Lines of the line in force
	dups     map[string][]int // key -> every index, when a key is set more than once
	warnings Diags
}

// Lookup returns the line that sets key for the conf's dialect: the first
// or the last of duplicates, as the dialect has it. Keys the dialect does
// not read are not found.
func (c *Conf) Lookup(key string) (Line, bool) {
	if !c.Dialect.knows(key) {
		return Line{}, false
	}
	i, ok := c.win[key]
	if !ok {
		return Line{}, false
	}
	return c.Lines[i], true
}

// Warnings returns what Parse noticed without stopping: duplicate and
// unknown keys, text after a closing quote.
func (c *Conf) Warnings() Diags { return append(Diags(nil), c.warnings...) }

// Parse reads a PortSentry conf file. name is used in messages. With
// DialectAuto the dialect is detected from the keys present: port ranges
// mean the revived 2.x, INTERFACE or INTERFACE_ADDRESS the 2.0 beta, and
// anything else 1.2.
//
// Malformed lines (no '=', no double quotes, an empty value, binary data)
// are errors, returned as Diags together with the warnings; values are
// checked by Import, which knows what each key becomes.
func Parse(name string, data []byte, dialect Dialect) (*Conf, error) {
	d := &diags{file: name}
	c := &Conf{Name: name, win: map[string]int{}, dups: map[string][]int{}}
	lines, ok := lexLines(d, data)
	if !ok {
		return nil, d.list
	}
	c.Lines = lines
	// Malformed lines are errors, but the well-formed ones still get their
	// duplicate and unknown-key messages, so one run shows every problem.

	c.Dialect, c.DialectReason = dialect, "forced with --dialect"
	if dialect == DialectAuto {
		c.Dialect, c.DialectReason = detect(c.Lines)
	}
	c.warnIndented(d)
	order := c.pickWinners(d)
	c.warnUnknown(d, order)
	sortDiags(d.list, name)
	c.warnings = d.list
	if d.list.HasErrors() {
		return nil, d.list
	}
	return c, nil
}

// lexLines splits data into setting lines, skipping blank lines and
// comments, and reports malformed lines to d. It returns false when the
// file is not worth reading further (binary data, too many errors): the
// dialect-dependent messages would only bury those errors.
func lexLines(d *diags, data []byte) ([]Line, bool) {
	if i := bytes.IndexByte(data, 0); i >= 0 {
		d.errorf(bytes.Count(data[:i], []byte{'\n'})+1, "binary data (a NUL byte): not a PortSentry conf file")
		return nil, false
	}
	data = bytes.TrimPrefix(data, []byte("\ufeff")) // a byte order mark from a Windows editor
	var lines []Line
	nerr := 0
	for n, raw := range bytes.Split(data, []byte{'\n'}) {
		num := n + 1
		raw = bytes.TrimSuffix(raw, []byte{'\r'})
		text := strings.TrimLeft(string(raw), " \t")
		if text == "" || text[0] == '#' {
			continue // comments may hold anything, even Latin-1 names
		}
		l, warn, msg := lexLine(text)
		if msg != "" {
			nerr++
			if nerr > maxErrors {
				d.errorf(num, "too many errors; giving up (is this a PortSentry conf file?)")
				return nil, false
			}
			d.errorf(num, "%s: %s", msg, quoteShort(text))
			continue
		}
		if warn != "" {
			d.warnf(num, "%s", warn)
		}
		l.Num = num
		l.indented = len(text) < len(raw)
		lines = append(lines, l)
	}
	return lines, true
}

// warnIndented warns about indented settings: 2.x refused them and the
// older dialects never saw them, but the import reads them, so the result
// may differ from what PortSentry did.
func (c *Conf) warnIndented(d *diags) {
	for _, l := range c.Lines {
		if !l.indented {
			continue
		}
		if c.Dialect == DialectRevived {
			d.warnf(l.Num, "%s is indented; PortSentry 2.x refuses indented settings, this one is imported anyway", l.Key)
		} else {
			d.warnf(l.Num, "%s is indented; %s did not see indented settings (it compares the key at the start of the line), this one is imported anyway", l.Key, c.Dialect.Title())
		}
	}
}

// pickWinners fills c.win with the line of each key in force (first or
// last, as the dialect has it) and c.dups with the keys set more than
// once, warning about duplicates of known keys. It returns the keys in
// the order first seen, so later messages follow the file.
func (c *Conf) pickWinners(d *diags) []string {
	order := []string{}
	for i, l := range c.Lines {
		if _, seen := c.dups[l.Key]; !seen {
			order = append(order, l.Key)
		}
		c.dups[l.Key] = append(c.dups[l.Key], i)
	}
	for _, key := range order {
		idx := c.dups[key]
		if len(idx) == 1 {
			c.win[key] = idx[0]
			delete(c.dups, key)
			continue
		}
		w := idx[len(idx)-1]
		if c.Dialect.winnerIsFirst() {
			w = idx[0]
		}
		c.win[key] = w
		if !c.Dialect.knows(key) {
			continue // the unknown-key message of warnUnknown is enough
		}
		nums := make([]int, len(idx))
		for j, i := range idx {
			nums[j] = c.Lines[i].Num
		}
		at := c.Lines[idx[1]].Num
		d.warnf(at, "%s is set on lines %s; line %d wins (%s)", key, joinNums(nums), c.Lines[w].Num, c.Dialect.dupRule())
	}
	return order
}

// warnUnknown reports keys the dialect does not read, once each, at the
// line in force: an error for 2.x, which refuses to start on them, a
// warning for the others, which ignored them.
func (c *Conf) warnUnknown(d *diags, order []string) {
	for _, key := range order {
		if c.Dialect.knows(key) {
			continue
		}
		l := c.Lines[c.win[key]]
		why := c.Dialect.whyUnknown(key)
		if why == "" {
			why = "not a " + c.Dialect.Title() + " key"
			if s := suggestKey(key, c.Dialect); s != "" {
				why += fmt.Sprintf("; did you mean %s?", s)
			}
		}
		if c.Dialect == DialectRevived {
			d.errorf(l.Num, "unknown key %s: %s, and PortSentry 2.x refuses to start on unknown keys (use --dialect 1.2 or 2.0-beta if this file is not for 2.x)", key, why)
		} else {
			d.warnf(l.Num, "unknown key %s: %s; %s ignored it, and it is not imported", key, why, c.Dialect.Title())
		}
	}
}

// lexLine splits KEY="value" [# comment]. It returns a warning for text
// after the closing quote, or an error message for a malformed line.
func lexLine(text string) (l Line, warn, msg string) {
	text = strings.TrimRight(text, " \t")
	l.Text = text
	if !utf8.ValidString(text) {
		return l, "", "not UTF-8 text (binary data?)"
	}
	for _, r := range text {
		if (r < 0x20 && r != '\t') || r == 0x7f {
			return l, "", fmt.Sprintf("control character %U (binary data?)", r)
		}
	}
	k := 0
	for k < len(text) && isKeyByte(text[k]) {
		k++
	}
	if k == 0 {
		return l, "", `not a KEY="value" setting`
	}
	l.Key = text[:k]
	rest := strings.TrimLeft(text[k:], " \t")
	if !strings.HasPrefix(rest, "=") {
		return l, "", fmt.Sprintf(`%s: want KEY="value"`, l.Key)
	}
	rest = strings.TrimLeft(rest[1:], " \t")
	switch {
	case rest == "" || rest == `""`:
		return l, "", fmt.Sprintf("%s has an empty value", l.Key)
	case rest[0] != '"':
		return l, "", fmt.Sprintf(`%s: the value must be in double quotes`, l.Key)
	}
	end := strings.IndexByte(rest[1:], '"')
	if end < 0 {
		return l, "", fmt.Sprintf("%s: the value has no closing quote", l.Key)
	}
	l.Value = rest[1 : 1+end]
	if strings.TrimSpace(l.Value) == "" {
		return l, "", fmt.Sprintf("%s has an empty value", l.Key)
	}
	if tail := strings.TrimSpace(rest[2+end:]); tail != "" && tail[0] != '#' {
		warn = fmt.Sprintf("%s: text after the closing quote is ignored: %q", l.Key, tail)
	}
	return l, warn, ""
}

func isKeyByte(b byte) bool {
	return b == '_' || ('A' <= b && b <= 'Z') || ('a' <= b && b <= 'z') || ('0' <= b && b <= '9')
}

// detect tells the dialect from the keys present.
func detect(lines []Line) (Dialect, string) {
	for _, l := range lines {
		if (l.Key == "TCP_PORTS" || l.Key == "UDP_PORTS") && strings.Contains(l.Value, "-") {
			return DialectRevived, fmt.Sprintf("port range in %s on line %d", l.Key, l.Num)
		}
	}
	for _, l := range lines {
		if l.Key == "INTERFACE" || l.Key == "INTERFACE_ADDRESS" {
			return Dialect20Beta, fmt.Sprintf("%s on line %d", l.Key, l.Num)
		}
	}
	return Dialect12, "no port ranges and no INTERFACE keys"
}

// suggestKey returns the known key closest to key (case and typos), or "".
func suggestKey(key string, d Dialect) string {
	up := strings.ToUpper(key)
	best, bestD := "", len(key)/3+1
	for _, k := range d.Keys() {
		if k == up {
			return k
		}
		if dist := config.EditDistance(up, k); dist < bestD {
			best, bestD = k, dist
		}
	}
	return best
}

// joinNums writes 3, 5 and 9.
func joinNums(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = fmt.Sprint(n)
	}
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// shorten keeps long texts readable in messages and comments: the start
// and the end, with "..." between.
func shorten(s string) string {
	const head, tail = 64, 24
	r := []rune(s)
	if len(r) <= head+tail+3 {
		return s
	}
	return string(r[:head]) + "..." + string(r[len(r)-tail:])
}

// quoteShort quotes a (shortened) line for a message, escaping what would
// not print (a message is always one line).
func quoteShort(s string) string {
	s = shorten(s)
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) || r == '`' {
			return strconv.QuoteToASCII(s)
		}
	}
	return "`" + s + "`"
}
