package capture

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	nfqueue "github.com/florianl/go-nfqueue/v2"
)

// Verdict is what becomes of a queued packet.
type Verdict uint8

const (
	Accept  Verdict = iota // let it go on
	Drop                   // drop it
	Pending                // the caller will call SetVerdict later
)

// QueueConfig tunes the NFQUEUE reader. Zero values take the defaults.
type QueueConfig struct {
	Num uint16
	// MaxLen is how many packets may wait for a verdict (default 4096);
	// beyond it the kernel accepts them (fail-open).
	MaxLen uint32
	// Snaplen is how many bytes of each packet are copied (default
	// DefaultSnaplen).
	Snaplen uint32
	// ReadBuffer is forced on the socket (default 8 MiB).
	ReadBuffer int
	NetNS      *os.File
	Logger     *slog.Logger
}

// Queue holds packets of one NFQUEUE until they get a verdict: inline
// blocking, where the probe that triggers a block is itself dropped.
//
// A queued packet carries no log prefix, so its rule is unknown (both probe
// rules queue to one number): a probe whose transport header lies past
// Snaplen cannot be told from garbage and is accepted as malformed. Within
// Snaplen (up to 964 bytes of IPv6 extension headers) it decodes.
type Queue struct {
	cfg QueueConfig
	nf  *nfqueue.Nfqueue
}

// OpenQueue binds the queue.
func OpenQueue(cfg QueueConfig) (*Queue, error) {
	if cfg.MaxLen == 0 {
		cfg.MaxLen = 4096
	}
	if cfg.Snaplen == 0 {
		cfg.Snaplen = DefaultSnaplen
	}
	if cfg.ReadBuffer == 0 {
		cfg.ReadBuffer = 8 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	nc := &nfqueue.Config{
		NfQueue:      cfg.Num,
		MaxPacketLen: cfg.Snaplen,
		MaxQueueLen:  cfg.MaxLen,
		Copymode:     nfqueue.NfQnlCopyPacket,
		Flags:        nfqueue.NfQaCfgFlagFailOpen,
		Logger:       quietLogger{},
	}
	if cfg.NetNS != nil {
		nc.NetNS = int(cfg.NetNS.Fd())
	}
	nf, err := nfqueue.Open(nc)
	if err != nil {
		return nil, fmt.Errorf("open NFQUEUE %d: %w", cfg.Num, err)
	}
	if err := forceReadBuffer(nf.Con, cfg.ReadBuffer); err != nil {
		nf.Close()
		return nil, fmt.Errorf("NFQUEUE %d: %w", cfg.Num, err)
	}
	return &Queue{cfg: cfg, nf: nf}, nil
}

// Close closes the queue (Run closes it itself when it returns).
func (q *Queue) Close() error { return q.nf.Close() }

// SetVerdict decides a packet that fn left Pending. Safe from any goroutine.
func (q *Queue) SetVerdict(id uint32, drop bool) error {
	v := nfqueue.NfAccept
	if drop {
		v = nfqueue.NfDrop
	}
	return q.nf.SetVerdict(id, v)
}

// Run calls fn with each queued packet until ctx is done; fn returns the
// verdict, or Pending and calls SetVerdict itself later. Packets still
// waiting when the queue closes are dropped by the kernel.
func (q *Queue) Run(ctx context.Context, fn func(pkt []byte, id uint32) Verdict, st *Stats) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := &receiveErrors{ctx: ctx, cancel: cancel, st: st}
	hook := func(a nfqueue.Attribute) int {
		if a.PacketID == nil {
			return 0
		}
		id := *a.PacketID
		errs.run = 0
		v := Accept
		if a.Payload != nil {
			st.Packets.Add(1)
			v = fn(*a.Payload, id)
		}
		if v != Pending {
			if err := q.SetVerdict(id, v == Drop); err != nil {
				q.cfg.Logger.Warn(fmt.Sprintf("adminalert: NFQUEUE verdict for packet %d: %v", id, err))
			}
		}
		return 0
	}
	if err := q.nf.RegisterWithErrorFunc(ctx, hook, errs.handle); err != nil {
		q.nf.Close()
		return fmt.Errorf("register NFQUEUE %d: %w", q.cfg.Num, err)
	}
	<-ctx.Done()
	cancel()
	q.nf.Close()
	return errs.fatal
}

// quietLogger drops go-nfqueue's own messages: the harmless "could not
// unbind ... i/o timeout" at shutdown would otherwise look like a fault.
type quietLogger struct{}

func (quietLogger) Debugf(string, ...any) {}
func (quietLogger) Errorf(string, ...any) {}
