package fleet

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// buildNATSServer builds the nats-server pinned as a tool in go.mod.
func buildNATSServer(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nats-server")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build nats-server: %v\n%s", err, out)
	}
	return bin
}

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// deployServer is one running server of startDeployCluster.
type deployServer struct {
	url string
	cmd *exec.Cmd
}

// startDeployCluster runs the three servers of deploy/nats, with their
// files as they are, each in a directory of its own (store_dir is
// relative); only the addresses are given on the command line (-p,
// --cluster, --routes), so that tests can run beside each other. In a
// network namespace of its own, a test can leave them out too.
func startDeployCluster(t *testing.T) []deployServer {
	t.Helper()
	bin := buildNATSServer(t)
	ports := freePorts(t, 6)
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[3+i]))
	}
	var out []deployServer
	for i := range 3 {
		conf, err := filepath.Abs(fmt.Sprintf("../../deploy/nats/n%d.conf", i+1))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-c", conf, "-a", "127.0.0.1", "-p", fmt.Sprint(ports[i]),
			"--cluster", routes[i], "--routes", strings.Join(routes, ","))
		cmd.Dir = t.TempDir()
		if testing.Verbose() {
			cmd.Stderr = &prefixWriter{t: t, p: fmt.Sprintf("n%d: ", i+1)}
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		out = append(out, deployServer{url: fmt.Sprintf("nats://127.0.0.1:%d", ports[i]), cmd: cmd})
	}
	for _, s := range out {
		deadline := time.Now().Add(20 * time.Second)
		for {
			c, err := net.Dial("tcp", strings.TrimPrefix(s.url, "nats://"))
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s does not listen", s.url)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return out
}

type prefixWriter struct {
	t testing.TB
	p string
}

func (w *prefixWriter) Write(b []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		w.t.Log(w.p + l)
	}
	return len(b), nil
}

// TestDeployCluster: three hosts on the 3-node cluster of deploy/nats
// (buckets replicated 3 times, made by the hosts under their permissions):
// a block reaches the others, and still does after the server one host
// was connected to is killed.
func TestDeployCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three nats-server processes")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build nats-server")
	}
	srv := startDeployCluster(t)
	var hs []*host
	for i, name := range []string{"h1", "h2", "h3"} {
		// Each host lists the servers starting with its own.
		urls := []string{srv[i].url, srv[(i+1)%3].url, srv[(i+2)%3].url}
		hs = append(hs, startHost(t, nil, name, func(f *config.Fleet, o *Options) {
			f.Servers = urls
			asDeployUser(f, name)
			o.Replicas = 3
		}))
	}
	for _, h := range hs {
		select {
		case <-h.c.Ready():
		case <-time.After(60 * time.Second): // a new cluster elects its leaders first
			t.Fatalf("%s not ready: %+v", h.c.Name(), h.c.Stats())
		}
	}
	h1 := hs[0]
	a := addr("203.0.113.31")
	hs[1].c.Publish(Block{Addr: a, Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
	hs[0].sink.waitBlocks(t, a, 1)
	hs[2].sink.waitBlocks(t, a, 1)

	// The server h1 is connected to goes away: h1 reconnects to another
	// and catches up.
	h1.c.mu.Lock()
	url := h1.c.nc.ConnectedUrl()
	h1.c.mu.Unlock()
	killed := false
	for _, s := range srv {
		if s.url == url {
			_ = s.cmd.Process.Kill()
			_, _ = s.cmd.Process.Wait()
			killed = true
		}
	}
	if !killed {
		t.Fatalf("h1 is connected to %q, none of the servers", url)
	}
	b := addr("2001:db8::31")
	var st Stats
	deadline := time.Now().Add(60 * time.Second)
	for len(hs[0].sink.blocksOf(b)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("h1 never got h3's block after n1 died; h1 %+v, h3 %+v", hs[0].c.Stats(), st)
		}
		hs[2].c.Publish(Block{Addr: b, Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
		st = hs[2].c.Stats()
		time.Sleep(500 * time.Millisecond)
	}
	if st := hs[0].c.Stats(); st.Reconnects < 1 {
		t.Errorf("h1 stats %+v", st)
	}
}
