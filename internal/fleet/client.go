package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// Origins of the blocks in the fleet's records (Block.Origin).
const (
	OriginDetect    = "detect"    // the detector of the host that published it
	OriginManual    = "manual"    // an administrator's block on that host (or the fleet administrator's)
	OriginKernel    = "kernel"    // the kernel's first strike on that host
	OriginCorrelate = "correlate" // correlate.hosts hosts saw the address within correlate.window
	// OriginFleet is how the daemon records a block it takes from the fleet; Publish
	// ignores such blocks (a host publishes only what it decided itself).
	OriginFleet = "fleet"
)

// What a block rests on, as the host that published it claims
// (Block.Evidence).
const (
	EvidenceForgeable = "forgeable" // tripwire probes: packets anyone can forge
	EvidenceHandshake = "handshake" // a completed TCP handshake (tcp.verified)
	EvidenceAdmin     = "admin"     // an administrator's block
)

// AdminName is the fleet administrator's name: the key host of the
// records that only the administrator's NATS user may write (the hosts'
// permissions name their own keys only, and no host may take the name).
// Its lifts reach every host's blocks; its blocks are the administrator's.
const AdminName = config.FleetAdminName

// Block is one host's block of an address, as the fleet carries it. A
// receiver believes of it only what it can check: the key the record was
// written under (Host, Admin) and, for a correlated block, the sightings
// (Corroborated). The rest is the publishing host's word.
type Block struct {
	Addr netip.Addr
	// Host is the host of the record's key: the fleet name whose NATS user
	// wrote it, as the servers' permissions vouch (AdminName for the
	// administrator). Publish sets it to this host's name.
	Host string
	// Admin: the record's key host is AdminName, so it was written under
	// the fleet administrator's identity, whose credentials are not
	// deployed on any host.
	Admin bool
	// Corroborated: an OriginCorrelate block whose count this host made
	// itself, from the per-host sighting keys of Addr
	// ($KV.portsentry_sightings.<addr>.*, each written under its own
	// host's identity): at least fleet.correlate.hosts distinct hosts;
	// or, with fleet.correlate.counters named, one that a majority of the
	// counters published. Any other correlate record is refused and never
	// reaches the Sink; the Seen list and the origin a record states are
	// never enough. False for the other origins.
	Corroborated bool
	// Evidence is what the publishing host claims the block rests on:
	// EvidenceForgeable, EvidenceHandshake or EvidenceAdmin. A claim, for
	// the decision to weigh as that host's word (a host may claim
	// "admin" for its own administrator's block; Admin says whether the
	// fleet administrator wrote it). Records without one (older
	// versions) or with an unknown one read as EvidenceForgeable;
	// Publish writes EvidenceForgeable when it is empty.
	Evidence string
	// Expires is when the block ends. Publish caps it at now +
	// fleet.max_timeout; a received record that claims to last longer
	// than fleet.max_timeout from its creation on the servers is refused,
	// not shortened. Hosts need synchronised clocks (NTP).
	Expires  time.Time
	Origin   string // OriginDetect, OriginManual, OriginKernel or OriginCorrelate
	ScanType string // e.g. "TCP SYN scan"
	// Tool is the scanner that sent the probe (internal/scanner's names);
	// "" in records of older versions and of blocks on no probe. A name
	// this version does not know reads as "unknown".
	Tool   string
	Ports  []uint16
	Reason string
	// Seen names the hosts that saw the address (OriginCorrelate), as the
	// publishing host states them.
	Seen []string
}

// Lift is a lift of Addr's blocks written at At (the servers' time) under
// the key host By: the fleet administrator's (Admin), which reaches every
// host's block of Addr that began before At, or one host's lift of the
// block it published itself, which reaches only that host's.
type Lift struct {
	Addr  netip.Addr
	By    string
	At    time.Time
	Admin bool // By is AdminName
}

