package nft

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// maxElemsPerCall keeps one SetAddElements call well under the 64 KiB
// netlink attribute limit, past which google/nftables v0.3.0 loses elements
// silently (about 2340 IPv4 or 1638 IPv6 elements with timeouts).
const maxElemsPerCall = 1000

// Install makes the kernel's table inet portsentry equal to rs in one
// netlink transaction: it is all applied or nothing is. The elements of
// blocked and blocked6 survive (a daemon restart or reload keeps every
// block); if one of those sets must be recreated because its definition
// changed (e.g. block.set_size), its elements are carried over with their
// remaining time in the same transaction.
//
// A table loaded by nft -f (the shipped nft/portsentry.nft, or the output
// of `portsentry-nft rules`) is taken over the same way. The kernel refuses
// to redefine a set that differs from ours in ways the library cannot read
// back (nft describes concatenated keys field by field, for one): the
// configured sets are therefore always recreated, and if the kernel still
// answers "file exists" the kept sets are recreated too, elements carried.
func (rs *Ruleset) Install(c *nftables.Conn) error {
	err := rs.install(c, false)
	if errors.Is(err, unix.EEXIST) {
		err = rs.install(c, true)
	}
	return err
}

// InstallIn is Install on a connection of its own, in the network
// namespace netns (nil: the process's own).
func (rs *Ruleset) InstallIn(netns *os.File) error {
	c, err := Dial(netns)
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	return rs.Install(c)
}

func (rs *Ruleset) install(c *nftables.Conn, recreateKept bool) error {
	t := Table()
	existingSets, existingChains, err := existing(c)
	if err != nil {
		return err
	}
	c.AddTable(t)
	// Empty every chain first: rules reference sets we may delete or recreate.
	wantChain := map[string]bool{}
	for _, cd := range rs.chains {
		wantChain[cd.name] = true
	}
	for _, ch := range existingChains {
		c.FlushChain(ch)
		if !wantChain[ch.Name] {
			c.DelChain(ch)
		}
	}
	wanted := map[string]bool{}
	for _, s := range rs.sets {
		wanted[s.name] = true
	}
	for name, s := range existingSets {
		if !wanted[name] {
			c.DelSet(s)
		}
	}
	byName := map[string]*nftables.Set{}
	for _, sd := range rs.sets {
		s, err := sd.install(c, t, existingSets[sd.name], recreateKept)
		if err != nil {
			return err
		}
		byName[sd.name] = s
	}
	if err := rs.installLimit(c, t); err != nil {
		return err
	}
	for _, cd := range rs.chains {
		cd.install(c, t, byName)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install table inet %s: %w", TableName, err)
	}
	return nil
}

// existing lists the sets and chains table inet portsentry has now.
func existing(c *nftables.Conn) (map[string]*nftables.Set, []*nftables.Chain, error) {
	sets := map[string]*nftables.Set{}
	exists, err := tableExists(c)
	if err != nil || !exists {
		return sets, nil, err
	}
	all, err := c.GetSets(Table())
	if err != nil {
		return nil, nil, fmt.Errorf("list sets of table inet %s: %w", TableName, err)
	}
	for _, s := range all {
		sets[s.Name] = s
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, nil, fmt.Errorf("list chains: %w", err)
	}
	var ours []*nftables.Chain
	for _, ch := range chains {
		if ch.Table.Name == TableName {
			ours = append(ours, ch)
		}
	}
	return sets, ours, nil
}

// install queues the set and its elements on c. A set that must be
// recreated (changed, or not kept) is deleted first; a kept one carries
// its elements over with their remaining time.
func (sd *setDef) install(c *nftables.Conn, t *nftables.Table, old *nftables.Set, recreateKept bool) (*nftables.Set, error) {
	s := sd.nftSet(t)
	var carry []nftables.SetElement
	if old != nil && (!sd.keep || recreateKept || !sameSet(old, s)) {
		if sd.keep {
			var err error
			if carry, err = c.GetSetElements(old); err != nil {
				return nil, fmt.Errorf("read elements of set %s: %w", sd.name, err)
			}
		}
		c.DelSet(old)
	}
	if err := c.AddSet(s, nil); err != nil {
		return nil, fmt.Errorf("add set %s: %w", sd.name, err)
	}
	elems := sd.elements()
	for _, e := range carry {
		if e.Expires > 0 {
			elems = append(elems, nftables.SetElement{Key: e.Key, Timeout: e.Expires.Round(time.Second)})
		}
	}
	for i := 0; i < len(elems); i += maxElemsPerCall {
		if err := c.SetAddElements(s, elems[i:min(i+maxElemsPerCall, len(elems))]); err != nil {
			return nil, fmt.Errorf("add elements to set %s: %w", sd.name, err)
		}
	}
	return s, nil
}

// install queues the chain and its rules on c; lookups refer to the sets
// by the IDs of this transaction.
func (cd *chainDef) install(c *nftables.Conn, t *nftables.Table, sets map[string]*nftables.Set) {
	policy := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{
		Name:     cd.name,
		Table:    t,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  cd.hook,
		Priority: nftables.ChainPriorityRef(nftables.ChainPriority(cd.prio)),
		Policy:   &policy,
	})
	c.FlushChain(ch)
	for _, r := range cd.rules {
		exprs := make([]expr.Any, len(r.exprs))
		for i, e := range r.exprs {
			switch x := e.(type) {
			case *expr.Lookup:
				l2 := *x
				l2.SetID = sets[x.SetName].ID
				e = &l2
			case *expr.Dynset:
				d2 := *x
				d2.SetID = sets[x.SetName].ID
				e = &d2
			}
			exprs[i] = e
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs})
	}
}

