package daemon

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// resolver does PortSentry's RESOLVE_HOST: reverse DNS with a short
// timeout and a bounded cache, never on the capture goroutine.
type resolver struct {
	mu    sync.Mutex
	cache map[netip.Addr]string
}

const (
	resolveTimeout = 2 * time.Second
	resolveCache   = 4096
)

func newResolver() *resolver { return &resolver{cache: map[netip.Addr]string{}} }

func (r *resolver) name(a netip.Addr) string {
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

// nameFor is the resolved name of a when resolve_host is on, else "".
func (d *Daemon) nameFor(a netip.Addr) string {
	if !d.cfgp.Load().ResolveHost {
		return ""
	}
	return d.names.name(a)
}

// hostField is PortSentry's "name/ip"; the name is the address itself
// unless resolve_host found one.
func (d *Daemon) hostField(a netip.Addr) string {
	s := a.String()
	if n := d.nameFor(a); n != "" {
		return n + "/" + s
	}
	return s + "/" + s
}
