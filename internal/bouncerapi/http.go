package bouncerapi

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// Decision is a decision as the bouncer API sends it (CrowdSec's
// Decision model).
type Decision struct {
	ID        uint64 `json:"id"`
	Origin    string `json:"origin"`
	Type      string `json:"type"`
	Scope     string `json:"scope"`
	Value     string `json:"value"`
	Duration  string `json:"duration"`
	Until     string `json:"until"`
	Scenario  string `json:"scenario"`
	Simulated bool   `json:"simulated"`
}

// Stream is /v1/decisions/stream's answer.
type Stream struct {
	New     []Decision `json:"new"`
	Deleted []Decision `json:"deleted"`
}

// render is d as sent at now: its time left, in Go's format, to the
// second.
func render(d *dec, now time.Time) Decision {
	return Decision{ID: d.id, Origin: Origin, Type: Type, Scope: Scope, Value: d.addr.String(),
		Duration: d.expires.Sub(now).Round(time.Second).String(), Until: d.expires.UTC().Format(time.RFC3339),
		Scenario: d.scenario}
}

// Handler serves the bouncer API: GET (and HEAD) /v1/decisions/stream and
// /v1/decisions, with the key in X-Api-Key.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/decisions/stream", s.auth(s.stream))
	mux.HandleFunc("GET /v1/decisions", s.auth(s.decisions))
	return mux
}

// caller is who asks: the hash of their key, and whether they are off
// this host.
type caller struct {
	key    [32]byte
	remote bool
}

// auth admits a request whose X-Api-Key is a configured key; the others
// get 403, as CrowdSec's local API answers them.
func (s *Server) auth(h func(http.ResponseWriter, *http.Request, caller)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		k, ok := s.key(r.Header.Get("X-Api-Key"))
		if !ok {
			s.Stats.AuthFailures.Add(1)
			writeJSON(w, http.StatusForbidden, map[string]string{"message": "access forbidden"})
			return
		}
		s.Stats.Requests.Add(1)
		h(w, r, caller{key: k, remote: !Loopback(r.RemoteAddr)})
	}
}

// Loopback reports whether a request's remote address (host:port) is a
// loopback address: the bouncer runs on this host. A proxy's headers are
// not read: what a proxy forwards is remote.
func Loopback(remoteAddr string) bool {
	ap, err := netip.ParseAddrPort(remoteAddr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

func (s *Server) stream(w http.ResponseWriter, r *http.Request, c caller) {
	startup, f, err := parseStream(r.URL.Query())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": err.Error()})
		return
	}
	if r.Method == http.MethodHead {
		// A probe of the API: it gets no body, so its cursor stays.
		w.WriteHeader(http.StatusOK)
		return
	}
	added, lifted, now := s.changes(c, startup)
	out := Stream{New: []Decision{}, Deleted: []Decision{}}
	for _, d := range added {
		if f.match(d) {
			out.New = append(out.New, render(d, now))
		}
	}
	for _, d := range lifted {
		if f.match(d) {
			out.Deleted = append(out.Deleted, render(d, now))
		}
	}
	s.Stats.Served.Add(uint64(len(out.New) + len(out.Deleted)))
	writeJSON(w, http.StatusOK, out)
}

// changes is what caller c gets from the stream now, its cursor moved
// past it: everything in force at startup (or at its first call), else
// what changed since its last call.
func (s *Server) changes(c caller, startup bool) (added, lifted []*dec, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drain()
	now = s.now()
	id := cursorID(c)
	seq, ok := s.cursors[id]
	if startup || !ok {
		added = s.v.all(c.remote, now)
	} else {
		added, lifted, _ = s.v.since(seq, c.remote, now)
	}
	s.pruneCursors()
	s.cursors[id] = s.v.head
	return added, lifted, now
}

// pruneCursors forgets the cursors of keys no longer configured (a
// reload), so there are at most two a key; s.mu is held.
func (s *Server) pruneCursors() {
	ks := s.keys.Load()
	if ks == nil || len(s.cursors) < 2*len(ks.hashes)+1 {
		return
	}
	known := map[[32]byte]bool{}
	for _, h := range ks.hashes {
		known[h] = true
	}
	for id := range s.cursors {
		if !known[id.key] {
			delete(s.cursors, id)
		}
	}
}

func (s *Server) decisions(w http.ResponseWriter, r *http.Request, c caller) {
	f, err := parseDecisions(r.URL.Query())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": err.Error()})
		return
	}
	s.mu.Lock()
	s.drain()
	now := s.now()
	var ds []*dec
	if f.hasValue {
		if d := s.v.blocks[f.value]; d.seen(c.remote) && live(d, now) {
			ds = append(ds, d)
		}
	} else {
		ds = s.v.all(c.remote, now)
	}
	s.mu.Unlock()
	// CrowdSec's local API answers null when nothing matches.
	var out []Decision
	for _, d := range ds {
		if f.match(d) {
			out = append(out, render(d, now))
		}
	}
	s.Stats.Served.Add(uint64(len(out)))
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	bw := bufio.NewWriterSize(w, 32<<10)
	// An error here is the client's going away: nothing to do.
	_ = json.NewEncoder(bw).Encode(v)
	_ = bw.Flush()
}

// Serve listens on addr (TLS with cert and key, when given) and serves
// the API until ctx is done. A slow or idle client is cut off by the
// timeouts; none holds a lock of the view while its answer is written.
func (s *Server) Serve(ctx context.Context, addr, cert, key string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("crowdsec.listen: %w", err)
	}
	return s.ServeListener(ctx, ln, cert, key)
}

// ServeListener is Serve on a listener made already (tests).
func (s *Server) ServeListener(ctx context.Context, ln net.Listener, cert, key string) error {
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10,
		ErrorLog: log.New(io.Discard, "", 0)}
	if s.c.Logger != nil {
		hs.ErrorLog = slog.NewLogLogger(s.c.Logger.Handler(), slog.LevelDebug)
	}
	if cert != "" {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			ln.Close()
			return fmt.Errorf("crowdsec.tls_cert, crowdsec.tls_key: %w", err)
		}
		hs.TLSConfig = &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, hs.TLSConfig)
	}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	})
	defer stop()
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("bouncer API: %w", err)
	}
	return nil
}