// Sink receives what the fleet decides for this host: the daemon, which
// hands it to its ledger. Its methods are called from the Client's own
// goroutine, one at a time, and must not block for long nor call back into
// the Client synchronously.
type Sink interface {
	// FleetBlock: another host's block of b.Addr, or a fleet-wide
	// correlated one (possibly this host's own count). Enforce it until
	// b.Expires (at most fleet.max_timeout); a later call for the same
	// address with a later Expires extends it. The address has passed
	// every refusal (Options.Protected, which holds the fleet's own hosts
	// and servers; non global addresses), the record its checks (an
	// expiry within fleet.max_timeout of its creation; a correlated block
	// counted here, or by a majority of the counters).
	FleetBlock(b Block)
	// FleetUnblock: a lift of l.Addr. The administrator's (l.Admin)
	// removes the block here if it began before l.At, whatever its
	// origin. A host's lift of its own block (l.Admin false, l.By the
	// host) comes only once no record of the fleet holds the address
	// here any longer (another host's, or this host's own); it must remove
	// only a block that came from the fleet (origin fleet), never one this
	// host decided itself, and only if it began before l.At.
	FleetUnblock(l Lift)
}

// Options are what the daemon gives a Client besides its configuration.
type Options struct {
	// Sink receives the other hosts' blocks and the lifts. Required.
	Sink Sink
	// Protected is the daemon's guard rail (decide.Guard's Protected): an
	// address it protects is never blocked from the fleet, nor published.
	// It is the only source of the fleet's own addresses (the guard's
	// fleet.hosts and server addresses): the hosts bucket is not one.
	Protected func(netip.Addr) (why string, ok bool)
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Now; default time.Now.
	Now func() time.Time
	// CorrelateTimeout is how long a correlated block lasts (the daemon
	// passes block.timeout); default 1h, capped at fleet.max_timeout.
	CorrelateTimeout time.Duration
	// OutboxSize bounds the writes waiting to be published; default 65536,
	// and an eighth of it more for sightings (their own lane).
	OutboxSize int
	// Replicas of the buckets when this host creates them; default 3 (a
	// cluster of 3 or 5 servers). Buckets that exist are used as they are.
	Replicas int
	// NATSOptions are added to the connection's options, after those the
	// configuration makes (tests connect in-process with
	// nats.InProcessServer).
	NATSOptions []nats.Option
}

// Stats are the Client's counters. Mirrored and MirrorLag keep the names
// that users and scripts read (the status's fleet_mirrored, the metric
// portsentry_fleet_mirrored_total): they count the view's deliveries.
type Stats struct {
	Connected     bool
	Reconnects    uint64 // connections regained after a loss
	OutboxDepth   int    // writes waiting
	OutboxDropped uint64 // writes dropped: the outbox was full (or a sighting replaced in its full lane)
	OutboxExpired uint64 // writes dropped unsent: their time ran out (while disconnected)
	Published     uint64 // writes acknowledged by the servers
	PublishErrors uint64 // writes that failed and were put back
	Mirrored      uint64 // other hosts' blocks passed to the Sink
	Lifted        uint64 // lifts passed to the Sink
	Refused       uint64 // fleet blocks refused (protected, not global, lasting too long, a correlated record of a host that is no counter)
	Correlated    uint64 // correlated blocks this host made from its own count of the sightings
	BadRecords    uint64 // records that could not be read
	Live          int    // buckets followed through their live subject (live.go), not a consumer
	LiveGaps      uint64 // live subscriptions that skipped a sequence: the host caught up through a consumer
	// Sightings: the (address, host) sightings this host counts now;
	// SightingsDropped: those it dropped to stay within its bounds (a
	// flood). Both 0 on a host that does not count them.
	Sightings        int
	SightingsDropped uint64
	Blocks           int           // other hosts' blocks in force, as Blocks lists them
	MirrorLag        time.Duration // last record: its creation on the servers to its delivery here
	MirrorLagMax     time.Duration
}

