// Package bouncerapi serves CrowdSec's bouncer API from the ledger, so
// that CrowdSec's remediation components (crowdsec-firewall-bouncer, the
// nginx, traefik and HAProxy bouncers, cloud firewalls) enforce this
// host's blocks as if it were CrowdSec's local API, without CrowdSec.
//
// It is a ledger.Follower: it holds a view of the blocks in force (taken
// from the ledger at start, then followed) and a log of the last changes,
// both bounded, and never makes the ledger wait: Blocked and Lifted append
// to a queue under a lock of their own, held for the append; the view is
// brought up to date off the ledger's goroutine, and a response is
// written with no lock held, so a slow client costs the ledger nothing.
//
// Each bouncer's API key has its own cursor: GET /v1/decisions/stream
// with startup=true answers every decision in force; later calls what
// changed since that key's last call (lifts and expiries in "deleted").
// GET /v1/decisions answers the decisions in force (ip=, range=, ...).
//
// Whom a block may reach is decide's (decide.Reach.Beyond, the rule the
// fleet's publishing follows): a bouncer that connects over loopback is
// on this host and gets every block; any other gets only the blocks that
// may leave this host (an administrator's, a completed handshake,
// corroborated across hosts), never one that rests on probes anyone can
// forge.
package bouncerapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// Config is what a Server is made of.
type Config struct {
	// Settings is the configuration in force: the API keys
	// (crowdsec.api_keys_file, read again at each reload) and
	// block.set_size, which bounds the view.
	Settings func() *config.Config
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
	// MaxBlocks bounds the view and LogSize the change log; 0: twice
	// block.set_size (both sets full) and twice that.
	MaxBlocks, LogSize int
	// Logger gets the HTTP server's own errors (a failed TLS handshake, a
	// client gone) at debug level; nil drops them.
	Logger *slog.Logger
}

// Stats are the server's counters.
type Stats struct {
	Requests     atomic.Uint64 // requests answered, but those refused for their key
	AuthFailures atomic.Uint64 // requests with no key or an unknown one
	Served       atomic.Uint64 // decisions sent, new and deleted
	Dropped      atomic.Uint64 // blocks not served: the view was full
}

// Server is the bouncer API. Make it with New; it follows the ledger at
// once (Blocked, Lifted); Seed gives it the blocks in force, Run keeps
// its view up to date, Handler serves it.
type Server struct {
	c   Config
	now func() time.Time

	// pmu guards pending, the ledger's news not yet in the view; wake
	// tells Run of them.
	pmu     sync.Mutex
	pending []news
	wake    chan struct{}

	// mu guards the view and the cursors.
	mu      sync.Mutex
	v       *view
	cursors map[cursorID]uint64 // a key's (and its place's) last change seen

	keys atomic.Pointer[keySet]

	Stats Stats
}

// news is one block or lift the ledger told of.
type news struct {
	addr     netip.Addr
	lift     bool
	expires  time.Time
	scenario string
	remote   bool
}

// maxPending bounds the news waiting for Run: far more than the ledger
// carries out between two of its turns.
const maxPending = 1 << 20

// cursorID is a key (its hash) and whether its bouncer is remote: a key
// used from both places has a cursor for each.
type cursorID struct {
	key    [sha256.Size]byte
	remote bool
}

// New makes a Server.
func New(c Config) *Server {
	s := &Server{c: c, now: c.Now, wake: make(chan struct{}, 1), cursors: map[cursorID]uint64{}}
	if s.now == nil {
		s.now = time.Now
	}
	size := c.Settings().Block.SetSize
	if c.MaxBlocks == 0 {
		c.MaxBlocks = 2 * size
	}
	if c.LogSize == 0 {
		c.LogSize = 2 * c.MaxBlocks
	}
	s.v = newView(c.MaxBlocks, c.LogSize)
	return s
}

// Blocked follows a block recorded (ledger.Follower): it may leave this
// host as far as its decision reaches.
func (s *Server) Blocked(_ context.Context, e *ledger.Entry) {
	s.put(newsOf(e.Record, e.Decision.Reach))
}

// Lifted follows a lift (ledger.Follower).
func (s *Server) Lifted(_ context.Context, x ledger.Lift) {
	s.put(news{addr: x.Addr, lift: true})
}

// Seed takes the blocks in force (the ledger's, at start), with the reach
// each record gives (decide.RecordReach).
func (s *Server) Seed(blocks []state.Block) {
	cfg := s.c.Settings()
	for _, b := range blocks {
		s.put(newsOf(b, decide.RecordReach(cfg, b)))
	}
}

func newsOf(b state.Block, r decide.Reach) news {
	return news{addr: b.Addr, expires: b.Expires, scenario: b.Kind, remote: r.Beyond()}
}

func (s *Server) put(n news) {
	s.pmu.Lock()
	if len(s.pending) < maxPending {
		s.pending = append(s.pending, n)
	} else {
		s.Stats.Dropped.Add(1)
	}
	s.pmu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run brings the view up to date as the ledger's news come, until ctx is
// done.
func (s *Server) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
			s.mu.Lock()
			s.drain()
			s.mu.Unlock()
		}
	}
}

// drain moves the pending news into the view; s.mu is held.
func (s *Server) drain() {
	s.pmu.Lock()
	ns := s.pending
	s.pending = nil
	s.pmu.Unlock()
	before := s.v.dropped
	for _, n := range ns {
		if n.lift {
			s.v.lift(n.addr)
			continue
		}
		s.v.add(&dec{addr: n.addr, expires: n.expires, scenario: Scenario(n.scenario), remote: n.remote})
	}
	s.Stats.Dropped.Add(s.v.dropped - before)
}

// Scenario is a block's scenario as a bouncer sees it: portsentry-nft/
// and the record's kind (the scan type, "manual", ...) in lower case, a
// dash for each run of other characters: "portsentry-nft/tcp-syn-scan".
func Scenario(kind string) string {
	var b strings.Builder
	b.WriteString(Origin + "/")
	dash := false
	for _, r := range strings.ToLower(kind) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash && b.Len() > len(Origin)+1 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
		} else {
			dash = true
		}
		if b.Len() >= len(Origin)+1+maxScenario {
			break
		}
	}
	if b.Len() == len(Origin)+1 {
		b.WriteString("block")
	}
	out := b.String()
	return strings.TrimSuffix(out[:min(len(out), len(Origin)+1+maxScenario)], "-")
}

// maxScenario bounds the part of a scenario taken from a record (a fleet
// block's kind comes from another host).
const maxScenario = 64

// keySet is the API keys of one configuration, hashed.
type keySet struct {
	cfg    *config.Config
	hashes [][sha256.Size]byte
}

// key returns the hash of the configured key that k is, comparing with
// every configured key in constant time (the hashes make the lengths
// equal); ok false when it is none of them.
func (s *Server) key(k string) (h [sha256.Size]byte, ok bool) {
	cfg := s.c.Settings()
	ks := s.keys.Load()
	if ks == nil || ks.cfg != cfg {
		ks = &keySet{cfg: cfg}
		for _, c := range cfg.CrowdSec.Keys {
			ks.hashes = append(ks.hashes, sha256.Sum256([]byte(c.Key.Reveal())))
		}
		s.keys.Store(ks)
	}
	got := sha256.Sum256([]byte(k))
	found := 0
	for _, c := range ks.hashes {
		eq := subtle.ConstantTimeCompare(got[:], c[:])
		found |= eq
	}
	return got, found == 1 && k != ""
}
