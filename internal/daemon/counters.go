package daemon

import (
	"github.com/portsentry-nft/portsentry-nft/internal/bouncerapi"
	"github.com/portsentry-nft/portsentry-nft/internal/lapi"
)

// counter is one quantity a part of the daemon counts: status shows it as
// Status, Prometheus as portsentry_<Metric> with Help. The parts keep the
// counts (their Stats); this table is the one place that names them, so a
// new counter is one line here (and its row in docs/metrics.md, which a
// test requires).
type counter struct {
	Status, Metric, Help string
	value                func(d *Daemon) uint64
}

var counters = []counter{
	{"packets", "packets_total", "Packets the kernel sent to the daemon (NFLOG copies or NFQUEUE packets).", func(d *Daemon) uint64 { return d.capture.Packets.Load() }},
	{"already_blocked", "already_blocked_probes_total", "Probes from a blocked source that were on their way before its element landed.", func(d *Daemon) uint64 { return d.pipe.AlreadyBlocked.Load() }},
	{"malformed", "malformed_packets_total", "Packets that did not decode.", func(d *Daemon) uint64 { return d.pipe.Malformed.Load() }},
	{"undecoded_probes", "undecoded_probes_total", "Probes whose transport header could not be read (past the snap length), acted on by their rule and source.", func(d *Daemon) uint64 { return d.pipe.Opaque.Load() }},
	{"not_probes", "non_probe_packets_total", "Decoded packets that are not probes (ACK/RST).", func(d *Daemon) uint64 { return d.pipe.NotProbes.Load() }},
	{"in_use_probes", "in_use_probes_total", "Probes of ports a service listens on, ignored.", func(d *Daemon) uint64 { return d.pipe.InUse.Load() }},
	{"nflog_lost", "nflog_lost_total", "Log messages the kernel dropped (NFLOG sequence gaps).", func(d *Daemon) uint64 { return d.capture.Lost.Load() }},
	{"nflog_enobufs", "nflog_overruns_total", "Times the NFLOG receive buffer overran (ENOBUFS).", func(d *Daemon) uint64 { return d.capture.Overruns.Load() }},
	{"nflog_malformed", "nflog_malformed_total", "NFLOG messages that could not be read, skipped.", func(d *Daemon) uint64 { return d.capture.Malformed.Load() }},
	{"restored", "restored_blocks_total", "Blocks put back into the kernel: at start, after a self-heal, or after a probe proved an element lost.", func(d *Daemon) uint64 { return d.ledger.Stats.Restored.Load() }},
	{"expired", "expired_blocks_total", "Blocks that expired.", func(d *Daemon) uint64 { return d.ledger.Stats.Expired.Load() }},
	{"unblocked", "unblocks_total", "Blocks lifted by an administrator.", func(d *Daemon) uint64 { return d.ledger.Stats.Unblocked.Load() }},
	{"block_failures", "block_failures_total", "Blocks that could not be committed.", func(d *Daemon) uint64 { return d.ledger.Stats.BlockFailures.Load() }},
	{"commands_run", "commands_total", "External commands run.", func(d *Daemon) uint64 { return d.follow.Commands.Run.Load() }},
	{"command_failures", "command_failures_total", "External commands that failed or timed out.", func(d *Daemon) uint64 { return d.follow.Commands.Failures.Load() }},
	{"hosts_deny_failures", "hosts_deny_failures_total", "hosts.deny writes that failed.", func(d *Daemon) uint64 { return d.follow.HostsDeny.Errors.Load() }},
	{"reinstalls", "ruleset_reinstalls_total", "Times the watchdog reinstalled the ruleset after a change outside the daemon.", func(d *Daemon) uint64 { return d.keeper.Reinstalls.Load() }},
	{"alerts_suppressed", "alert_lines_suppressed_total", "Alert lines not written to keep up with a flood.", func(d *Daemon) uint64 { return d.alerts.Suppressed() }},
	{"evicted", "evicted_blocks_total", "Blocks on a single port given up to make room in full sets for stronger ones.", func(d *Daemon) uint64 { return d.ledger.Stats.Evicted.Load() }},
	{"corroborated", "corroborated_blocks_total", "Blocks on a single port that probes of another port made stronger.", func(d *Daemon) uint64 { return d.ledger.Stats.Corroborated.Load() }},
	{"adopted", "adopted_blocks_total", "Elements of the kernel's sets recorded after the fact: first strikes while the daemon did not follow.", func(d *Daemon) uint64 { return d.ledger.Stats.Adopted.Load() }},
	{"disowned", "disowned_strikes_total", "First strikes of the kernel that the daemon lifted (the address was protected, the port in use).", func(d *Daemon) uint64 { return d.ledger.Stats.Disowned.Load() }},
	{"crowdsec_requests", "crowdsec_requests_total", "Requests of the CrowdSec bouncer API answered (a configured API key).", func(d *Daemon) uint64 {
		return bouncerStat(d, func(s *bouncerapi.Stats) uint64 { return s.Requests.Load() })
	}},
	{"crowdsec_auth_failures", "crowdsec_auth_failures_total", "Requests of the CrowdSec bouncer API refused: no API key, or one not configured.", func(d *Daemon) uint64 {
		return bouncerStat(d, func(s *bouncerapi.Stats) uint64 { return s.AuthFailures.Load() })
	}},
	{"crowdsec_decisions_served", "crowdsec_decisions_served_total", "Decisions the CrowdSec bouncer API sent, new and deleted.", func(d *Daemon) uint64 {
		return bouncerStat(d, func(s *bouncerapi.Stats) uint64 { return s.Served.Load() })
	}},
	{"crowdsec_dropped", "crowdsec_dropped_blocks_total", "Blocks the CrowdSec bouncer API does not serve: its view was full.", func(d *Daemon) uint64 {
		return bouncerStat(d, func(s *bouncerapi.Stats) uint64 { return s.Dropped.Load() })
	}},
	{"crowdsec_alerts_pushed", "crowdsec_alerts_pushed_total", "Alerts the CrowdSec local API took (crowdsec.lapi).", func(d *Daemon) uint64 {
		return lapiStat(d, func(s *lapi.Stats) uint64 { return s.Pushed.Load() })
	}},
	{"crowdsec_bans_lifted", "crowdsec_bans_lifted_total", "Bans of the CrowdSec local API lifted by an administrator's unblock here.", func(d *Daemon) uint64 {
		return lapiStat(d, func(s *lapi.Stats) uint64 { return s.Lifted.Load() })
	}},
	{"crowdsec_push_failures", "crowdsec_push_failures_total", "Requests to the CrowdSec local API that failed (a login or a push; each retry counts).", func(d *Daemon) uint64 {
		return lapiStat(d, func(s *lapi.Stats) uint64 { return s.Failures.Load() })
	}},
	{"crowdsec_push_dropped", "crowdsec_push_dropped_total", "Alerts for the CrowdSec local API given up: its queue was full, or the API refused them for good.", func(d *Daemon) uint64 {
		return lapiStat(d, func(s *lapi.Stats) uint64 { return s.Dropped.Load() })
	}},
	{"journal_errors", "journal_errors_total", "Writes, fsyncs and rewrites of the journal of blocks that failed (a full disk, an I/O error).", func(d *Daemon) uint64 { n, _ := d.store.Errors(); return n }},
}

// bouncerStat reads one of the bouncer API's counters; 0 when it is not
// served.
func bouncerStat(d *Daemon, read func(*bouncerapi.Stats) uint64) uint64 {
	if d.bouncer == nil {
		return 0
	}
	return read(&d.bouncer.Stats)
}

// lapiStat reads one of the CrowdSec local API pusher's counters; 0 when
// nothing is pushed.
func lapiStat(d *Daemon, read func(*lapi.Stats) uint64) uint64 {
	if d.lapi == nil {
		return 0
	}
	return read(&d.lapi.Stats)
}