func tableExists(c *nftables.Conn) (bool, error) {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("list tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == TableName {
			return true, nil
		}
	}
	return false, nil
}

// Delete removes table inet portsentry and with it every block.
func Delete(c *nftables.Conn) error {
	if ok, err := tableExists(c); err != nil || !ok {
		return err
	}
	c.DelTable(Table())
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete table inet %s: %w", TableName, err)
	}
	return nil
}

func (sd *setDef) nftSet(t *nftables.Table) *nftables.Set {
	_, dt := sd.key.nft()
	order := binaryutil.BigEndian
	if sd.key == keyIfname {
		order = binaryutil.NativeEndian // strings: how nft(8) marks them, so it prints names
	}
	concat := sd.key == keyIPv4Service || sd.key == keyIPv6Service
	return &nftables.Set{
		Concatenation: concat,
		KeyByteOrder:  order,
		Table:         t,
		Name:          sd.name,
		KeyType:       dt,
		Interval:      sd.interval,
		HasTimeout:    sd.timeout,
		Dynamic:       sd.dynamic,
		Size:          uint32(sd.size),
	}
}

// sameSet reports whether an existing set can be kept as it is.
func sameSet(old, want *nftables.Set) bool {
	return old.KeyType.Name == want.KeyType.Name && old.Interval == want.Interval &&
		old.HasTimeout == want.HasTimeout && old.Dynamic == want.Dynamic && old.Size == want.Size
}

// elements encodes the set's configured elements; an interval set gets a
// start element and an exclusive end element (omitted at the top of the key
// space) per range.
func (sd *setDef) elements() []nftables.SetElement {
	var out []nftables.SetElement
	for _, iv := range sd.elems {
		out = append(out, nftables.SetElement{Key: iv.lo})
		if !sd.interval {
			continue
		}
		if end, ok := increment(iv.hi); ok {
			out = append(out, nftables.SetElement{Key: end, IntervalEnd: true})
		}
	}
	return out
}

// increment returns b+1 as a big-endian number, false on overflow.
func increment(b []byte) ([]byte, bool) {
	out := append([]byte(nil), b...)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]++
		if out[i] != 0 {
			return out, true
		}
	}
	return nil, false
}

// UpdateInUse replaces the elements of the in-use sets in one transaction
// (a listener came or went); the rest of the ruleset is untouched.
func (rs *Ruleset) UpdateInUse(c *nftables.Conn) error {
	return rs.update(c, "in-use", func(sd *setDef) bool { return sd.inuse })
}

// UpdateProtected replaces the elements of the first strike's guard sets
// (Shape.Protected) in one transaction: an address, gateway or nameserver
// changed. The rest of the ruleset is untouched.
func (rs *Ruleset) UpdateProtected(c *nftables.Conn) error {
	return rs.update(c, "protected", func(sd *setDef) bool { return sd.guard })
}

func (rs *Ruleset) update(c *nftables.Conn, what string, which func(*setDef) bool) error {
	t := Table()
	n := 0
	for _, sd := range rs.sets {
		if !which(sd) {
			continue
		}
		n++
		s := sd.nftSet(t)
		c.FlushSet(s)
		els := sd.elements()
		for i := 0; i < len(els); i += maxElemsPerCall {
			if err := c.SetAddElements(s, els[i:min(i+maxElemsPerCall, len(els))]); err != nil {
				return fmt.Errorf("%s set %s: %w", what, sd.name, err)
			}
		}
	}
	if n == 0 {
		return nil
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("update %s sets: %w", what, err)
	}
	return nil
}

// installLimit queues the first strike's limits, made anew (a limit
// object cannot be changed in place: block.max_per_second may have), or
// their removal when no rule strikes. The chains were flushed before, so no
// rule holds them.
func (rs *Ruleset) installLimit(c *nftables.Conn, t *nftables.Table) error {
	var objs []nftables.Obj
	exists, err := tableExists(c)
	if err == nil && exists {
		objs, err = c.GetNamedObjects(t)
	}
	if err != nil {
		return fmt.Errorf("list objects of table inet %s: %w", TableName, err)
	}
	for _, o := range objs {
		if no, ok := o.(*nftables.NamedObj); ok && (no.Name == LimitStrike || no.Name == LimitStrikeSeen) && no.Type == nftables.ObjTypeLimit {
			c.DeleteObject(&nftables.NamedObj{Table: t, Name: no.Name, Type: nftables.ObjTypeLimit})
		}
	}
	if !rs.Strikes() {
		return nil
	}
	for _, name := range []string{LimitStrike, LimitStrikeSeen} {
		c.AddObj(&nftables.NamedObj{Table: t, Name: name, Type: nftables.ObjTypeLimit,
			Obj: &expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(rs.strikeRate[name]), Unit: expr.LimitTimeSecond, Burst: uint32(rs.strikeRate[name])}})
	}
	return nil
}
