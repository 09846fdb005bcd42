package daemon

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/listeners"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

// A port with a live listener is never a tripwire. The watcher keeps the
// host's listening sockets; the kernel's in-use sets follow them (the log
// rules skip those ports), and handle checks them again before acting.

// ownSocket reports sockets the daemon itself holds (verified mode), which
// are tripwires, not services.
func (d *Daemon) ownSocket(s listeners.Socket) bool {
	own := d.ownPorts.Load()
	return own != nil && s.Proto == listeners.ProtoTCP && (*own)[s.Port]
}

func (d *Daemon) services() []listeners.Socket {
	var out []listeners.Socket
	for _, s := range d.watcher.Snapshot().Sockets() {
		if !d.ownSocket(s) {
			out = append(out, s)
		}
	}
	return out
}

// ruleset is the ruleset for cfg with the current in-use ports.
func (d *Daemon) ruleset(cfg *config.Config) *nft.Ruleset {
	rs := nft.Build(cfg)
	k := listeners.Elements(d.services(), cfg.TCP.Monitored, cfg.UDP.Monitored)
	pairs := func(v4 []listeners.AddrPort4, v6 []listeners.AddrPort6) (a, b []nft.AddrPort) {
		for _, e := range v4 {
			a = append(a, nft.AddrPort{Addr: netip.AddrFrom4(e.Addr), Port: e.Port})
		}
		for _, e := range v6 {
			b = append(b, nft.AddrPort{Addr: netip.AddrFrom16(e.Addr), Port: e.Port})
		}
		return
	}
	u := nft.InUse{TCPAny: k.AllAnyTCP(), UDPAny: k.AllAnyUDP()}
	u.TCP4, u.TCP6 = pairs(k.TCP4, k.TCP6)
	u.UDP4, u.UDP6 = pairs(k.UDP4, k.UDP6)
	rs.SetInUse(u)
	if d.flood.Load() {
		rs.SetFlood()
	}
	if d.compatQueue.Load() {
		rs.UseCompatQueue()
	}
	return rs
}

// monitoredSocket says whether s is on a port the configuration watches.
func monitoredSocket(cfg *config.Config, s listeners.Socket) bool {
	ports := cfg.TCP.Monitored
	if s.Proto == listeners.ProtoUDP {
		ports = cfg.UDP.Monitored
	}
	for _, p := range ports {
		if p == s.Port {
			return true
		}
	}
	return false
}

func describeSocket(s listeners.Socket) string {
	where := "on " + s.Addr.String()
	if s.Addr.IsUnspecified() {
		where = "on all addresses"
		if s.Addr.Is4() || s.V6Only {
			where = "on all IPv" + map[bool]string{true: "4", false: "6"}[s.Addr.Is4()] + " addresses"
		}
	}
	who := ""
	if pid, name := listeners.Process(s.Inode); name != "" {
		who = fmt.Sprintf(" by %s (pid %d)", name, pid)
	}
	return fmt.Sprintf("%s port %d%s %s", listeners.ProtoName(s.Proto), s.Port, who, where)
}

// logInUse reports, at start, the monitored ports a service listens on.
func (d *Daemon) logInUse(cfg *config.Config) {
	var lines []string
	for _, s := range d.services() {
		if monitoredSocket(cfg, s) {
			lines = append(lines, describeSocket(s))
		}
	}
	for _, l := range lines {
		d.log.Info("adminalert: Not watching " + l + ": a service listens there")
	}
}

// listenersChanged logs monitored ports a service started or stopped
// listening on and brings the kernel's in-use sets up to date.
func (d *Daemon) listenersChanged(ctx context.Context, added, removed []listeners.Socket) {
	cfg := d.cfgp.Load()
	for _, s := range added {
		if monitoredSocket(cfg, s) && !d.ownSocket(s) {
			d.log.Info("adminalert: " + describeSocket(s) + " is now in use by a service; no longer watching it")
		}
	}
	for _, s := range removed {
		if monitoredSocket(cfg, s) && !d.ownSocket(s) {
			d.log.Info("adminalert: " + fmt.Sprintf("%s port %d", listeners.ProtoName(s.Proto), s.Port) + " is no longer in use; watching it again")
		}
	}
	conn, err := d.dial()
	if err != nil {
		d.log.Error(fmt.Sprintf("adminalert: ERROR: update in-use ports: %v", err))
		return
	}
	defer conn.CloseLasting()
	if err := d.ruleset(cfg).UpdateInUse(conn); err != nil {
		d.log.Error(fmt.Sprintf("adminalert: ERROR: %v", err))
	}
}
