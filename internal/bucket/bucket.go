// Package bucket is the token bucket that caps rates where a flood must
// not cost more than a fixed budget: new blocks a second (the decision),
// alert lines a second (the log).
package bucket

import (
	"sync"
	"time"
)

// Bucket is a token bucket: Set tokens a second, a second's worth held.
type Bucket struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

// Set changes the rate.
func (b *Bucket) Set(perSecond int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rate = float64(perSecond)
	b.tokens = min(b.tokens, b.rate)
	if b.last.IsZero() {
		b.tokens = b.rate
	}
}

// Allow takes a token if there is one.
func (b *Bucket) Allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = min(b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// Refund gives back a token taken by Allow for something that did not
// happen after all.
func (b *Bucket) Refund() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens = min(b.rate, b.tokens+1)
}
