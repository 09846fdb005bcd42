// Package bucket is the token bucket that caps rates where a flood must
// not cost more than a fixed budget: new blocks a second (the decision),
// alert lines a second (the log).
package bucket

import (
	"sync"
	"time"
)

// Bucket is a token bucket: Set tokens a second, a second's worth held
// (or SetBurst's burst).
type Bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64 // tokens held at most; 0: a second's worth
	tokens float64
	last   time.Time
}

// SetBurst changes the rate and how many tokens the bucket holds at most
// (a new bucket starts full).
func (b *Bucket) SetBurst(perSecond float64, burst int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rate, b.burst = perSecond, float64(burst)
	b.tokens = min(b.tokens, b.capacity())
	if b.last.IsZero() {
		b.tokens = b.capacity()
	}
}

func (b *Bucket) capacity() float64 {
	if b.burst > 0 {
		return b.burst
	}
	return b.rate
}

// Set changes the rate.
func (b *Bucket) Set(perSecond int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rate = float64(perSecond)
	b.tokens = min(b.tokens, b.capacity())
	if b.last.IsZero() {
		b.tokens = b.capacity()
	}
}

// Allow takes a token if there is one.
func (b *Bucket) Allow(now time.Time) bool { return b.AllowAbove(now, 0) }

// AllowAbove takes a token only if reserve tokens stay after it: the
// reserve is kept for the callers of Allow.
func (b *Bucket) AllowAbove(now time.Time, reserve float64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = min(b.capacity(), b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens >= 1+reserve {
		b.tokens--
		return true
	}
	return false
}

// Rate is the tokens a second.
func (b *Bucket) Rate() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rate
}

// Refund gives back a token taken by Allow for something that did not
// happen after all.
func (b *Bucket) Refund() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens = min(b.capacity(), b.tokens+1)
}
