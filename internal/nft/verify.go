package nft

import (
	"fmt"

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
