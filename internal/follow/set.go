package follow

import (
	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
)

// Set is the followers every ledger has, in PortSentry's order; a
// follower of another package (the fleet's) is appended by the daemon.
type Set struct {
	HostsDeny *HostsDeny
	Lines     Lines
	Commands  *Commands
}

// NewSet makes the followers; settings is the configuration in force.
func NewSet(settings func() *config.Config, log *alert.Log) *Set {
	return &Set{
		HostsDeny: &HostsDeny{Settings: settings, Log: log},
		Lines:     Lines{Log: log},
		Commands:  &Commands{Settings: settings, Log: log},
	}
}

// Wire puts the followers in c: hosts.deny as the record is written (its
// line goes into the record), the lines and the commands once it is on
// disk, and the commands that are not followers (first, response).
func (s *Set) Wire(c *ledger.Config) {
	c.Commands = s.Commands
	c.Followers = append(c.Followers, s.HostsDeny)
	c.Announcers = append(c.Announcers, s.Lines, s.Commands)
}
