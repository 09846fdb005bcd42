package bouncerapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

const (
	key1 = "key-one-0123456789abcdef"
	key2 = "key-two-0123456789abcdef"
)

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// fixture is a Server on a fixed clock with two keys.
type fixture struct {
	s   *Server
	now atomic.Pointer[time.Time]
}

func newFixture(t testing.TB, c Config) *fixture {
	cfg := config.Default()
	cfg.CrowdSec = config.CrowdSec{Listen: "127.0.0.1:0", Keys: []config.APIKey{{Name: "one", Key: key1}, {Name: "two", Key: key2}}}
	f := &fixture{}
	f.now.Store(&t0)
	c.Settings = func() *config.Config { return cfg }
	c.Now = func() time.Time { return *f.now.Load() }
	f.s = New(c)
	return f
}

func (f *fixture) advance(d time.Duration) { t := f.now.Load().Add(d); f.now.Store(&t) }

// block follows a block of addr on evidence ev, as the ledger records it.
func (f *fixture) block(addr string, ev decide.Evidence, kind string, d time.Duration) {
	origin := state.OriginDetect
	if ev == decide.Administrator {
		origin = state.OriginManual
	}
	reach := decide.Local
	if ev >= decide.Corroborated {
		reach = decide.Fleet
	}
	a := netip.MustParseAddr(addr)
	f.s.Blocked(context.Background(), &ledger.Entry{
		Decision: decide.Decision{Action: decide.Block, Addr: a, Origin: origin, Timeout: d, Evidence: ev, Reach: reach},
		Record:   state.Block{Addr: a, Expires: f.now.Load().Add(d), Timeout: d, Kind: kind, Origin: origin, Evidence: ev.String()},
	})
}

func (f *fixture) lift(addr string, c ledger.Cause) {
	f.s.Lifted(context.Background(), ledger.Lift{Addr: netip.MustParseAddr(addr), Cause: c, Held: true})
}

// get asks path with key from remoteAddr and decodes the answer into out.
func (f *fixture) get(t testing.TB, path, key, remoteAddr string, out any) int {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.RemoteAddr = remoteAddr
	if key != "" {
		r.Header.Set("X-Api-Key", key)
	}
	w := httptest.NewRecorder()
	f.s.Handler().ServeHTTP(w, r)
	if out != nil && w.Code == http.StatusOK {
		if err := json.Unmarshal(w.Body.Bytes(), out); err != nil {
			t.Fatalf("%s: %v: %s", path, err, w.Body)
		}
	}
	return w.Code
}

const (
	local  = "127.0.0.1:40000"
	remote = "10.201.0.2:40000"
)

func (f *fixture) stream(t testing.TB, startup bool, key, from string) (added, lifted []string) {
	t.Helper()
	var s Stream
	if code := f.get(t, fmt.Sprintf("/v1/decisions/stream?startup=%t", startup), key, from, &s); code != http.StatusOK {
		t.Fatalf("stream: %d", code)
	}
	return values(s.New), values(s.Deleted)
}

func values(ds []Decision) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Value)
	}
	slices.Sort(out)
	return out
}

func TestAuth(t *testing.T) {
	f := newFixture(t, Config{})
	for _, k := range []string{"", "nope", key1 + "x", key1[:len(key1)-1], " " + key1} {
		if code := f.get(t, "/v1/decisions/stream?startup=true", k, local, nil); code != http.StatusForbidden {
			t.Errorf("key %q: %d, want 403", k, code)
		}
		if code := f.get(t, "/v1/decisions", k, local, nil); code != http.StatusForbidden {
			t.Errorf("key %q, /v1/decisions: %d, want 403", k, code)
		}
	}
	if n := f.s.Stats.AuthFailures.Load(); n != 10 {
		t.Errorf("auth failures %d, want 10", n)
	}
	for _, k := range []string{key1, key2} {
		if code := f.get(t, "/v1/decisions/stream?startup=true", k, local, nil); code != http.StatusOK {
			t.Errorf("key %q: %d", k, code)
		}
	}
	if n := f.s.Stats.Requests.Load(); n != 2 {
		t.Errorf("requests %d, want 2", n)
	}
	if code := f.get(t, "/v1/alerts", key1, local, nil); code != http.StatusNotFound {
		t.Errorf("/v1/alerts: %d, want 404", code)
	}
}

