package fleet

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The leaf topology of BenchmarkFleetScale: deploy/nats/leaf's files,
// their ports replaced by free ones, with one leaf server per site
// (site_1 .. site_S, each made from site-a.conf) and one hub user per
// site's leaf (leaf_1 .. leaf_S, made from leaf_a's entry of
// hub-accounts.conf). Host i (s<i+1>) is at site i mod S: a user of its
// site's leaf made from h1's entry, with an nkey of its own, and named in
// its leaf's hub user as h1 and h2 are in leaf_a's. Each leaf also has
// the administrator as a user, for the benchmark's count of the API
// requests its hosts make there.

var (
	confNkey    = regexp.MustCompile(`nkey: U[A-Z0-9]+`)
	confSeed    = regexp.MustCompile(`nkey: "SU[A-Z0-9]+"`)
	leafHostSub = regexp.MustCompile(`(?m)^[^\n]*\.h[12](\.\*)?",\n`)
	adminEntry  = regexp.MustCompile(`(?s)      \{\n        # admin:.*?\n      \}\n`)
)

const usersEnd = "    ]\n  }\n}"

// siteOf is the site of host i (0-based) among sites.
func siteOf(i, sites int) int { return i % sites }

func siteDomainN(k int) string { return fmt.Sprintf("site_%d", k+1) }

// readDeploy reads a file of deploy/nats/leaf.
func readDeploy(b testing.TB, name string) string {
	raw, err := os.ReadFile(filepath.Join("../../deploy/nats/leaf", name))
	if err != nil {
		b.Fatal(err)
	}
	return string(raw)
}

// between is s from the first occurrence of from up to that of to.
func between(b testing.TB, s, from, to, file string) (i, j int) {
	i, j = strings.Index(s, from), strings.Index(s, to)
	if i < 0 || j < i {
		b.Fatalf("deploy/nats/leaf/%s: no %q before %q", file, from, to)
	}
	return i, j
}

// leafUser is leaf_a's entry of hub-accounts.conf (tpl) made for site k's
// leaf, with the public key pub, for the hosts names.
func leafUser(b testing.TB, tpl string, k int, pub string, names []string) string {
	lines := leafHostSub.FindAllStringIndex(tpl, -1)
	if len(lines) != 8 {
		b.Fatalf("deploy/nats/leaf/hub-accounts.conf: leaf_a names h1 and h2 in %d lines, want 8", len(lines))
	}
	var h1 string
	for _, l := range lines[:4] {
		h1 += tpl[l[0]:l[1]]
	}
	var allow, inbox strings.Builder
	for _, name := range names {
		allow.WriteString(strings.ReplaceAll(h1, ".h1", "."+name))
		fmt.Fprintf(&inbox, "%q, ", "_INBOX_"+name+".>")
	}
	out := tpl[:lines[0][0]] + allow.String() + tpl[lines[7][1]:]
	out = strings.Replace(out, `"_INBOX_h1.>", "_INBOX_h2.>"`, strings.TrimSuffix(inbox.String(), ", "), 1)
	out = confNkey.ReplaceAllString(strings.ReplaceAll(out, "leaf_a", fmt.Sprintf("leaf_%d", k+1)), "nkey: "+pub)
	return out
}

// leafPorts are the free ports of the leaf topology: the hub's client,
// route and leafnode ports (3 each), and each site's client and
// monitoring port.
type leafPorts struct {
	client, route, leaf [3]int
	site, mon           []int
}

func newLeafPorts(b testing.TB, sites int) leafPorts {
	p := freePorts(b, 9+2*sites)
	var lp leafPorts
	for i := range 3 {
		lp.client[i], lp.route[i], lp.leaf[i] = p[i], p[3+i], p[6+i]
	}
	lp.site, lp.mon = p[9:9+sites], p[9+sites:]
	return lp
}

// replacer maps deploy/nats/leaf's addresses to the free ports.
func (lp leafPorts) replacer() *strings.Replacer {
	var pairs []string
	for i := range 3 {
		pairs = append(pairs,
			fmt.Sprintf("127.0.0.1:%d", 4222+i), fmt.Sprintf("127.0.0.1:%d", lp.client[i]),
			fmt.Sprintf("127.0.0.1:%d", 6222+i), fmt.Sprintf("127.0.0.1:%d", lp.route[i]),
			fmt.Sprintf("127.0.0.1:%d", 7422+i), fmt.Sprintf("127.0.0.1:%d", lp.leaf[i]))
	}
	return strings.NewReplacer(pairs...)
}

