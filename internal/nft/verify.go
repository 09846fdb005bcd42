package nft

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/google/nftables"
)

// Problems compares the kernel with rs and describes what is missing: the
// table, a set, the chain, or rules (someone ran `nft flush ruleset`,
// deleted the table or flushed the chain). It returns nil when intact.
func (rs *Ruleset) Problems(c *nftables.Conn) ([]string, error) {
	ok, err := tableExists(c)
	if err != nil {
		return nil, err
	}
	if !ok {
		return []string{"table inet " + TableName + " is missing"}, nil
	}
	t := Table()
	var probs []string
	sets, err := c.GetSets(t)
	if err != nil {
		return nil, fmt.Errorf("list sets: %w", err)
	}
	have := map[string]bool{}
	for _, s := range sets {
		have[s.Name] = true
	}
	for _, s := range rs.sets {
		if !have[s.name] {
			probs = append(probs, "set "+s.name+" is missing")
		}
	}
	for _, cd := range rs.chains {
		ch, err := c.ListChain(t, cd.name)
		if err != nil || ch == nil {
			probs = append(probs, "chain "+cd.name+" is missing")
			continue
		}
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return nil, fmt.Errorf("list rules: %w", err)
		}
		if len(rules) != len(cd.rules) {
			probs = append(probs, fmt.Sprintf("chain %s has %d rules, want %d", cd.name, len(rules), len(cd.rules)))
		}
	}
	return probs, nil
}

// Blocked returns the addresses in blocked and blocked6 with the time each
// has left.
//
// A dump that runs while the kernel resizes the set's hash table (right
// after a large insert) can list some elements twice and skip others; the
// kernel flags that dump as interrupted, but google/nftables v0.3.0 does
// not expose the flag. Duplicates are the visible sign, so such a dump is
// repeated until a clean one comes back.
func Blocked(c *nftables.Conn) (map[netip.Addr]time.Duration, error) {
	var out map[netip.Addr]time.Duration
	for attempt := 0; ; attempt++ {
		var clean bool
		var err error
		out, clean, err = blockedOnce(c)
		if err != nil {
			return nil, err
		}
		if clean || attempt == 20 {
			return out, nil
		}
		time.Sleep(time.Duration(attempt+1) * 25 * time.Millisecond)
	}
}

func blockedOnce(c *nftables.Conn) (map[netip.Addr]time.Duration, bool, error) {
	out := map[netip.Addr]time.Duration{}
	clean := true
	for _, name := range []string{SetBlocked, SetBlocked6} {
		s, err := c.GetSetByName(Table(), name)
		if err != nil {
			return nil, false, fmt.Errorf("set %s: %w", name, err)
		}
		els, err := c.GetSetElements(s)
		if err != nil {
			return nil, false, fmt.Errorf("elements of set %s: %w", name, err)
		}
		for _, e := range els {
			if a, ok := netip.AddrFromSlice(e.Key); ok {
				if _, dup := out[a]; dup {
					clean = false
				}
				out[a] = e.Expires
			}
		}
	}
	return out, clean, nil
}