// Each key has its own cursor: startup gives what is in force, the next
// calls what changed since that key's last call; lifts and expiries are
// deleted.
func TestCursors(t *testing.T) {
	f := newFixture(t, Config{})
	f.block("10.201.0.2", decide.Forgeable, "TCP SYN scan", time.Hour)
	added, lifted := f.stream(t, true, key1, local)
	if !slices.Equal(added, []string{"10.201.0.2"}) || len(lifted) != 0 {
		t.Fatalf("startup: %v %v", added, lifted)
	}
	if added, lifted := f.stream(t, false, key1, local); len(added)+len(lifted) != 0 {
		t.Errorf("nothing changed: %v %v", added, lifted)
	}
	f.block("10.201.0.3", decide.Forgeable, "UDP scan", time.Hour)
	f.block("fd00:201::3", decide.Administrator, "manual", time.Hour)
	f.lift("10.201.0.2", ledger.Unblocked)
	added, lifted = f.stream(t, false, key1, local)
	if !slices.Equal(added, []string{"10.201.0.3", "fd00:201::3"}) || !slices.Equal(lifted, []string{"10.201.0.2"}) {
		t.Errorf("key1 after changes: new %v deleted %v", added, lifted)
	}
	// key2 never asked: its first call, startup or not, is what is in force.
	added, lifted = f.stream(t, false, key2, local)
	if !slices.Equal(added, []string{"10.201.0.3", "fd00:201::3"}) || len(lifted) != 0 {
		t.Errorf("key2 first call: new %v deleted %v", added, lifted)
	}
	f.lift("10.201.0.3", ledger.Expired)
	for _, k := range []string{key1, key2} {
		if added, lifted := f.stream(t, false, k, local); len(added) != 0 || !slices.Equal(lifted, []string{"10.201.0.3"}) {
			t.Errorf("%s after the expiry: new %v deleted %v", k, added, lifted)
		}
	}
	// A block and its lift between two calls: nothing to delete.
	f.block("10.201.0.9", decide.Forgeable, "TCP SYN scan", time.Hour)
	f.lift("10.201.0.9", ledger.Evicted)
	if added, lifted := f.stream(t, false, key1, local); len(added)+len(lifted) != 0 {
		t.Errorf("blocked and lifted between calls: new %v deleted %v", added, lifted)
	}
	// startup=true again: everything in force, nothing deleted.
	if added, lifted := f.stream(t, true, key1, local); !slices.Equal(added, []string{"fd00:201::3"}) || len(lifted) != 0 {
		t.Errorf("startup again: new %v deleted %v", added, lifted)
	}
}

