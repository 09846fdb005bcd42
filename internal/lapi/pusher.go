package lapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/bouncerapi"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// Config is what a Pusher is made of.
type Config struct {
	// Settings is the configuration in force: crowdsec.lapi's URL, machine
	// and password (read at each send: a reload's new ones are used).
	Settings func() *config.Config
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
	// Queue bounds the blocks waiting to be sent (0: DefaultQueue), Batch
	// the alerts of one request (0: DefaultBatch).
	Queue, Batch int
	// MinBackoff and MaxBackoff bound the wait before a failed batch is
	// sent again, doubling from one to the other (0: 1s and 1m).
	MinBackoff, MaxBackoff time.Duration
	// HTTP is the client (tests); nil: a 10 s timeout, no redirects.
	HTTP *http.Client
	// Version is this program's, for the User-Agent (UserAgent).
	Version string
	// Warn is told when pushing starts failing, and Info when it works
	// again (not at each retry); nil drops them.
	Warn, Info func(string)
}

// The defaults of Config.
const (
	DefaultQueue = 4096
	DefaultBatch = 100
)

// Stats are the Pusher's counters.
type Stats struct {
	Pushed   atomic.Uint64 // alerts the LAPI took
	Lifted   atomic.Uint64 // bans the LAPI lifted on an administrator's unblock
	Failures atomic.Uint64 // requests that failed (a login, a push, a lift), each retry counted
	Dropped  atomic.Uint64 // alerts and lifts given up: the queue was full, or the LAPI refused them for good
}

// Pusher pushes the blocks that may leave this host to a CrowdSec LAPI.
// Make it with New, follow the ledger with it, and Run it.
type Pusher struct {
	c    Config
	now  func() time.Time
	q    chan item
	host string
	cl   client
	// failing: the last request failed (Warn was told).
	failing bool

	Stats Stats
}

// item is a block to push (a copy of its record and what it rests on),
// or the lift of one pushed (lift).
type item struct {
	rec  state.Block
	ev   decide.Evidence
	at   time.Time
	lift bool
}

// New makes a Pusher.
func New(c Config) *Pusher {
	if c.Queue <= 0 {
		c.Queue = DefaultQueue
	}
	if c.Batch <= 0 {
		c.Batch = DefaultBatch
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = time.Second
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(c.MinBackoff, time.Minute)
	}
	if c.HTTP == nil {
		c.HTTP = newHTTPClient()
	}
	p := &Pusher{c: c, now: c.Now, q: make(chan item, c.Queue)}
	if p.now == nil {
		p.now = time.Now
	}
	p.host, _ = os.Hostname()
	p.cl = client{http: c.HTTP, now: p.now, agent: UserAgent(c.Version)}
	return p
}

// Blocked follows a block recorded (ledger.Follower): one that may leave
// this host goes into the queue, or is dropped when the queue is full.
// It never waits.
func (p *Pusher) Blocked(_ context.Context, e *ledger.Entry) {
	if !e.Decision.Reach.Beyond() {
		return
	}
	rec := e.Record
	rec.Ports = slices.Clone(rec.Ports)
	p.put(item{rec: rec, ev: e.Decision.Evidence, at: e.At})
}

// Lifted follows a lift (ledger.Follower): an administrator's unblock of
// a block that was pushed (decide.RecordReach) lifts its ban in the LAPI
// too; the other lifts push nothing (an expiry: the ban ends with its
// duration; an eviction or a newly protected address: a reason of this
// host's, not the administrator's word about the address).
func (p *Pusher) Lifted(_ context.Context, x ledger.Lift) {
	if !x.Cause.Administrator() || !x.Held || !decide.RecordReach(p.c.Settings(), x.Record).Beyond() {
		return
	}
	p.put(item{rec: state.Block{Addr: x.Record.Addr, Kind: x.Record.Kind}, lift: true})
}