// scaleLeafConf writes the leaf topology's files for n hosts s1..sn at
// sites sites into a new directory, with the hosts' seeds (<name>.nk).
func scaleLeafConf(b testing.TB, n, sites int, lp leafPorts) string {
	dir := b.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(lp.replacer().Replace(s)), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	for _, f := range []string{"hub.conf", "hub1.conf", "hub2.conf", "hub3.conf"} {
		write(f, readDeploy(b, f))
	}
	acc := readDeploy(b, "hub-accounts.conf")
	i, j := between(b, acc, "      {\n        # leaf_a:", "      {\n        # leaf_b:", "hub-accounts.conf")
	k := strings.LastIndex(acc, usersEnd)
	admin := adminEntry.FindString(acc)
	if k < j || admin == "" {
		b.Fatal("deploy/nats/leaf/hub-accounts.conf: no admin entry, or no end of the users")
	}
	names := make([][]string, sites)
	for h := range n {
		names[siteOf(h, sites)] = append(names[siteOf(h, sites)], fmt.Sprintf("s%d", h+1))
	}
	var leafUsers strings.Builder
	for s := range sites {
		pub := writeSeed(b, filepath.Join(dir, fmt.Sprintf("leaf_%d.nk", s+1)))
		leafUsers.WriteString(leafUser(b, acc[i:j], s, pub, names[s]))
		write(fmt.Sprintf("site-%d.conf", s+1), siteConf(b, dir, s, lp, admin, names[s]))
	}
	write("hub-accounts.conf", acc[:i]+leafUsers.String()+acc[k:])
	return dir
}

// siteConf is site-a.conf made for site k: its domain, its leaf's seed
// (written by scaleLeafConf), its port, the administrator and its hosts,
// each with a new nkey whose seed it writes to dir/<name>.nk.
func siteConf(b testing.TB, dir string, k int, lp leafPorts, admin string, names []string) string {
	s := readDeploy(b, "site-a.conf")
	i, j := between(b, s, "      {\n        # h1:", "      {\n        # h2:", "site-a.conf")
	end := strings.LastIndex(s, usersEnd)
	if end < j {
		b.Fatal("deploy/nats/leaf/site-a.conf: no end of the users")
	}
	users := strings.Builder{}
	users.WriteString(admin)
	for _, name := range names {
		pub := writeSeed(b, filepath.Join(dir, name+".nk"))
		users.WriteString(confNkey.ReplaceAllString(strings.ReplaceAll(s[i:j], "h1", name), "nkey: "+pub))
	}
	seed, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("leaf_%d.nk", k+1)))
	if err != nil {
		b.Fatal(err)
	}
	head := strings.NewReplacer("site_a", siteDomainN(k), "leaf_a", fmt.Sprintf("leaf_%d", k+1),
		"127.0.0.1:4230", fmt.Sprintf("127.0.0.1:%d", lp.site[k])).Replace(s[:i])
	head = confSeed.ReplaceAllLiteralString(head, fmt.Sprintf("nkey: %q", strings.TrimSpace(string(seed))))
	return head + users.String() + s[end:]
}

// startScaleLeaves runs the hub's three servers and one leaf server per
// site with the files of scaleLeafConf, and waits until every leaf is
// linked to the hub. It returns the hub's servers, the leaves, and the
// directory of the files (and the hosts' seeds).
func startScaleLeaves(b testing.TB, bin string, n, sites int) (hub, leaves []*scaleServer, conf string) {
	lp := newLeafPorts(b, sites)
	conf = scaleLeafConf(b, n, sites, lp)
	for i := range 3 {
		s := &scaleServer{bin: bin, dir: b.TempDir(), url: fmt.Sprintf("nats://127.0.0.1:%d", lp.client[i]),
			args: []string{"-c", filepath.Join(conf, fmt.Sprintf("hub%d.conf", i+1))}}
		s.start(b)
		b.Cleanup(s.stop)
		hub = append(hub, s)
	}
	for k := range sites {
		s := &scaleServer{bin: bin, dir: b.TempDir(), url: fmt.Sprintf("nats://127.0.0.1:%d", lp.site[k]),
			args: []string{"-c", filepath.Join(conf, fmt.Sprintf("site-%d.conf", k+1)), "-m", fmt.Sprint(lp.mon[k])}}
		s.start(b)
		b.Cleanup(s.stop)
		leaves = append(leaves, s)
	}
	for k := range sites {
		waitLeafLinked(b, lp.mon[k])
	}
	return hub, leaves, conf
}

// waitLeafLinked waits until the leaf server with monitoring port mon
// has its link to the hub (varz's leafnodes).
func waitLeafLinked(b testing.TB, mon int) {
	url := fmt.Sprintf("http://127.0.0.1:%d/varz", mon)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var v struct {
			Leafnodes int `json:"leafnodes"`
		}
		if r, err := http.Get(url); err == nil {
			err = json.NewDecoder(r.Body).Decode(&v)
			r.Body.Close()
			if err == nil && v.Leafnodes > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("the leaf server of %s is not linked to the hub after 60 s", url)
		}
	}
}
