//go:build !race

package fleet

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/crypto/bcrypt"
)

// TestDeployPasswords: the example users of deploy/nats log in with
// <user>-change-me, as its README says (the other tests rely on it).
// Not built with the race detector, where each check takes seconds.
func TestDeployPasswords(t *testing.T) {
	opts, err := server.ProcessConfigFile(deployConf)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range opts.Users {
		if err := bcrypt.CompareHashAndPassword([]byte(u.Password), []byte(u.Username+"-change-me")); err != nil {
			t.Errorf("user %s: %v", u.Username, err)
		}
	}
}