// A bouncer over loopback gets every block; another only those that may
// leave this host: an administrator's, a handshake's, a corroborated one,
// never one on probes anyone can forge.
func TestRemoteGetsOnlyWhatMayLeave(t *testing.T) {
	f := newFixture(t, Config{})
	f.block("10.201.0.2", decide.Forgeable, "TCP SYN scan", time.Hour)
	f.block("10.201.0.3", decide.Administrator, "manual", time.Hour)
	f.block("10.201.0.4", decide.Unforgeable, "TCP connect", time.Hour)
	f.block("10.201.0.5", decide.Corroborated, "TCP SYN scan", time.Hour)
	all := []string{"10.201.0.2", "10.201.0.3", "10.201.0.4", "10.201.0.5"}
	far := []string{"10.201.0.3", "10.201.0.4", "10.201.0.5"}
	for _, from := range []string{local, "[::1]:5000", "[::ffff:127.0.0.1]:5000"} {
		if added, _ := f.stream(t, true, key1, from); !slices.Equal(added, all) {
			t.Errorf("from %s: %v, want %v", from, added, all)
		}
	}
	for _, from := range []string{remote, "[fd00:201::2]:5000", "192.0.2.1:80"} {
		if added, _ := f.stream(t, true, key1, from); !slices.Equal(added, far) {
			t.Errorf("from %s: %v, want %v", from, added, far)
		}
	}
	// The lift of a block the remote bouncer never had is not news to it.
	f.lift("10.201.0.2", ledger.Unblocked)
	f.lift("10.201.0.3", ledger.Unblocked)
	if added, lifted := f.stream(t, false, key1, remote); len(added) != 0 || !slices.Equal(lifted, []string{"10.201.0.3"}) {
		t.Errorf("remote after lifts: new %v deleted %v", added, lifted)
	}
	if added, lifted := f.stream(t, false, key1, local); len(added) != 0 || !slices.Equal(lifted, []string{"10.201.0.2", "10.201.0.3"}) {
		t.Errorf("local after lifts: new %v deleted %v", added, lifted)
	}
	var ds []Decision
	f.get(t, "/v1/decisions?ip=10.201.0.2", key1, remote, &ds)
	f.get(t, "/v1/decisions", key1, remote, &ds)
	if got := values(ds); !slices.Equal(got, []string{"10.201.0.4", "10.201.0.5"}) {
		t.Errorf("remote /v1/decisions: %v", got)
	}
}

// A forgeable block that later rests on an administrator's word (blocked
// again by one) reaches the remote bouncer then.
func TestReblockChangesReach(t *testing.T) {
	f := newFixture(t, Config{})
	f.block("10.201.0.2", decide.Forgeable, "TCP SYN scan", time.Hour)
	if added, _ := f.stream(t, true, key1, remote); len(added) != 0 {
		t.Fatalf("remote got a forgeable block: %v", added)
	}
	f.block("10.201.0.2", decide.Administrator, "manual", 2*time.Hour)
	if added, lifted := f.stream(t, false, key1, remote); !slices.Equal(added, []string{"10.201.0.2"}) || len(lifted) != 0 {
		t.Errorf("after the administrator's block: new %v deleted %v", added, lifted)
	}
}

// The decisions have CrowdSec's fields: a ban of one address, its time
// left in Go's format, the scenario named for the scan.
func TestDecisionFields(t *testing.T) {
	f := newFixture(t, Config{})
	f.block("10.201.0.2", decide.Forgeable, "TCP SYN scan", time.Hour)
	f.advance(90 * time.Second)
	var s Stream
	f.get(t, "/v1/decisions/stream?startup=true", key1, local, &s)
	if len(s.New) != 1 {
		t.Fatalf("new: %+v", s.New)
	}
	d := s.New[0]
	want := Decision{ID: d.ID, Origin: "portsentry-nft", Type: "ban", Scope: "Ip", Value: "10.201.0.2", Duration: "58m30s",
		Until: t0.Add(time.Hour).Format(time.RFC3339), Scenario: "portsentry-nft/tcp-syn-scan"}
	if d != want || d.ID == 0 {
		t.Errorf("decision\n got %+v\nwant %+v", d, want)
	}
	if _, err := time.ParseDuration(d.Duration); err != nil {
		t.Error(err)
	}
	// Less than a second left: no longer sent (the expiry follows).
	f.advance(time.Hour - 90*time.Second - 500*time.Millisecond)
	if added, _ := f.stream(t, true, key1, local); len(added) != 0 {
		t.Errorf("expiring: %v", added)
	}
	// The raw answer is CrowdSec's shape.
	r := httptest.NewRequest(http.MethodGet, "/v1/decisions/stream?startup=true", nil)
	r.Header.Set("X-Api-Key", key1)
	r.RemoteAddr = local
	w := httptest.NewRecorder()
	f.s.Handler().ServeHTTP(w, r)
	if got := w.Body.String(); got != "{\"new\":[],\"deleted\":[]}\n" {
		t.Errorf("empty stream: %q", got)
	}
}

