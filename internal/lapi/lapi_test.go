package lapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

const (
	machine  = "psn-test-machine"
	password = "Pw-distinctive-lapi-password-42"
)

// fakeLAPI is CrowdSec's local API as far as a machine pushing alerts
// sees it: a login that gives a token, and POST /v1/alerts with it.
type fakeLAPI struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	tokens   map[string]bool
	n        int
	expire   time.Time // what a login says; zero: an hour from now
	fail     int       // answer the next fail pushes with 503
	reject   bool      // answer pushes with 400
	logins   int
	requests int       // pushes answered 201
	batches  [][]alert // the alerts of each push taken
	raw      []string  // their bodies
	badLogin int       // logins refused (wrong credentials)
	order    []string  // "alert ADDR" and "lift QUERY", as they came
}

func newFakeLAPI(t *testing.T) *fakeLAPI {
	f := &fakeLAPI{t: t, tokens: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/watchers/login", f.login)
	mux.HandleFunc("POST /v1/alerts", f.alerts)
	mux.HandleFunc("DELETE /v1/decisions", f.deleteDecisions)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeLAPI) login(w http.ResponseWriter, r *http.Request) {
	if ua := strings.Split(r.UserAgent(), "/"); len(ua) != 2 || ua[0] != "portsentry-nft" {
		// crowdsec 1.4.6 takes the machine's version from it, and refuses the login without one.
		f.t.Errorf("User-Agent %q, want portsentry-nft/VERSION", r.UserAgent())
	}
	var req loginRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.MachineID != machine || req.Password != password {
		f.mu.Lock()
		f.badLogin++
		f.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"code":401,"message":"incorrect Username or Password"}`)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	f.logins++
	tok := fmt.Sprintf("token-%d", f.n)
	f.tokens[tok] = true
	exp := f.expire
	if exp.IsZero() {
		exp = time.Now().Add(time.Hour)
	}
	json.NewEncoder(w).Encode(loginResponse{Code: 200, Expire: exp.Format(time.RFC3339), Token: tok})
}

func (f *fakeLAPI) alerts(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")] {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"code":401,"message":"Token is expired"}`)
		return
	}
	if f.fail > 0 {
		f.fail--
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var as []alert
	if err := json.Unmarshal(body, &as); err != nil || f.reject {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"message":"validation failure list:\nevents in body is required"}`)
		return
	}
	f.requests++
	for _, a := range as {
		f.order = append(f.order, "alert "+a.Source.Value)
	}
	f.batches = append(f.batches, as)
	f.raw = append(f.raw, string(body))
	ids := make([]string, len(as))
	for i := range as {
		ids[i] = fmt.Sprint(len(f.batches)*1000 + i)
	}
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(ids)
}

func (f *fakeLAPI) deleteDecisions(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")] {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	f.order = append(f.order, "lift "+r.URL.RawQuery)
	io.WriteString(w, `{"nbDeleted":"1"}`)
}

func (f *fakeLAPI) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.order...)
}

// revoke makes every token given so far unknown (a LAPI restarted with a
// new secret).
func (f *fakeLAPI) revoke() {
	f.mu.Lock()
	f.tokens = map[string]bool{}
	f.mu.Unlock()
}

// counts are the logins and the pushes taken so far.
func (f *fakeLAPI) counts() (logins, requests int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.logins, f.requests
}

// lines is a log the test reads while the Pusher writes it.
type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) add(s string) { l.mu.Lock(); l.l = append(l.l, s); l.mu.Unlock() }

func (l *lines) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.l...)
}

func (f *fakeLAPI) taken() []alert {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []alert
	for _, b := range f.batches {
		out = append(out, b...)
	}
	return out
}

// settings is a configuration pushing to url.
func settings(url string) func() *config.Config {
	c := config.Default()
	c.CrowdSec.LAPI = config.LAPI{URL: url, MachineID: machine, PasswordFile: "/x", Password: password}
	return func() *config.Config { return c }
}

// entry is a block as the ledger hands it over.
func entry(addr string, kind string, ev decide.Evidence, reach decide.Reach, now time.Time) *ledger.Entry {
	return &ledger.Entry{
		Decision: decide.Decision{Evidence: ev, Reach: reach, Timeout: time.Hour},
		At:       now,
		Record: state.Block{Addr: netip.MustParseAddr(addr), Expires: now.Add(time.Hour), Timeout: time.Hour, Kind: kind,
			Proto: "TCP", Port: 22, Ports: []uint16{21, 22, 23}, First: now.Add(-time.Second), Last: now, Tool: "nmap-syn", Evidence: ev.String()},
	}
}

// run runs p until the test ends.
func run(t *testing.T, p *Pusher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(2 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within 5s", what)
}

// A block on a completed handshake goes out as an alert with its
// scenario, source, ports and tool, and a ban for the block's time left;
// the machine logs in once.
func TestPushAlert(t *testing.T) {
	f := newFakeLAPI(t)
	now := time.Now()
	p := New(Config{Settings: settings(f.srv.URL + "/"), Now: func() time.Time { return now }})
	p.host = "web-01"
	run(t, p)
	p.Blocked(context.Background(), entry("10.201.0.2", "TCP connect", decide.Unforgeable, decide.Fleet, now))
	waitFor(t, "pushed", func() bool { return p.Stats.Pushed.Load() == 1 })
	as := f.taken()
	a := as[0]
	if a.Scenario != "portsentry-nft/tcp-connect" || a.Source != (source{Scope: "Ip", Value: "10.201.0.2", IP: "10.201.0.2"}) || !a.Remediation || a.EventsCount != 3 {
		t.Errorf("alert: %+v", a)
	}
	want := decision{Origin: "portsentry-nft", Type: "ban", Scope: "Ip", Value: "10.201.0.2", Duration: "1h0m0s", Scenario: "portsentry-nft/tcp-connect"}
	if len(a.Decisions) != 1 || a.Decisions[0] != want {
		t.Errorf("decisions %+v, want %+v", a.Decisions, want)
	}
	if m := fmt.Sprint(a.Events[0].Meta); !strings.Contains(m, "{ports 21,22,23}") || !strings.Contains(m, "{tool nmap-syn}") || !strings.Contains(m, "{evidence handshake}") {
		t.Errorf("event meta %s", m)
	}
	if a.Message != "TCP connect from 10.201.0.2 (nmap-syn) to ports 21,22,23: blocked for 1h0m0s by portsentry-nft on web-01" {
		t.Errorf("message %q", a.Message)
	}
	// Every field the LAPI requires is in the body, even when empty.
	for _, k := range []string{"scenario", "scenario_hash", "scenario_version", "message", "events_count", "start_at", "stop_at", "capacity", "leakspeed", "simulated", "events", "source"} {
		if !strings.Contains(f.raw[0], `"`+k+`":`) {
			t.Errorf("the body has no %q: %s", k, f.raw[0])
		}
	}
	if logins, _ := f.counts(); logins != 1 || p.Stats.Failures.Load() != 0 {
		t.Errorf("logins %d, failures %d", logins, p.Stats.Failures.Load())
	}
}

// Reach: a block on forgeable probes seen by this host alone is never
// pushed, nor a fleet block of another host; a block that may leave this
// host on evidence that does not bind would go without a decision.
func TestReachFiltering(t *testing.T) {
	f := newFakeLAPI(t)
	now := time.Now()
	p := New(Config{Settings: settings(f.srv.URL), Now: func() time.Time { return now }})
	run(t, p)
	ctx := context.Background()
	p.Blocked(ctx, entry("10.201.0.66", "TCP SYN scan", decide.Forgeable, decide.Local, now))
	p.Blocked(ctx, entry("10.201.0.67", "TCP SYN scan", decide.Forgeable, decide.FleetWeak, now))
	p.Blocked(ctx, entry("10.201.0.68", "manual", decide.Administrator, decide.Local, now)) // a fleet host's, mirrored
	p.Blocked(ctx, entry("10.201.0.3", "TCP SYN scan", decide.Corroborated, decide.Fleet, now))
	p.Blocked(ctx, entry("10.201.0.4", "TCP SYN scan", decide.Forgeable, decide.Fleet, now))
	waitFor(t, "pushed", func() bool { return p.Stats.Pushed.Load() == 2 })
	time.Sleep(20 * time.Millisecond)
	as := f.taken()
	if len(as) != 2 || as[0].Source.Value != "10.201.0.3" || as[1].Source.Value != "10.201.0.4" {
		t.Fatalf("pushed %+v", as)
	}
	if len(as[0].Decisions) != 1 || len(as[1].Decisions) != 0 || as[1].Remediation {
		t.Errorf("corroborated: %+v; forgeable: %+v", as[0].Decisions, as[1])
	}
}

// A token the LAPI refuses (401) is taken again, once, and the alert
// goes with the new one; a token about to expire is taken again before
// it is used.
func TestTokenRefresh(t *testing.T) {
	f := newFakeLAPI(t)
	now := time.Now()
	clock := func() time.Time { return now }
	p := New(Config{Settings: settings(f.srv.URL), Now: clock})
	run(t, p)
	p.Blocked(context.Background(), entry("10.201.0.2", "manual", decide.Administrator, decide.Fleet, now))
	waitFor(t, "first", func() bool { return p.Stats.Pushed.Load() == 1 })
	f.revoke()
	p.Blocked(context.Background(), entry("10.201.0.3", "manual", decide.Administrator, decide.Fleet, now))
	waitFor(t, "after the 401", func() bool { return p.Stats.Pushed.Load() == 2 })
	if logins, _ := f.counts(); logins != 2 || p.Stats.Failures.Load() != 0 {
		t.Errorf("after a 401: %d logins, %d failures; want 2 and 0", logins, p.Stats.Failures.Load())
	}
	// A token that expires within refreshBefore is not used.
	f.mu.Lock()
	f.expire = now.Add(refreshBefore / 2)
	f.mu.Unlock()
	f.revoke()
	p.Blocked(context.Background(), entry("10.201.0.4", "manual", decide.Administrator, decide.Fleet, now))
	waitFor(t, "third", func() bool { return p.Stats.Pushed.Load() == 3 })
	p.Blocked(context.Background(), entry("10.201.0.5", "manual", decide.Administrator, decide.Fleet, now))
	waitFor(t, "fourth", func() bool { return p.Stats.Pushed.Load() == 4 })
	if logins, requests := f.counts(); logins != 4 || requests != 4 {
		t.Errorf("with a token about to expire: %d logins, %d requests; want a login before each push", logins, requests)
	}
}

// Blocks that came while one request was out go together, a batch at a
// time.
func TestBatching(t *testing.T) {
	f := newFakeLAPI(t)
	now := time.Now()
	p := New(Config{Settings: settings(f.srv.URL), Batch: 4})
	for i := range 10 {
		p.Blocked(context.Background(), entry(fmt.Sprintf("10.201.1.%d", i+1), "manual", decide.Administrator, decide.Fleet, now))
	}
	run(t, p)
	waitFor(t, "pushed", func() bool { return p.Stats.Pushed.Load() == 10 })
	var sizes []int
	for _, b := range f.batches {
		sizes = append(sizes, len(b))
	}
	if fmt.Sprint(sizes) != "[4 4 2]" {
		t.Errorf("batches %v, want [4 4 2]", sizes)
	}
}

// A LAPI that fails gets the same alerts again after a wait that
// doubles, with what came meanwhile; each failure counts; nothing is
// lost.
func TestRetry(t *testing.T) {
	f := newFakeLAPI(t)
	f.fail = 3
	now := time.Now()
	var log lines
	p := New(Config{Settings: settings(f.srv.URL), MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Warn: log.add, Info: log.add})
	run(t, p)
	start := time.Now()
	p.Blocked(context.Background(), entry("10.201.0.2", "manual", decide.Administrator, decide.Fleet, now))
	p.Blocked(context.Background(), entry("10.201.0.3", "manual", decide.Administrator, decide.Fleet, now))
	waitFor(t, "pushed", func() bool { return p.Stats.Pushed.Load() == 2 })
	if took := time.Since(start); took < 5*time.Millisecond+10*time.Millisecond+20*time.Millisecond {
		t.Errorf("three failures retried within %v: want the waits 5, 10, 20 ms", took)
	}
	if p.Stats.Failures.Load() != 3 || len(f.taken()) != 2 || p.Stats.Dropped.Load() != 0 {
		t.Errorf("failures %d, taken %d, dropped %d", p.Stats.Failures.Load(), len(f.taken()), p.Stats.Dropped.Load())
	}
	if warned := log.get(); len(warned) != 2 || !strings.Contains(warned[0], "503") || !strings.Contains(warned[1], "again") {
		t.Errorf("log %q: want one warning and one recovery", warned)
	}
}

// A wrong password is a failure retried like any other (the
// administrator may fix the machine); the password never shows in the
// log.
func TestBadLogin(t *testing.T) {
	f := newFakeLAPI(t)
	c := config.Default()
	c.CrowdSec.LAPI = config.LAPI{URL: f.srv.URL, MachineID: machine, Password: "wrong-password-secret"}
	var log lines
	p := New(Config{Settings: func() *config.Config { return c }, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, Warn: log.add})
	run(t, p)
	p.Blocked(context.Background(), entry("10.201.0.2", "manual", decide.Administrator, decide.Fleet, time.Now()))
	waitFor(t, "failures", func() bool { return p.Stats.Failures.Load() >= 3 })
	if warned := log.get(); len(warned) != 1 || !strings.Contains(warned[0], `login as "`+machine+`": 401`) || strings.Contains(warned[0], "wrong-password") {
		t.Errorf("log %q", warned)
	}
}

// The LAPI refusing the alerts for good (400) drops them, with no retry.
func TestRejected(t *testing.T) {
	f := newFakeLAPI(t)
	f.reject = true
	p := New(Config{Settings: settings(f.srv.URL), MinBackoff: time.Millisecond})
	run(t, p)
	p.Blocked(context.Background(), entry("10.201.0.2", "manual", decide.Administrator, decide.Fleet, time.Now()))
	waitFor(t, "dropped", func() bool { return p.Stats.Dropped.Load() == 1 })
	time.Sleep(20 * time.Millisecond)
	if p.Stats.Failures.Load() != 1 || p.Stats.Pushed.Load() != 0 {
		t.Errorf("failures %d, pushed %d", p.Stats.Failures.Load(), p.Stats.Pushed.Load())
	}
}

// A full queue drops the newest block, counted, and Blocked never waits:
// with the LAPI dead (nothing listens) the ledger's calls stay short.
func TestQueueFullAndDeadLAPI(t *testing.T) {
	ln := httptest.NewServer(http.NotFoundHandler())
	dead := ln.URL
	ln.Close() // nothing listens there now
	p := New(Config{Settings: settings(dead), Queue: 100, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	run(t, p)
	now := time.Now()
	var worst time.Duration
	for i := range 1000 {
		e := entry(netip.AddrFrom4([4]byte{10, 201, byte(i >> 8), byte(i)}).String(), "manual", decide.Administrator, decide.Fleet, now)
		start := time.Now()
		p.Blocked(context.Background(), e)
		worst = max(worst, time.Since(start))
	}
	t.Logf("the slowest of 1000 Blocked calls with the LAPI dead: %v", worst)
	if worst > 5*time.Millisecond {
		t.Errorf("a Blocked call took %v with the LAPI dead", worst)
	}
	waitFor(t, "failures", func() bool { return p.Stats.Failures.Load() >= 2 })
	// At most a queue and a batch are held; the rest is dropped.
	if d := p.Stats.Dropped.Load(); d < 1000-100-DefaultBatch || p.Stats.Pushed.Load() != 0 {
		t.Errorf("dropped %d, pushed %d", d, p.Stats.Pushed.Load())
	}
}

// The User-Agent has exactly one slash, whatever the version says.
func TestUserAgent(t *testing.T) {
	for v, want := range map[string]string{"1.2.0": "portsentry-nft/1.2.0", "": "portsentry-nft/dev", "v1/x y\n": "portsentry-nft/v1-x-y-"} {
		if got := UserAgent(v); got != want {
			t.Errorf("UserAgent(%q) = %q, want %q", v, got, want)
		}
	}
}

// An administrator's unblock of a block that was pushed lifts its ban
// (this program's only: ip, origin and scenario), after the alert, in the
// queue's order; an expiry, and an unblock of a block that was never
// pushed, send nothing.
func TestLift(t *testing.T) {
	f := newFakeLAPI(t)
	now := time.Now()
	p := New(Config{Settings: settings(f.srv.URL)})
	ctx := context.Background()
	admin := entry("10.201.0.77", "manual", decide.Administrator, decide.Fleet, now)
	admin.Record.Origin = state.OriginManual
	forged := entry("10.201.0.66", "TCP SYN scan", decide.Forgeable, decide.Local, now)
	forged.Record.Origin = state.OriginDetect
	p.Blocked(ctx, admin)
	p.Blocked(ctx, forged)
	p.Lifted(ctx, ledger.Lift{Addr: admin.Record.Addr, Cause: ledger.Expired, Held: true, Record: admin.Record})
	p.Lifted(ctx, ledger.Lift{Addr: forged.Record.Addr, Cause: ledger.Unblocked, Held: true, Record: forged.Record})
	p.Lifted(ctx, ledger.Lift{Addr: admin.Record.Addr, Cause: ledger.Unblocked, Held: true, Record: admin.Record})
	run(t, p)
	waitFor(t, "lifted", func() bool { return p.Stats.Lifted.Load() == 1 })
	want := "[alert 10.201.0.77 lift ip=10.201.0.77&origin=portsentry-nft&scenario=portsentry-nft%2Fmanual]"
	if got := fmt.Sprint(f.seen()); got != want {
		t.Errorf("the LAPI saw %s, want %s", got, want)
	}
}
