// Package fleetlink joins the fleet client (internal/fleet) to the one
// decision and the one ledger. Outward, it is a ledger.Follower: every
// block recorded here that did not come from the fleet is published, and
// an administrator's unblock is lifted fleet-wide. Inward, it is the
// client's fleet.Sink: the other hosts' blocks and lifts are decided by
// internal/decide (origin fleet) and enter the ledger by its one door,
// ledger.Apply, in batches: what arrives together goes into the kernel in
// one transaction.
//
// It holds no policy of its own: what a fleet block may do (the guard
// rails, the capacity, "held as long already", which lift reaches which
// block) is decide's.
package fleetlink

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/fleet"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// ReadyWait bounds how long the start waits for the fleet's current blocks
// (fleet.Client.Ready) before it reports ready: NATS down must not hold
// up local blocking.
const ReadyWait = 5 * time.Second

// Batch bounds the fleet's blocks applied in one transaction.
const Batch = 4096

// Decider decides the fleet's blocks together (decide.Decider).
type Decider interface {
	DecideAll(rs []decide.Request) []decide.Decision
}

// Ledger is the ledger's door and its record (ledger.Ledger).
type Ledger interface {
	Get(a netip.Addr) (state.Block, bool)
	Apply(ctx context.Context, ops ...ledger.Op) (int, error)
}

// Guard tells this host's own addresses as they change (guard.Guard).
type Guard interface {
	Local() []netip.Addr
	OnChange(func()) (stop func())
	Protected(netip.Addr) (why string, ok bool)
}

// Config is what a Link is made of.
type Config struct {
	Settings func() *config.Config
	Guard    Guard
	Log      *alert.Log
	Logger   *slog.Logger
	// Options are added to the client's (tests: an in-process server).
	Options func(*fleet.Options)
}

// Link is the fleet's side of the daemon.
type Link struct {
	c   *fleet.Client
	cfg Config
	in  chan item
	// done ends a put waiting for Intake (set before the client runs).
	done <-chan struct{}
}

// item is a block or a lift from the fleet.
type item struct {
	block *fleet.Block
	lift  *fleet.Lift
}

// New builds the fleet client; nil (and no error) when the configuration
// has no fleet.
func New(c Config) (*Link, error) {
	cfg := c.Settings()
	if !cfg.Fleet.Enabled() {
		return nil, nil
	}
	l := &Link{cfg: c, in: make(chan item, 4*Batch)}
	opts := fleet.Options{Sink: l, Protected: c.Guard.Protected, Logger: c.Logger, CorrelateTimeout: cfg.BlockTimeout()}
	if c.Options != nil {
		c.Options(&opts)
	}
	client, err := fleet.New(cfg.Fleet, opts)
	if err != nil {
		return nil, err
	}
	l.c = client
	return l, nil
}

// Client is the fleet client (status, sightings, readiness).
func (l *Link) Client() *fleet.Client { return l.c }

// Blocked publishes a block recorded here (a ledger.Follower, before the
// journal: the fleet holds its own copy) when the decision says it may
// travel (decide.Reach): one that rests on forgeable probes stays here,
// and one from the fleet is never published again.
func (l *Link) Blocked(_ context.Context, e *ledger.Entry) {
	b := &e.Record
	if e.Decision.Reach == decide.Local {
		return
	}
	l.c.Publish(fleet.Block{Addr: b.Addr, Expires: b.Expires, Origin: string(b.Origin), ScanType: b.Kind, Ports: b.Ports,
		Evidence: claim(e.Decision.Evidence), Tool: b.Tool})
}

// claim is what a block published here says it rests on.
func claim(ev decide.Evidence) string {
	switch ev {
	case decide.Administrator:
		return fleet.EvidenceAdmin
	case decide.Unforgeable:
		return fleet.EvidenceHandshake
	}
	return fleet.EvidenceForgeable
}

// Lifted lifts an administrator's unblock on this host fleet-wide.
func (l *Link) Lifted(_ context.Context, x ledger.Lift) {
	if x.Cause == ledger.Unblocked {
		l.c.Unblock(x.Addr)
	}
}

// FleetBlock enforces another host's block, or a correlated one, with its
// time left (fleet.Sink). It waits while the batches before it are
// applied.
func (l *Link) FleetBlock(b fleet.Block) { l.put(item{block: &b}) }

// FleetUnblock lifts a block that an administrator lifted on another host
// (fleet.Sink).
func (l *Link) FleetUnblock(x fleet.Lift) { l.put(item{lift: &x}) }

func (l *Link) put(it item) {
	select {
	case l.in <- it:
	case <-l.done:
	}
}

// Start makes what the client hands over wait at most until ctx is done;
// call it before Run and Intake.
func (l *Link) Start(ctx context.Context) { l.done = ctx.Done() }

// Run runs the client until ctx is done, and tells it this host's own
// addresses (published for people to read; they protect nothing on the
// other hosts) as the guard sees them change.
func (l *Link) Run(ctx context.Context) {
	own := func() { l.c.SetOwnAddresses(l.cfg.Guard.Local()) }
	defer l.cfg.Guard.OnChange(own)()
	own()
	if err := l.c.Run(ctx); err != nil {
		l.cfg.Log.Errorf("fleet: %v; blocks are not shared with the fleet", err)
	}
}
