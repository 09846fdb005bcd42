package keeper

import (
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/google/nftables"

	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

// Kernel is what the keeper does with table inet portsentry. The default
// (Config.Kernel nil) is nftables over netlink in Config.NetNS; tests
// give their own.
type Kernel interface {
	// Install makes the kernel's table rs in one transaction that keeps
	// every block.
	Install(rs *nft.Ruleset) error
	// UpdateInUse replaces the elements of rs's in-use sets.
	UpdateInUse(rs *nft.Ruleset) error
	// UpdateProtected replaces the elements of rs's first-strike guard
	// sets.
	UpdateProtected(rs *nft.Ruleset) error
	// Check says what of rs is missing from the kernel
	// (nft.Ruleset.Problems) and, when nothing is, the fingerprint of what
	// the kernel shows of it (nft.Ruleset.Fingerprint).
	Check(rs *nft.Ruleset) (problems []string, print []byte, err error)
	// Fingerprint is nft.Ruleset.Fingerprint of what the kernel holds.
	Fingerprint(rs *nft.Ruleset) ([]byte, error)
	// Blocked is every element of blocked and blocked6 with its time left.
	Blocked() (map[netip.Addr]time.Duration, error)
}

// nftKernel is the Kernel of a network namespace (nil: the daemon's own).
type nftKernel struct{ netns *os.File }

func (n nftKernel) Install(rs *nft.Ruleset) error { return rs.InstallIn(n.netns) }

func (n nftKernel) UpdateInUse(rs *nft.Ruleset) error {
	return n.update("update in-use ports", rs.UpdateInUse)
}

func (n nftKernel) UpdateProtected(rs *nft.Ruleset) error {
	return n.update("update protected addresses", rs.UpdateProtected)
}

// update runs f on a lasting connection; a failure to open one is told
// as what failed.
func (n nftKernel) update(what string, f func(*nftables.Conn) error) error {
	conn, err := nft.Dial(n.netns)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer conn.CloseLasting()
	return f(conn)
}

func (n nftKernel) Check(rs *nft.Ruleset) ([]string, []byte, error) {
	conn, err := nft.DialQuery(n.netns)
	if err != nil {
		return nil, nil, err
	}
	probs, err := rs.Problems(conn)
	if err != nil || len(probs) > 0 {
		return probs, nil, err
	}
	fp, err := rs.Fingerprint(conn)
	return nil, fp, err
}

func (n nftKernel) Fingerprint(rs *nft.Ruleset) ([]byte, error) {
	conn, err := nft.DialQuery(n.netns)
	if err != nil {
		return nil, err
	}
	return rs.Fingerprint(conn)
}

func (n nftKernel) Blocked() (map[netip.Addr]time.Duration, error) { return nft.Blocked(n.netns) }
