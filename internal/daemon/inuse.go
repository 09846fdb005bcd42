package daemon

import (
	"context"
	"fmt"

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
	return nft.Build(cfg, nft.Shape{
		Flood:       d.flood.Load(),
		CompatQueue: d.compatQueue.Load(),
		InUse:       listeners.Elements(d.services(), cfg.TCP.Monitored, cfg.UDP.Monitored),
	})
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
