package legacy

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Severity tells a warning (the import goes on) from an error (it stops).
type Severity int

// Severities.
const (
	Warning Severity = iota
	Error
)

func (s Severity) String() string {
	if s == Error {
		return "error"
	}
	return "warning"
}

// Diag is one message about an input file, located at a line when it has one.
type Diag struct {
	File     string
	Line     int // 1-based; 0 when the message is about the whole file
	Severity Severity
	Msg      string
}

// String formats the diagnostic as "file:line: warning: message".
func (d Diag) String() string {
	if d.Line > 0 {
		return fmt.Sprintf("%s:%d: %s: %s", d.File, d.Line, d.Severity, d.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", d.File, d.Severity, d.Msg)
}

// Diags is the error Parse, ParseDefaults and Import return: every
// diagnostic they produced, warnings included, at least one of them an error.
type Diags []Diag

func (ds Diags) Error() string {
	lines := make([]string, len(ds))
	for i, d := range ds {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// HasErrors reports whether at least one diagnostic is an error.
func (ds Diags) HasErrors() bool {
	return slices.ContainsFunc(ds, func(d Diag) bool { return d.Severity == Error })
}

// ErrGenerated is wrapped by the error Import returns when the YAML it built
// fails config.Parse. That is a bug in this package, never the input's fault.
var ErrGenerated = errors.New("legacy: generated YAML does not pass validation (please report this bug)")

// diags collects diagnostics about one file.
type diags struct {
	file string
	list Diags
}

func (d *diags) warnf(line int, format string, args ...any) {
	d.list = append(d.list, Diag{File: d.file, Line: line, Severity: Warning, Msg: fmt.Sprintf(format, args...)})
}

func (d *diags) errorf(line int, format string, args ...any) {
	d.list = append(d.list, Diag{File: d.file, Line: line, Severity: Error, Msg: fmt.Sprintf(format, args...)})
}

// sortDiags orders diagnostics by file (first appearance of primary, then
// the others by name) and line, keeping the order of equal ones.
func sortDiags(ds Diags, primary string) {
	rank := func(d Diag) int {
		if d.File == primary {
			return 0
		}
		return 1
	}
	slices.SortStableFunc(ds, func(a, b Diag) int {
		if c := cmp.Compare(rank(a), rank(b)); c != 0 {
			return c
		}
		if c := cmp.Compare(a.File, b.File); c != 0 {
			return c
		}
		return cmp.Compare(a.Line, b.Line)
	})
}
