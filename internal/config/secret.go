package config

import (
	"encoding/json"
	"fmt"
)

// Secret is a value the configuration holds but never shows: fleet.password
// (inline, or read from fleet.password_file). Printed with any fmt verb, as
// a log attribute or as JSON it is "[redacted]", so a configuration logged
// or dumped whole gives nothing away; Reveal is the one way to the value,
// for the code that authenticates with it.
type Secret string

// Redacted is what a Secret prints as.
const Redacted = "[redacted]"

// Reveal returns the secret itself.
func (s Secret) Reveal() string { return string(s) }

// Format prints Redacted (or nothing, for an empty secret) whatever the
// verb: %v, %s, %q, %x and %#v alike.
func (s Secret) Format(f fmt.State, verb rune) {
	if s != "" {
		fmt.Fprint(f, Redacted)
	}
}

// MarshalJSON writes Redacted (or "" for an empty secret).
func (s Secret) MarshalJSON() ([]byte, error) {
	if s == "" {
		return []byte(`""`), nil
	}
	return json.Marshal(Redacted)
}