func TestScenario(t *testing.T) {
	for in, want := range map[string]string{
		"TCP SYN scan":           "portsentry-nft/tcp-syn-scan",
		"TCP unknown-flags scan": "portsentry-nft/tcp-unknown-flags-scan",
		"manual":                 "portsentry-nft/manual",
		"":                       "portsentry-nft/block",
		"  UDP   scan  ":         "portsentry-nft/udp-scan",
		"ÄÖ/..":                  "portsentry-nft/block",
	} {
		if got := Scenario(in); got != want {
			t.Errorf("Scenario(%q) = %q, want %q", in, got, want)
		}
	}
	if got := Scenario(string(make([]byte, 1000)) + "x" + fmt.Sprint(make([]int, 200))); len(got) > len("portsentry-nft/")+maxScenario {
		t.Errorf("long kind: %d bytes", len(got))
	}
}

// decisionQueries are /v1/decisions queries and what TestDecisionsQuery
// answers to each (nil: null).
var decisionQueries = map[string][]string{
	"":                                    {"10.201.0.2", "10.201.1.3", "fd00:201::2"},
	"?ip=10.201.0.2":                      {"10.201.0.2"},
	"?ip=::ffff:10.201.0.2":               {"10.201.0.2"},
	"?ip=10.201.0.7":                      nil,
	"?scope=ip&value=fd00:201::2":         {"fd00:201::2"},
	"?scope=Ip&value=fd00:201::2":         {"fd00:201::2"},
	"?scope=range&value=10.0.0.0/8":       nil,
	"?scope=username&value=bob":           nil,
	"?range=10.201.0.0/24&contains=false": {"10.201.0.2"},
	"?range=10.201.0.0/24":                nil,
	"?range=10.201.0.2/32":                {"10.201.0.2"},
	"?type=ban":                           {"10.201.0.2", "10.201.1.3", "fd00:201::2"},
	"?type=captcha":                       nil,
	"?origins=portsentry-nft":             {"10.201.0.2", "10.201.1.3", "fd00:201::2"},
	"?origins=crowdsec,cscli":             nil,
	"?scenarios_containing=syn,udp":       {"10.201.0.2", "fd00:201::2"},
	"?scenarios_not_containing=manual":    {"10.201.0.2", "fd00:201::2"},
}

func TestDecisionsQuery(t *testing.T) {
	f := newFixture(t, Config{})
	f.block("10.201.0.2", decide.Forgeable, "TCP SYN scan", time.Hour)
	f.block("10.201.1.3", decide.Administrator, "manual", time.Hour)
	f.block("fd00:201::2", decide.Forgeable, "UDP scan", time.Hour)
	for q, want := range decisionQueries {
		var ds []Decision
		r := httptest.NewRequest(http.MethodGet, "/v1/decisions"+q, nil)
		r.Header.Set("X-Api-Key", key2)
		r.RemoteAddr = local
		w := httptest.NewRecorder()
		f.s.Handler().ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Errorf("%q: %d %s", q, w.Code, w.Body)
			continue
		}
		if want == nil && w.Body.String() != "null\n" {
			t.Errorf("%q: %q, want null (as CrowdSec's local API)", q, w.Body)
		}
		if err := json.Unmarshal(w.Body.Bytes(), &ds); err != nil {
			t.Fatal(err)
		}
		if got := values(ds); !slices.Equal(got, want) {
			t.Errorf("%q: %v, want %v", q, got, want)
		}
	}
	for _, q := range []string{"?ip=nope", "?range=10.0.0.0", "?range=10.0.0.0/8&contains=maybe", "?ip=1.2.3.4&ip=1.2.3.5"} {
		if code := f.get(t, "/v1/decisions"+q, key1, local, nil); code != http.StatusBadRequest {
			t.Errorf("%q: %d, want 400", q, code)
		}
	}
	for _, q := range []string{"?startup=maybe", "?startup=true&startup=false"} {
		if code := f.get(t, "/v1/decisions/stream"+q, key1, local, nil); code != http.StatusBadRequest {
			t.Errorf("stream %q: %d, want 400", q, code)
		}
	}
	// The stream's filters: a bouncer asking for ranges only gets nothing.
	var s Stream
	f.get(t, "/v1/decisions/stream?startup=true&scopes=range", key1, local, &s)
	if len(s.New) != 0 {
		t.Errorf("scopes=range: %v", values(s.New))
	}
	f.get(t, "/v1/decisions/stream?startup=true&scopes=ip,range", key1, local, &s)
	if len(s.New) != 3 {
		t.Errorf("scopes=ip,range: %v", values(s.New))
	}
}

