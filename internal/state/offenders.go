package state

import (
	"net/netip"
	"time"
)

// Strengthen marks the active block of a as corroborated: more probes
// came from a after it was blocked on a single one. It then counts as an
// offence, and a full set no longer gives it up first; timeout, given the
// offence count, is its length from now on (the repeat-offender factor).
// A nil timeout keeps the block and counts no offence (the evidence is
// forgeable). It returns the block as it now stands, and false when a
// holds no weak block.
func (s *Store) Strengthen(a netip.Addr, timeout func(times int) time.Duration) (Block, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	nb, ok := s.get(a)
	if !ok || !nb.Weak {
		return Block{}, false, nil
	}
	nb.Weak = false
	if timeout == nil {
		// Forgeable evidence: kept, never an offence.
		s.put(&nb)
		return nb, true, s.append(entry{Op: "add", Block: &nb})
	}
	nb.Times = int(s.offenderOf(keyOf(a)).n) + 1
	if t := timeout(nb.Times); t > nb.Timeout {
		nb.Expires = nb.Expires.Add(t - nb.Timeout)
		nb.Timeout = t
	}
	s.put(&nb)
	s.remember(a, nb.Times, nb.Expires)
	return nb, true, s.append(entry{Op: "add", Block: &nb})
}

// ForgetOffender forgets how often a was blocked (an administrator lifted
// its block: the next one starts from block.timeout again).
func (s *Store) ForgetOffender(a netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := keyOf(a)
	if r, ok := s.lookup(k); ok {
		r.off = 0
	} else if _, ok := s.times[k]; ok {
		delete(s.times, k)
	} else {
		return nil
	}
	return s.append(entry{Op: "times", Addr: a, Times: 0})
}

// rememberBlock counts b as an offence, unless it is weak or rests on
// forgeable evidence: such a block only moves the time of the last block.
func (s *Store) rememberBlock(b *Block) {
	n := b.Times
	if b.Weak || b.Evidence == EvidenceForgeable {
		n = int(s.offenderOf(keyOf(b.Addr)).n)
	}
	s.remember(b.Addr, n, b.Expires)
}