// Client is this host's member of the fleet. Create with New, then Run.
//
// It composes three parts, each on a goroutine of Run's: the publisher
// (publisher.go: the outbox and its sending), the watcher (watcher.go:
// one generation of watches of the buckets at a time, whose entries are
// applied by apply.go and lift.go), and the view (view.go: what this host
// knows of the other hosts' records, under mu). The watcher also counts
// the sightings (correlate.go, tally.go) and the counters' votes
// (quorum.go).
type Client struct {
	cfg         config.Fleet
	name        string
	opts        Options
	log         *slog.Logger
	now         func() time.Time
	maxTimeout  time.Duration
	window      time.Duration
	corrTimeout time.Duration
	replicas    int

	pub *publisher

	// The watcher's: Ready, the reconnects that end a generation, and
	// what it applies besides the watches' entries.
	ready       chan struct{}
	readyOnce   sync.Once
	reconnected chan struct{}
	// startedAt is the connection's count of reconnects when the current
	// generation of watches started.
	startedAt atomic.Uint64
	// tally: the sightings counted here, when this host counts them
	// (correlate.go); the watcher's goroutine's alone. noCount: the
	// sightings' watch could not start (sightingsOff).
	tally   tally
	noCount atomic.Bool

	mu        sync.Mutex
	nc        *nats.Conn
	js        jetstream.JetStream // the buckets' domain (fleet.domain)
	local     jetstream.JetStream // the leaf's copies (fleet.local_domain; leaf.go), or nil
	binding   bool                // bindHub is running (leaf.go)
	bucketsOK bool
	kvs       map[string]jetstream.KeyValue // the watched buckets, bound
	created   map[string]time.Time          // when the buckets' streams were made
	live      map[string]bool               // the buckets whose records the servers republish (live.go)
	ownAddrs  []netip.Addr
	lastSeen  map[netip.Addr]time.Time // sightings published
	view      view
	ballots   ballots // the counters' correlated records (quorum.go)

	st struct {
		reconnects, delivered, lifted, refused,
		correlated, bad atomic.Uint64
		gaps atomic.Uint64 // live subscriptions that skipped a sequence
		// short: the buckets the last generation left on their consumer,
		// their replay short of the stream (goLive)
		short atomic.Int32
		// sightings, sightDropped: the tally's size and drops, for Stats.
		sightings    atomic.Int64
		sightDropped atomic.Uint64
		// records: entries the watches delivered, applied or skipped as
		// already handled (what a replay costs this host).
		records     atomic.Uint64
		lag, lagMax atomic.Int64
	}
}

// New checks cfg (which must be Enabled) and the files it names, and
// makes a Client; nothing is connected before Run.
func New(cfg config.Fleet, opts Options) (*Client, error) {
	if !cfg.Enabled() {
		return nil, errors.New("fleet: no servers configured")
	}
	if opts.Sink == nil {
		return nil, errors.New("fleet: no Sink")
	}
	name := cfg.Name
	if name == "" {
		name = config.DefaultFleetName()
	}
	if !config.ValidFleetName(name) {
		return nil, fmt.Errorf("fleet: %q is not a valid fleet name", name)
	}
	if name == AdminName {
		return nil, fmt.Errorf("fleet: %q is the fleet administrator's name, which no host may take", name)
	}
	for _, f := range []string{cfg.Credentials, cfg.NKey, cfg.TLS.CA, cfg.TLS.Cert, cfg.TLS.Key} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("fleet: %w", err)
		}
	}
	c := &Client{
		cfg: cfg, name: name, opts: opts,
		log:         opts.Logger,
		now:         opts.Now,
		maxTimeout:  time.Duration(cfg.MaxTimeout),
		window:      time.Duration(cfg.Correlate.Window),
		corrTimeout: opts.CorrelateTimeout,
		replicas:    opts.Replicas,
		ready:       make(chan struct{}),
		reconnected: make(chan struct{}, 1),
		tally:       newTally(),
		ballots:     newBallots(),
		lastSeen:    map[netip.Addr]time.Time{},
	}
	c.defaults()
	return c, nil
}