// Seed takes the ledger's blocks in force at start, with the reach their
// records give.
func TestSeed(t *testing.T) {
	f := newFixture(t, Config{})
	exp := t0.Add(time.Hour)
	f.s.Seed([]state.Block{
		{Addr: netip.MustParseAddr("10.201.0.2"), Expires: exp, Kind: "TCP SYN scan", Origin: state.OriginDetect, Evidence: "forgeable"},
		{Addr: netip.MustParseAddr("10.201.0.3"), Expires: exp, Kind: "manual", Origin: state.OriginManual, Evidence: "administrator"},
		{Addr: netip.MustParseAddr("10.201.0.4"), Expires: exp, Kind: "TCP SYN scan", Origin: state.OriginFleet, Evidence: "administrator"},
		{Addr: netip.MustParseAddr("10.201.0.5"), Expires: exp, Kind: "TCP SYN scan", Origin: state.OriginDetect},
	})
	if added, _ := f.stream(t, true, key1, local); len(added) != 4 {
		t.Errorf("local: %v", added)
	}
	// The fleet's block came from another host: it leaves this one no
	// further (as the fleet never publishes it again).
	if added, _ := f.stream(t, true, key1, remote); !slices.Equal(added, []string{"10.201.0.3"}) {
		t.Errorf("remote: %v", added)
	}
}

// A bouncer that stayed away longer than the change log reaches gets
// everything in force and the lifts the log still holds.
func TestCursorBehindTheLog(t *testing.T) {
	f := newFixture(t, Config{LogSize: 8})
	f.block("10.201.0.2", decide.Forgeable, "TCP SYN scan", time.Hour)
	f.block("10.201.0.3", decide.Forgeable, "TCP SYN scan", time.Hour)
	f.stream(t, true, key1, local)
	f.lift("10.201.0.2", ledger.Unblocked)
	for i := range 20 {
		f.block(fmt.Sprintf("10.201.1.%d", i), decide.Forgeable, "TCP SYN scan", time.Hour)
	}
	for i := range 16 {
		f.lift(fmt.Sprintf("10.201.1.%d", i), ledger.Unblocked)
	}
	added, lifted := f.stream(t, false, key1, local)
	want := []string{"10.201.0.3", "10.201.1.16", "10.201.1.17", "10.201.1.18", "10.201.1.19"}
	if !slices.Equal(added, want) {
		t.Errorf("new %v, want %v", added, want)
	}
	if len(lifted) != 8 || lifted[0] != "10.201.1.10" {
		t.Errorf("deleted %v, want the 8 lifts the log holds", lifted)
	}
	if added, lifted := f.stream(t, false, key1, local); len(added)+len(lifted) != 0 {
		t.Errorf("then: %v %v", added, lifted)
	}
}

