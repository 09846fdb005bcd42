package fleet

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// The leaf topology BenchmarkFleetScale makes from deploy/nats/leaf: the
// files parse; each site's leaf has its hosts (and the administrator) as
// users, each allowed to write its own records only; each site's hub user
// names its site's hosts' records and inboxes, no other host's; the
// leaves log in to the hub with their own seeds, on the hub's free ports.
func TestScaleLeafConf(t *testing.T) {
	const n, sites = 7, 3
	lp := newLeafPorts(t, sites)
	dir := scaleLeafConf(t, n, sites, lp)
	hub, err := server.ProcessConfigFile(filepath.Join(dir, "hub2.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if hub.Port != lp.client[1] || hub.Cluster.Port != lp.route[1] || hub.LeafNode.Port != lp.leaf[1] || hub.JetStreamDomain != "hub" {
		t.Errorf("hub2: ports %d %d %d, domain %q; want %d %d %d, hub", hub.Port, hub.Cluster.Port, hub.LeafNode.Port,
			hub.JetStreamDomain, lp.client[1], lp.route[1], lp.leaf[1])
	}
	if len(hub.Nkeys) != 1+sites {
		t.Errorf("the hub has %d users, want the administrator and %d leaves", len(hub.Nkeys), sites)
	}
	for k := range sites {
		site, err := server.ProcessConfigFile(filepath.Join(dir, fmt.Sprintf("site-%d.conf", k+1)))
		if err != nil {
			t.Fatal(err)
		}
		if site.Port != lp.site[k] || site.JetStreamDomain != siteDomainN(k) || len(site.LeafNode.Remotes) != 1 {
			t.Fatalf("site %d: port %d, domain %q, %d remotes", k+1, site.Port, site.JetStreamDomain, len(site.LeafNode.Remotes))
		}
		if u := site.LeafNode.Remotes[0].URLs; len(u) != 3 || u[2].Port() != fmt.Sprint(lp.leaf[2]) {
			t.Errorf("site %d: remotes %v", k+1, u)
		}
		checkSiteUsers(t, dir, k, sites, n, site, hub)
	}
}

// checkSiteUsers checks site k's hosts: users of its leaf with their own
// keys and records, named in the site's hub user.
func checkSiteUsers(t *testing.T, dir string, k, sites, n int, site, hub *server.Options) {
	t.Helper()
	var want []string
	for h := range n {
		if siteOf(h, sites) == k {
			want = append(want, fmt.Sprintf("s%d", h+1))
		}
	}
	if len(site.Nkeys) != 1+len(want) {
		t.Errorf("site %d: %d users, want the administrator and %v", k+1, len(site.Nkeys), want)
	}
	seedPub := func(name string) string {
		raw, err := os.ReadFile(filepath.Join(dir, name+".nk"))
		if err != nil {
			t.Fatal(err)
		}
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(raw))))
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		return pub
	}
	leafPub := seedPub(fmt.Sprintf("leaf_%d", k+1))
	var leafAllow, leafSub []string
	for _, u := range hub.Nkeys {
		if u.Nkey == leafPub {
			leafAllow, leafSub = u.Permissions.Publish.Allow, u.Permissions.Subscribe.Allow
		}
	}
	for _, name := range want {
		pub := seedPub(name)
		i := slices.IndexFunc(site.Nkeys, func(u *server.NkeyUser) bool { return u.Nkey == pub })
		if i < 0 {
			t.Errorf("site %d: no user with %s's key", k+1, name)
			continue
		}
		own := "$JS.hub.API.$KV.portsentry_blocks." + name + ".*"
		if p := site.Nkeys[i].Permissions.Publish.Allow; !slices.Contains(p, own) || slices.ContainsFunc(p, func(s string) bool { return strings.Contains(s, ".h1") }) {
			t.Errorf("site %d, %s may publish %v", k+1, name, p)
		}
		if !slices.Contains(leafAllow, own) || !slices.Contains(leafSub, "_INBOX_"+name+".>") {
			t.Errorf("leaf_%d on the hub does not name %s: publish %v, subscribe %v", k+1, name, leafAllow, leafSub)
		}
	}
	if got := len(leafAllow); got != 25+4*len(want) {
		t.Errorf("leaf_%d may publish %d subjects, want 25 and 4 for each of %v", k+1, got, want)
	}
}

// fatalTB records a Fatalf and ends its goroutine, as testing's does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// The benchmark fails when a block misses a host, and says how many.
func TestScaleWaitFailsOnAMissingBlock(t *testing.T) {
	now := time.Now()
	full := &scaleSink{arrived: map[uint32]time.Time{1: now, 2: now}}
	short := &scaleSink{arrived: map[uint32]time.Time{1: now}}
	run := func(sinks ...*scaleSink) string {
		f := &fatalTB{TB: t}
		done := make(chan struct{})
		go func() { defer close(done); waitSinks(f, "test", sinks, []uint32{1, 2}, 50*time.Millisecond) }()
		<-done
		return f.msg
	}
	if msg := run(full, short, full); !strings.Contains(msg, "1 of 3 hosts miss blocks") {
		t.Errorf("a host without block 2: %q", msg)
	}
	if msg := run(full, full); msg != "" {
		t.Errorf("every host has every block: %q", msg)
	}
}
