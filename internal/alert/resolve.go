package alert

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Resolver does PortSentry's RESOLVE_HOST: reverse DNS with a short
// timeout and a bounded cache, never on the capture goroutine.
type Resolver struct {
	mu    sync.Mutex
	cache map[netip.Addr]string
}

const (
	resolveTimeout = 2 * time.Second
	resolveCache   = 4096
)

// NewResolver makes a Resolver.
func NewResolver() *Resolver { return &Resolver{cache: map[netip.Addr]string{}} }

// Name is a's name, "" when it has none.
func (r *Resolver) Name(a netip.Addr) string {
	r.mu.Lock()
	n, ok := r.cache[a]
	r.mu.Unlock()
	if ok {
		return n
	}
	ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
	defer cancel()
	names, err := net.DefaultResolver.LookupAddr(ctx, a.String())
	if err == nil && len(names) > 0 {
		n = strings.TrimSuffix(names[0], ".")
	}
	r.mu.Lock()
	if len(r.cache) >= resolveCache {
		clear(r.cache)
	}
	r.cache[a] = n
	r.mu.Unlock()
	return n
}
