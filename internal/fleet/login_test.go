package fleet

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/bcrypt"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// TestLoginKinds: a host that logs in with a user and password
// (fleet.user, fleet.password: still supported) and one that logs in with
// an nkey (fleet.nkey, what deploy/nats ships) share blocks; a wrong seed
// does not get in.
func TestLoginKinds(t *testing.T) {
	dir := t.TempDir()
	pub := writeSeed(t, filepath.Join(dir, "h2.nk"))
	hash, err := bcrypt.GenerateFromPassword([]byte("h1-secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	ns := startServer(t, &server.Options{DontListen: true,
		Users: []*server.User{{Username: "h1", Password: string(hash)}},
		Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	h1 := startHost(t, ns, "h1", func(f *config.Fleet, _ *Options) { f.User, f.Password = "h1", "h1-secret" })
	h2 := startHost(t, ns, "h2", func(f *config.Fleet, _ *Options) { f.NKey = filepath.Join(dir, "h2.nk") })
	h1.waitReady(t)
	h2.waitReady(t)
	a, b := addr("203.0.113.7"), addr("2001:db8::7")
	h1.c.Publish(Block{Addr: a, Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
	h2.c.Publish(Block{Addr: b, Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
	h2.sink.waitBlocks(t, a, 1)
	h1.sink.waitBlocks(t, b, 1)
	writeSeed(t, filepath.Join(dir, "other.nk"))
	for name, o := range map[string]nats.Option{"another seed": nkeyFile(t, filepath.Join(dir, "other.nk")), "a wrong password": nats.UserInfo("h1", "h1-wrong")} {
		if nc, err := nats.Connect("", nats.InProcessServer(ns), o); err == nil {
			nc.Close()
			t.Errorf("%s got in", name)
		}
	}
}

// nkeyFile logs a raw connection in with the seed in path.
func nkeyFile(t testing.TB, path string) nats.Option {
	t.Helper()
	o, err := nats.NkeyOptionFromSeed(path)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// BenchmarkLoginCPU: the server CPU of 100 logins (connect, then close)
// with a bcrypt(11) password, the cost of `nats server passwd`, and with
// an nkey, against one nats-server process built from the pinned module;
// the ratio is of the same run. The nkey figure is of 1000 logins, over
// 10 (the process's CPU time comes in 10 ms ticks). A mass reconnect of N hosts costs N times
// the per-login figure.
//
//	go test -run '^$' -bench LoginCPU -benchtime 1x ./internal/fleet
func BenchmarkLoginCPU(b *testing.B) {
	bin := buildNATSServer(b)
	dir := b.TempDir()
	pub := writeSeed(b, filepath.Join(dir, "h.nk"))
	hash, err := bcrypt.GenerateFromPassword([]byte("h-secret"), 11)
	if err != nil {
		b.Fatal(err)
	}
	conf := fmt.Sprintf("authorization {\n  users: [\n    {user: pw, password: %q}\n    {nkey: %s}\n  ]\n}\n", hash, pub)
	if err := os.WriteFile(filepath.Join(dir, "login.conf"), []byte(conf), 0o600); err != nil {
		b.Fatal(err)
	}
	port := freePorts(b, 1)[0]
	s := &scaleServer{bin: bin, dir: dir, url: fmt.Sprintf("nats://127.0.0.1:%d", port),
		args: []string{"-c", filepath.Join(dir, "login.conf"), "-a", "127.0.0.1", "-p", fmt.Sprint(port)}}
	s.start(b)
	b.Cleanup(s.stop)
	kinds := []struct {
		name string
		n    int
		opt  nats.Option
	}{{"bcrypt(11) password", 100, nats.UserInfo("pw", "h-secret")}, {"nkey", 1000, nkeyFile(b, filepath.Join(dir, "h.nk"))}}
	for b.Loop() {
		var cpu []time.Duration
		for _, k := range kinds {
			login(b, s.url, k.opt) // the server is up, the code paths warm
			before := s.cpu()
			for range k.n {
				login(b, s.url, k.opt)
			}
			per100 := (s.cpu() - before) * 100 / time.Duration(k.n)
			cpu = append(cpu, per100)
			fmt.Printf("100 logins, %s: server CPU %v (%.3f ms per login; %d logins)\n", k.name, per100, float64(per100.Microseconds())/100/1000, k.n)
		}
		fmt.Printf("bcrypt(11) / nkey: %.0fx\n", float64(cpu[0])/float64(max(cpu[1], time.Millisecond)))
	}
}

// login connects to url with opt, waiting for the server, and closes.
func login(b *testing.B, url string, opt nats.Option) {
	b.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		nc, err := nats.Connect(url, opt, nats.Timeout(10*time.Second))
		if err == nil {
			nc.Close()
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("login: %v", err)
		}
	}
}
