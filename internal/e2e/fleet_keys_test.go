package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"
)

// exampleSeed copies the seed of user of deploy/nats (its example-keys:
// public, test fixtures) into a file of mode 0600 that the test owns, as
// a host keeps it (fleet.nkey), and returns its path.
func exampleSeed(t testing.TB, user string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../deploy/nats/example-keys", user+".nk"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), user+".nk")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// exampleAuth logs a raw connection in as user of deploy/nats.
func exampleAuth(t testing.TB, user string) nats.Option {
	t.Helper()
	o, err := nats.NkeyOptionFromSeed(exampleSeed(t, user))
	if err != nil {
		t.Fatal(err)
	}
	return o
}