// The view is bounded: beyond MaxBlocks a block is not served (counted);
// 100k blocks take a bounded heap, and a startup answer with all of them
// is quick.
func TestBoundedUnder100k(t *testing.T) {
	const n = 100_000
	f := newFixture(t, Config{MaxBlocks: n})
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range n + 100 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		f.s.Blocked(context.Background(), &ledger.Entry{
			Decision: decide.Decision{Reach: decide.Local},
			Record:   state.Block{Addr: a, Expires: t0.Add(time.Hour), Kind: "TCP SYN scan"},
		})
	}
	f.s.mu.Lock()
	f.s.drain()
	f.s.mu.Unlock()
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("100k blocks: %.1f MB of heap (%.0f bytes a block)", float64(heap)/1e6, float64(heap)/n)
	if heap > 64<<20 {
		t.Errorf("100k blocks take %d MB", heap>>20)
	}
	if d := f.s.Stats.Dropped.Load(); d != 100 {
		t.Errorf("dropped %d, want 100", d)
	}
	if len(f.s.v.log) != 2*n {
		t.Errorf("log of %d", len(f.s.v.log))
	}
	start := time.Now()
	var s Stream
	f.get(t, "/v1/decisions/stream?startup=true", key1, local, &s)
	t.Logf("startup answer with %d decisions: %v", len(s.New), time.Since(start))
	if len(s.New) != n {
		t.Errorf("startup: %d decisions", len(s.New))
	}
	if added, lifted := f.stream(t, false, key1, local); len(added)+len(lifted) != 0 {
		t.Errorf("then: %d %d", len(added), len(lifted))
	}
}

// A client that reads its answer slowly holds no lock the ledger needs:
// Blocked and Lifted return at once while it stalls.
func TestSlowClientCostsTheLedgerNothing(t *testing.T) {
	const n = 50_000
	f := newFixture(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.s.Run(ctx)
	for i := range n {
		f.block(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}).String(), decide.Forgeable, "TCP SYN scan", time.Hour)
	}
	srv := httptest.NewServer(f.s.Handler())
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/decisions/stream?startup=true", nil)
	req.Header.Set("X-Api-Key", key1)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Read one byte and stall: the server is blocked writing to us.
	if _, err := resp.Body.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	var worst time.Duration
	for i := range 10_000 {
		start := time.Now()
		f.block(netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}).String(), decide.Forgeable, "TCP SYN scan", time.Hour)
		f.lift(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}).String(), ledger.Expired)
		worst = max(worst, time.Since(start))
	}
	t.Logf("Blocked+Lifted while a client stalls: worst %v", worst)
	if worst > 50*time.Millisecond {
		t.Errorf("the ledger waited %v", worst)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
}

// The keys are the configuration's in force: after a reload that drops a
// key, it is refused, and its cursors go.
func TestKeysFollowReload(t *testing.T) {
	cfg := config.Default()
	cfg.CrowdSec.Keys = []config.APIKey{{Name: "one", Key: key1}, {Name: "two", Key: key2}}
	var cur atomic.Pointer[config.Config]
	cur.Store(cfg)
	s := New(Config{Settings: cur.Load})
	f := &fixture{s: s}
	f.now.Store(&t0)
	s.now = func() time.Time { return *f.now.Load() }
	f.stream(t, true, key1, local)
	f.stream(t, true, key2, local)
	f.stream(t, true, key2, remote)
	next := *cfg
	next.CrowdSec.Keys = []config.APIKey{{Name: "one", Key: key1}}
	cur.Store(&next)
	if code := f.get(t, "/v1/decisions/stream", key2, local, nil); code != http.StatusForbidden {
		t.Errorf("a dropped key: %d, want 403", code)
	}
	f.stream(t, false, key1, local)
	if n := len(s.cursors); n != 1 {
		t.Errorf("%d cursors after the reload, want key1's only", n)
	}
	// HEAD, as bouncers probe the API: no body, the same status.
	r := httptest.NewRequest(http.MethodHead, "/v1/decisions/stream", nil)
	r.Header.Set("X-Api-Key", key1)
	r.RemoteAddr = local
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	if w.Code != http.StatusOK || w.Body.Len() != 0 {
		t.Errorf("HEAD: %d %q", w.Code, w.Body)
	}
	// It moved no cursor: the next GET has what came before it.
	fx := newFixture(t, Config{})
	fx.stream(t, true, key1, local)
	fx.block("10.201.0.2", decide.Forgeable, "TCP SYN scan", time.Hour)
	w = httptest.NewRecorder()
	fx.s.Handler().ServeHTTP(w, r)
	if added, _ := fx.stream(t, false, key1, local); !slices.Equal(added, []string{"10.201.0.2"}) {
		t.Errorf("after a HEAD: new %v", added)
	}
}
