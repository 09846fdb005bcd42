package nft

import (
	"crypto/sha256"
	"fmt"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
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

// MaxCheckedElements bounds the sets whose elements Fingerprint reads: a
// large ignore list is checked by its presence only, or every look would
// cost a dump of it.
const MaxCheckedElements = 4096

// Fingerprint digests what the kernel shows of the table's rules (their
// expressions, counters left out) and of the elements of its sets that
// come from the configuration (not blocked/blocked6; not those over
// MaxCheckedElements). Taken right after an install and compared later,
// it tells that something outside changed the table although every set,
// chain and rule is still there: a rule edited, a port set restored from
// an old snapshot.
func (rs *Ruleset) Fingerprint(c *nftables.Conn) ([]byte, error) {
	t := Table()
	h := sha256.New()
	for _, cd := range rs.chains {
		ch, err := c.ListChain(t, cd.name)
		if err != nil {
			return nil, fmt.Errorf("list chain %s: %w", cd.name, err)
		}
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return nil, fmt.Errorf("list rules: %w", err)
		}
		fmt.Fprintf(h, "chain %s %d\n", cd.name, len(rules))
		for _, r := range rules {
			for _, e := range r.Exprs {
				if _, ok := e.(*expr.Counter); ok {
					continue
				}
				b, err := expr.Marshal(byte(nftables.TableFamilyINet), e)
				if err != nil {
					return nil, fmt.Errorf("rule of chain %s: %w", cd.name, err)
				}
				h.Write(b)
			}
			h.Write([]byte{'\n'})
		}
	}
	for _, sd := range rs.sets {
		if sd.keep || sd.transient || len(sd.elems) > MaxCheckedElements {
			continue
		}
		s, err := c.GetSetByName(t, sd.name)
		if err != nil {
			return nil, fmt.Errorf("set %s: %w", sd.name, err)
		}
		els, err := c.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("elements of set %s: %w", sd.name, err)
		}
		keys := make([]string, 0, len(els))
		for _, e := range els {
			keys = append(keys, fmt.Sprintf("%x-%x-%t", e.Key, e.KeyEnd, e.IntervalEnd))
		}
		sort.Strings(keys)
		fmt.Fprintf(h, "set %s %s\n", sd.name, strings.Join(keys, ","))
	}
	return h.Sum(nil), nil
}
