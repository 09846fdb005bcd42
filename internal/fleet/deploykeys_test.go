package fleet

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// deployKeys holds the seeds of deploy/nats's example users (public:
// test fixtures only).
const deployKeys = "../../deploy/nats/example-keys"

// deploySeed is the seed file of user of deploy/nats.
func deploySeed(user string) string { return filepath.Join(deployKeys, user+".nk") }

// deployAuth logs a raw connection in as user of deploy/nats.
func deployAuth(t testing.TB, user string) nats.Option {
	t.Helper()
	o, err := nats.NkeyOptionFromSeed(deploySeed(user))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// asDeployUser makes a Client's configuration log in as user of
// deploy/nats, with its seed (fleet.nkey).
func asDeployUser(f *config.Fleet, user string) { f.NKey = deploySeed(user) }

// TestDeployNkeys: every user of deploy/nats and deploy/nats/leaf is an
// nkey, named in the comment above it, whose seed is
// example-keys/<name>.nk (the other tests log in with them), and the
// leaf servers log in to the hub with the seeds of leaf_a and leaf_b.
func TestDeployNkeys(t *testing.T) {
	named := regexp.MustCompile(`# (\w+): deploy/nats/example-keys/(\w+)\.nk .*\n\s*nkey: (U[A-Z0-9]+)`)
	for _, conf := range []string{"../../deploy/nats/n1.conf", "../../deploy/nats/leaf/hub1.conf", "../../deploy/nats/leaf/site-a.conf", "../../deploy/nats/leaf/site-b.conf"} {
		opts, err := server.ProcessConfigFile(conf)
		if err != nil {
			t.Fatal(err)
		}
		if len(opts.Users) != 0 || len(opts.Nkeys) == 0 {
			t.Errorf("%s: %d users with passwords, %d nkeys; want nkeys alone", conf, len(opts.Users), len(opts.Nkeys))
		}
		// The names are the comments' in the files of conf's directory.
		var text string
		files, _ := filepath.Glob(filepath.Join(filepath.Dir(conf), "*.conf"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			text += string(b)
		}
		var pubs []string
		for _, m := range named.FindAllStringSubmatch(text, -1) {
			if m[1] != m[2] || m[3] != seedPublic(t, m[1]) {
				t.Errorf("%s: user %s (seed %s.nk) has nkey %s, want its seed's public key", conf, m[1], m[2], m[3])
			}
			pubs = append(pubs, m[3])
		}
		for _, u := range opts.Nkeys {
			if !slices.Contains(pubs, u.Nkey) {
				t.Errorf("%s: nkey %s has no seed in %s named above it", conf, u.Nkey, deployKeys)
			}
		}
		for _, r := range opts.LeafNode.Remotes {
			if kp, err := nkeys.FromSeed([]byte(r.Nkey)); err != nil {
				t.Errorf("%s: leaf remote nkey: %v", conf, err)
			} else if pub, _ := kp.PublicKey(); pub != seedPublic(t, "leaf_a") && pub != seedPublic(t, "leaf_b") {
				t.Errorf("%s: the leaf logs in as %s, neither leaf_a nor leaf_b", conf, pub)
			}
		}
	}
}

// seedPublic is the public key of user's example seed.
func seedPublic(t *testing.T, user string) string {
	t.Helper()
	b, err := os.ReadFile(deploySeed(user))
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(b))))
	if err != nil {
		t.Fatalf("%s: %v", deploySeed(user), err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// writeSeed writes a new user nkey's seed to path (mode 0600) and
// returns its public key.
func writeSeed(t testing.TB, path string) string {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	return pub
}
