package lapi

import (
	"strconv"
	"strings"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/bouncerapi"
)

// alertOf is the alert for a block at now: its scenario
// (portsentry-nft/<scan type>), its source, one event with the ports and
// the tool, and a ban for the block's time left when its evidence binds
// (decide.Evidence.Binding) and at least a second is left.
func alertOf(it item, now time.Time, host string) alert {
	r := it.rec
	scenario := bouncerapi.Scenario(r.Kind)
	addr := r.Addr.String()
	ports := portList(r.Ports, r.Port)
	first, last := r.First, r.Last
	if first.IsZero() {
		first = it.at
	}
	if last.IsZero() {
		last = first
	}
	tool := r.Tool
	if tool == "" {
		tool = "unknown"
	}
	facts := []meta{{"source_ip", addr}, {"scan_type", r.Kind}, {"proto", r.Proto}, {"ports", ports}, {"tool", tool}, {"evidence", it.ev.String()}}
	a := alert{
		Scenario:    scenario,
		Message:     message(r.Kind, addr, tool, ports, r.Timeout, host),
		EventsCount: int32(max(1, len(r.Ports))),
		StartAt:     stamp(first),
		StopAt:      stamp(last),
		Leakspeed:   "0s",
		Events:      []event{{Timestamp: stamp(last), Meta: facts}},
		Source:      source{Scope: "Ip", Value: addr, IP: addr},
		Meta:        []meta{{"ports", ports}, {"tool", tool}, {"evidence", it.ev.String()}},
	}
	if left := r.Expires.Sub(now); it.ev.Binding() && left >= time.Second {
		a.Remediation = true
		a.Decisions = []decision{{Origin: Origin, Type: "ban", Scope: "Ip", Value: addr,
			Duration: left.Truncate(time.Second).String(), Scenario: scenario}}
	}
	return a
}

// stamp is a time as the LAPI reads it (RFC 3339, UTC).
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// portList is the ports probed, comma-separated (the triggering port
// when the record lists none; "" for an administrator's block).
func portList(ports []uint16, port uint16) string {
	if len(ports) == 0 {
		if port == 0 {
			return ""
		}
		ports = []uint16{port}
	}
	var b strings.Builder
	for i, p := range ports {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(p)))
	}
	return b.String()
}

// message is the alert's line for people: what, from whom, with what,
// and how long it is blocked here.
func message(kind, addr, tool, ports string, timeout time.Duration, host string) string {
	var b strings.Builder
	b.WriteString(kind)
	b.WriteString(" from ")
	b.WriteString(addr)
	if tool != "unknown" {
		b.WriteString(" (" + tool + ")")
	}
	if ports != "" {
		b.WriteString(" to ports " + ports)
	}
	b.WriteString(": blocked for " + timeout.String() + " by portsentry-nft")
	if host != "" {
		b.WriteString(" on " + host)
	}
	return b.String()
}

func itoa(n int) string { return strconv.Itoa(n) }
