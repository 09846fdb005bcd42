package keeper

import (
	"fmt"
	"slices"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/listeners"
)

// A port with a live listener is never a tripwire. The watcher keeps the
// host's listening sockets; the kernel's in-use sets follow them (the log
// rules skip those ports), and the pipeline checks them again before
// acting.

// monitoredSocket says whether s is on a port the configuration watches.
func monitoredSocket(cfg *config.Config, s listeners.Socket) bool {
	ports := cfg.TCP.Monitored
	if s.Proto == listeners.ProtoUDP {
		ports = cfg.UDP.Monitored
	}
	return slices.Contains(ports, s.Port)
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

// LogInUse reports the monitored ports a service listens on (start-up).
func (k *Keeper) LogInUse(cfg *config.Config) {
	for _, s := range k.services() {
		if monitoredSocket(cfg, s) {
			k.c.Log.Info("Not watching " + describeSocket(s) + ": a service listens there")
		}
	}
}

// listenersChanged logs monitored ports a service started or stopped
// listening on and brings the kernel's in-use sets up to date.
func (k *Keeper) listenersChanged(added, removed []listeners.Socket) {
	cfg := k.cfg.Load()
	for _, s := range added {
		if monitoredSocket(cfg, s) && !k.own(s) {
			k.c.Log.Info(describeSocket(s) + " is now in use by a service; no longer watching it")
		}
	}
	for _, s := range removed {
		if monitoredSocket(cfg, s) && !k.own(s) {
			k.c.Log.Info(fmt.Sprintf("%s port %d", listeners.ProtoName(s.Proto), s.Port) + " is no longer in use; watching it again")
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	rs := k.Ruleset(cfg)
	if err := k.c.Kernel.UpdateInUse(rs); err != nil {
		k.c.Log.Error(err.Error())
		return
	}
	k.installed(rs)
}