// put queues it, or drops it when the queue is full; it never waits.
func (p *Pusher) put(it item) {
	select {
	case p.q <- it:
	default:
		p.Stats.Dropped.Add(1)
	}
}

// Run sends the queue in batches until ctx is done, in order (alerts
// together, each lift alone): what fails is sent again (with what came
// meanwhile, up to a batch) after a wait that doubles from MinBackoff to
// MaxBackoff; what the LAPI refuses for good is dropped.
func (p *Pusher) Run(ctx context.Context) {
	batch := make([]item, 0, p.c.Batch)
	wait := p.c.MinBackoff
	for {
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return
			case it := <-p.q:
				batch = append(batch, it)
			}
		}
		batch = p.fill(batch)
		done, err := p.send(ctx, batch)
		batch = batch[:copy(batch, batch[done:])]
		if err == nil {
			wait = p.c.MinBackoff
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, p.c.MaxBackoff)
	}
}

// fill adds what the queue holds to batch, up to a batch.
func (p *Pusher) fill(batch []item) []item {
	for len(batch) < p.c.Batch {
		select {
		case it := <-p.q:
			batch = append(batch, it)
		default:
			return batch
		}
	}
	return batch
}

func isRejected(err error) bool {
	var r *rejectedError
	return errors.As(err, &r)
}

// send sends batch once, in order, with the credentials in force, and
// counts; it returns how many of its items are done (taken, or refused
// for good) and, when it stopped short, why.
func (p *Pusher) send(ctx context.Context, batch []item) (int, error) {
	l := p.c.Settings().CrowdSec.LAPI
	if !l.Enabled() {
		p.Stats.Dropped.Add(uint64(len(batch)))
		return len(batch), nil // turned off by a reload: nothing to send to
	}
	creds := Credentials{URL: l.URL, MachineID: l.MachineID, Password: l.Password}
	for done := 0; done < len(batch); {
		n := 1
		var err error
		if batch[done].lift {
			err = p.lift(ctx, creds, batch[done])
		} else {
			for done+n < len(batch) && !batch[done+n].lift {
				n++
			}
			err = p.push(ctx, creds, batch[done:done+n])
		}
		switch {
		case err == nil:
		case isRejected(err):
			p.Stats.Failures.Add(1)
			p.Stats.Dropped.Add(uint64(n))
			p.warn("crowdsec.lapi: " + err.Error() + "; " + itoa(n) + " dropped")
		default:
			p.Stats.Failures.Add(1)
			if !p.failing {
				p.warn("crowdsec.lapi: " + err.Error() + "; retrying, blocks queued (at most " + itoa(p.c.Queue) + ")")
			}
			p.failing = true
			return done, err
		}
		done += n
	}
	if p.failing && p.c.Info != nil {
		p.c.Info("crowdsec.lapi: pushing alerts to " + l.URL + " again")
	}
	p.failing = false
	return len(batch), nil
}

// push sends alerts for blocks.
func (p *Pusher) push(ctx context.Context, creds Credentials, blocks []item) error {
	now := p.now()
	alerts := make([]alert, len(blocks))
	for i, it := range blocks {
		alerts[i] = alertOf(it, now, p.host)
	}
	body, err := json.Marshal(alerts)
	if err != nil {
		return err
	}
	if _, err := p.cl.push(ctx, creds, body); err != nil {
		return err
	}
	p.Stats.Pushed.Add(uint64(len(blocks)))
	return nil
}

// lift lifts the ban pushed for it.
func (p *Pusher) lift(ctx context.Context, creds Credentials, it item) error {
	n, err := p.cl.lift(ctx, creds, it.rec.Addr.String(), bouncerapi.Scenario(it.rec.Kind))
	if err == nil {
		p.Stats.Lifted.Add(uint64(n))
	}
	return err
}

func (p *Pusher) warn(msg string) {
	if p.c.Warn != nil {
		p.c.Warn(msg)
	}
}