// defaults fills what New's configuration and options leave unset.
func (c *Client) defaults() {
	if c.log == nil {
		c.log = slog.Default()
	}
	c.log = c.log.With("fleet", c.name)
	if c.now == nil {
		c.now = time.Now
	}
	if c.maxTimeout <= 0 {
		c.maxTimeout = config.DefaultFleetMaxTimeout
	}
	if c.window <= 0 {
		c.window = config.DefaultFleetCorrelateWindow
	}
	if c.corrTimeout <= 0 {
		c.corrTimeout = time.Hour
	}
	c.corrTimeout = min(c.corrTimeout, c.maxTimeout)
	c.view = newView(c.name, c.maxTimeout)
	if c.replicas <= 0 {
		c.replicas = 3
	}
	size := c.opts.OutboxSize
	if size <= 0 {
		size = 65536
	}
	c.pub = newPublisher(size, func() (jetstream.JetStream, bool) {
		js, _, ok := c.conn()
		return js, ok
	}, c.now, c.log)
}

// Name is this host's fleet name.
func (c *Client) Name() string { return c.name }

// Ready is closed once the whole fleet state (the hosts, the lifts, every
// other host's block) has been passed to the Sink, the first time Run
// reaches the servers. With the servers down it stays open: the daemon
// waits for it with a bound (a few seconds) before it reports itself
// ready, so that a restart enforces the fleet's blocks at once, and goes
// on without it when the bound runs out; the state then arrives whenever
// the servers are reached.
func (c *Client) Ready() <-chan struct{} { return c.ready }

// Run connects (retrying with backoff, for ever), makes sure of the
// buckets, watches the fleet into the Sink and publishes the outbox, until
// ctx is done. It returns an error only when the connection cannot even
// be set up (bad credentials file); losing the servers is not an error.
func (c *Client) Run(ctx context.Context) error {
	nc, err := c.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := newJS(nc, c.cfg.Domain, jetstream.WithPublishAsyncMaxPending(batchSize),
		jetstream.WithPublishAsyncTimeout(ackTimeout))
	if err != nil {
		return fmt.Errorf("fleet: jetstream: %w", err)
	}
	var local jetstream.JetStream
	if c.cfg.LocalDomain != "" {
		if local, err = newJS(nc, c.cfg.LocalDomain); err != nil {
			return fmt.Errorf("fleet: jetstream of %s: %w", c.cfg.LocalDomain, err)
		}
	}
	c.mu.Lock()
	c.nc, c.js, c.local = nc, js, local
	c.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { c.pub.run(ctx) })
	wg.Go(func() { c.watchLiveness(ctx, nc) })
	c.watchLoop(ctx)
	wg.Wait()
	return nil
}

// Blocks lists the other hosts' blocks in force here, one per address
// and host, by address.
func (c *Client) Blocks() []Block {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.view.list(c.now())
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	_, nc, _ := c.conn()
	depth, dropped, expired := c.pub.out.depth()
	c.mu.Lock()
	n := c.view.count(c.now())
	c.mu.Unlock()
	return Stats{
		Connected:        nc != nil && nc.IsConnected(),
		Reconnects:       c.st.reconnects.Load(),
		OutboxDepth:      depth,
		OutboxDropped:    dropped,
		OutboxExpired:    expired,
		Published:        c.pub.published.Load(),
		PublishErrors:    c.pub.failed.Load(),
		Mirrored:         c.st.delivered.Load(),
		Lifted:           c.st.lifted.Load(),
		Refused:          c.st.refused.Load(),
		Correlated:       c.st.correlated.Load(),
		BadRecords:       c.st.bad.Load(),
		Live:             c.liveCount(),
		LiveGaps:         c.st.gaps.Load(),
		Sightings:        int(c.st.sightings.Load()),
		SightingsDropped: c.st.sightDropped.Load(),
		Blocks:           n,
		MirrorLag:        time.Duration(c.st.lag.Load()),
		MirrorLagMax:     time.Duration(c.st.lagMax.Load()),
	}
}

func (c *Client) lag(d time.Duration) {
	d = max(d, 0)
	c.st.lag.Store(int64(d))
	for {
		m := c.st.lagMax.Load()
		if int64(d) <= m || c.st.lagMax.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}
