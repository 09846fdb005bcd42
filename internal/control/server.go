package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// The socket's bounds by default (Server's fields).
const (
	// DefaultIdleTimeout is how long a connection may take to send its
	// whole request (the CLI sends it at once); a connection silent for
	// longer is closed.
	DefaultIdleTimeout = 3 * time.Second
	// DefaultMaxConns is how many connections are held at once; past it a
	// new one takes the place of the oldest that has not sent its request.
	DefaultMaxConns = 64
	// DefaultMaxRequestBytes bounds a request: a block list of some 300k
	// addresses.
	DefaultMaxRequestBytes = 16 << 20
	// DefaultAnswerTimeout bounds the handling and the answer.
	DefaultAnswerTimeout = 2 * time.Minute
)

// Server answers requests on the control socket. Its bounds keep a flood
// of connections from exhausting the daemon's file descriptors or memory,
// and from keeping the admin out: connections held open and silent are
// closed after IdleTimeout, and sooner when newer ones need their place.
// A zero field means its Default.
type Server struct {
	Handler         Handler
	IdleTimeout     time.Duration
	MaxConns        int
	MaxRequestBytes int64
	AnswerTimeout   time.Duration
}

// Serve answers requests on l with h and the default bounds until ctx is
// done.
func Serve(ctx context.Context, l *net.UnixListener, h Handler) {
	(&Server{Handler: h}).Serve(ctx, l)
}

func (s *Server) defaults() Server {
	d := *s
	d.IdleTimeout = orDefault(d.IdleTimeout, DefaultIdleTimeout)
	d.AnswerTimeout = orDefault(d.AnswerTimeout, DefaultAnswerTimeout)
	d.MaxConns = orDefault(d.MaxConns, DefaultMaxConns)
	d.MaxRequestBytes = orDefault(d.MaxRequestBytes, DefaultMaxRequestBytes)
	return d
}

// orDefault is v, or def when v is zero.
func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Serve answers requests until ctx is done. Only root (by SO_PEERCRED) is
// served, on top of the socket's 0600 mode.
func (s *Server) Serve(ctx context.Context, l *net.UnixListener) {
	cfg := s.defaults()
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() { <-ctx.Done(); l.Close() }()
	p := newPool(cfg.MaxConns)
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		// The deadline is set before the connection can wait in line.
		c.SetReadDeadline(time.Now().Add(cfg.IdleTimeout))
		m, ok := p.admit(c)
		if !ok {
			c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			json.NewEncoder(c).Encode(Response{Error: fmt.Sprintf("busy: %d requests are being served; try again", cfg.MaxConns)})
			c.Close()
			continue
		}
		wg.Go(func() {
			defer p.leave(m)
			cfg.serveConn(ctx, c, p, m)
		})
	}
}

func (s *Server) serveConn(ctx context.Context, c *net.UnixConn, p *pool, m *member) {
	enc := json.NewEncoder(c)
	c.SetWriteDeadline(time.Now().Add(s.IdleTimeout))
	if uid, err := peerUID(c); err != nil || uid != 0 {
		enc.Encode(Response{Error: "permission denied: the control socket serves root only"})
		return
	}
	req, err := s.read(c)
	if err != nil {
		enc.Encode(Response{Error: err.Error()})
		return
	}
	p.answering(m)
	ctx, cancel := context.WithTimeout(ctx, s.AnswerTimeout)
	defer cancel()
	c.SetWriteDeadline(time.Now().Add(s.AnswerTimeout))
	if req.Cmd == "list" && req.Stream {
		s.streamList(ctx, c)
		return
	}
	enc.Encode(handle(ctx, s.Handler, req))
}

// streamList writes the Response, then each block on its line as the
// Handler gives it, then the end (ListItem). Each line is written
// through a buffer, never the whole list.
func (s *Server) streamList(ctx context.Context, c *net.UnixConn) {
	w := bufio.NewWriterSize(c, 64<<10)
	enc := json.NewEncoder(w)
	enc.Encode(Response{OK: true, Stream: true})
	n := 0
	err := s.Handler.List(ctx, func(b Block) error {
		n++
		return enc.Encode(ListItem{Block: &b})
	})
	if err != nil {
		enc.Encode(ListItem{Error: err.Error()})
	} else {
		enc.Encode(ListItem{End: true, Count: n})
	}
	w.Flush()
}

// read reads one request of at most MaxRequestBytes.
func (s *Server) read(c io.Reader) (Request, error) {
	var req Request
	lr := &io.LimitedReader{R: c, N: s.MaxRequestBytes + 1}
	if err := json.NewDecoder(lr).Decode(&req); err != nil {
		switch {
		case lr.N <= 0:
			return req, fmt.Errorf("bad request: larger than %d bytes", s.MaxRequestBytes)
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Cut short after IdleTimeout, or sooner to make room.
			return req, fmt.Errorf("closed: no whole request within %s of connecting", s.IdleTimeout)
		}
		return req, fmt.Errorf("bad request: %w", err)
	}
	return req, nil
}
func handle(ctx context.Context, h Handler, req Request) Response {
	switch req.Cmd {
	case "status":
		s := h.Status()
		return Response{OK: true, Status: &s}
	case "list":
		var bs []Block
		err := h.List(ctx, func(b Block) error { bs = append(bs, b); return nil })
		if err != nil {
			return Response{Error: err.Error()}
		}
		return Response{OK: true, Blocks: bs}
	case "block", "unblock":
		var n int
		var err error
		switch addrs := req.addrs(); {
		case len(addrs) == 0 && !(req.Cmd == "unblock" && req.All):
			err = errors.New("no address given")
		case req.Cmd == "block":
			n, err = h.Block(ctx, addrs, req.Timeout)
		default:
			n, err = h.Unblock(ctx, addrs, req.All)
		}
		switch {
		case errors.Is(err, ErrNotDurable):
			return Response{OK: true, Count: n, NotDurable: true, Warning: err.Error()}
		case err != nil:
			return Response{Error: err.Error()}
		}
		return Response{OK: true, Count: n}
	}
	return Response{Error: fmt.Sprintf("unknown command %q", req.Cmd)}
}
