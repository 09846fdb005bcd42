package fleet

import (
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// authOptions are the connection's credentials and TLS, as cfg gives them.
func authOptions(cfg config.Fleet) ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case cfg.Credentials != "":
		opts = append(opts, nats.UserCredentials(cfg.Credentials))
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password.Reveal()))
	case cfg.NKey != "":
		o, err := nats.NkeyOptionFromSeed(cfg.NKey)
		if err != nil {
			return nil, fmt.Errorf("fleet: nkey %s: %w", cfg.NKey, err)
		}
		opts = append(opts, o)
	}
	if cfg.TLS.CA != "" {
		opts = append(opts, nats.RootCAs(cfg.TLS.CA))
	}
	if cfg.TLS.Cert != "" {
		opts = append(opts, nats.ClientCert(cfg.TLS.Cert, cfg.TLS.Key))
	}
	return opts, nil
}

// connect sets up the connection; the library connects and reconnects in
// the background (RetryOnFailedConnect), and the handlers log each
// transition.
func (c *Client) connect() (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("portsentry-nft " + c.name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ReconnectJitter(500*time.Millisecond, 2*time.Second),
		nats.RetryOnFailedConnect(true),
		// A server cut off by a partition that drops packets sends no
		// reset: without a check the connection would look alive for
		// the library's default 2 minutes x 2. watchLiveness
		// (liveness.go) gives it up after 20-30 s without any inbound
		// message nor PONG; the library's own ping, which load can fake
		// as death (it counts PONGs only), stays far behind. With writes
		// waiting (a burst published into the cut) the library's writer
		// holds the connection blocked in write(2) for its default
		// minute: a write stalled for flusherTimeout is a dead server
		// too.
		nats.PingInterval(libraryPing),
		nats.MaxPingsOutstanding(libraryPingsMissed),
		nats.FlusherTimeout(flusherTimeout),
		nats.ReconnectOnFlusherError(),
		// The outbox buffers while disconnected; the library must not.
		nats.ReconnectBufSize(-1),
		// Replies come to this host's own inbox, which the servers'
		// permissions let only this host read.
		nats.CustomInboxPrefix("_INBOX_" + c.name),
		nats.ConnectHandler(func(nc *nats.Conn) {
			c.log.Info("fleet: connected", "server", nc.ConnectedUrlRedacted())
			c.signalReconnect()
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if !nc.IsClosed() {
				c.log.Warn("fleet: disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.st.reconnects.Add(1)
			c.log.Info("fleet: reconnected", "server", nc.ConnectedUrlRedacted())
			c.signalReconnect()
		}),
		nats.ClosedHandler(func(*nats.Conn) { c.log.Info("fleet: connection closed") }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.log.Warn("fleet: server reported an error", "err", err)
		}),
	}
	auth, err := authOptions(c.cfg)
	if err != nil {
		return nil, err
	}
	opts = append(opts, auth...)
	opts = append(opts, c.opts.NATSOptions...)
	nc, err := nats.Connect(strings.Join(c.cfg.Servers, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("fleet: connect: %w", err)
	}
	return nc, nil
}

func (c *Client) signalReconnect() {
	select {
	case c.reconnected <- struct{}{}:
	default:
	}
	c.pub.out.kick()
}

// conn returns the JetStream context and whether it can be used now.
func (c *Client) conn() (jetstream.JetStream, *nats.Conn, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.js, c.nc, c.nc != nil && c.nc.IsConnected() && c.bucketsOK
}
