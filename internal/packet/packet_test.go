package packet

import (
	"errors"
	"fmt"
	"testing"
)

const (
	protoICMP   = 1
	protoICMPv6 = 58
)

type decodeCase struct {
	name    string // also the seed corpus file name
	pkt     []byte
	wantErr error
	want    Probe // when wantErr is nil or ErrTransportUnreachable (then only Src and Dst)
}

// tcpWant is the Probe expected from a test packet of the given family
// (4 or 6) with TCP flags f.
func tcpWant(family int, f TCPFlags, k Kind) Probe {
	p := Probe{Proto: TCP, SrcPort: testSrcPort, DstPort: testDstPort, Flags: f, Kind: k}
	p.Src, p.Dst = src4, dst4
	if family == 6 {
		p.Src, p.Dst = src6, dst6
	}
	return p
}

// addrsWant is what Decode gives for a packet whose transport header was
// not captured: the addresses only.
func addrsWant(family int) Probe {
	if family == 6 {
		return Probe{Src: src6, Dst: dst6}
	}
	return Probe{Src: src4, Dst: dst4}
}

func udpWant(family int) Probe {
	p := tcpWant(family, 0, KindUDP)
	p.Proto = UDP
	return p
}

// decodeCases are the table for TestDecode, the allocation test, the fuzz
// seeds and the seed corpus files.
func decodeCases() []decodeCase {
	v4syn := ip4(6, tcpSYN(nil))
	v6syn := ip6(6, tcpSYN(nil))
	cs := []decodeCase{
		// IPv4, each kind.
		{"v4_syn_bare", v4syn, nil, tcpWant(4, FlagSYN, KindSYN)},
		{"v4_syn_mss", ip4(6, tcpSYN(optsMSS)), nil, tcpWant(4, FlagSYN, KindSYN)},
		{"v4_syn_ece_cwr_mss", ip4(6, tcpHdr(testSrcPort, testDstPort, FlagSYN|FlagECE|FlagCWR, optsMSS)), nil, tcpWant(4, FlagSYN|FlagECE|FlagCWR, KindSYN)},
		{"v4_syn_psh", ip4(6, tcpFlags(FlagSYN|FlagPSH)), nil, tcpWant(4, FlagSYN|FlagPSH, KindSYN)},
		{"v4_connect_linux", ip4(6, tcpSYN(optsLinux)), nil, tcpWant(4, FlagSYN, KindConnect)},
		{"v4_connect_linux_ecn", ip4(6, tcpHdr(testSrcPort, testDstPort, FlagSYN|FlagECE|FlagCWR, optsLinux)), nil, tcpWant(4, FlagSYN|FlagECE|FlagCWR, KindConnect)},
		{"v4_connect_windows", ip4(6, tcpSYN(optsWindows)), nil, tcpWant(4, FlagSYN, KindConnect)},
		{"v4_connect_ts_only", ip4(6, tcpSYN(optsTSOnly)), nil, tcpWant(4, FlagSYN, KindConnect)},
		{"v4_fin", ip4(6, tcpFlags(FlagFIN)), nil, tcpWant(4, FlagFIN, KindFIN)},
		{"v4_null", ip4(6, tcpFlags(0)), nil, tcpWant(4, 0, KindNULL)},
		{"v4_xmas", ip4(6, tcpFlags(FlagFIN|FlagPSH|FlagURG)), nil, tcpWant(4, FlagFIN|FlagPSH|FlagURG, KindXMAS)},
		{"v4_xmas_ece_cwr", ip4(6, tcpFlags(0xff&^(FlagSYN|FlagRST|FlagACK))), nil, tcpWant(4, 0xff&^(FlagSYN|FlagRST|FlagACK), KindXMAS)},
		{"v4_unknown_synfin", ip4(6, tcpFlags(FlagSYN|FlagFIN)), nil, tcpWant(4, FlagSYN|FlagFIN, KindUnknown)},
		{"v4_unknown_synfin_linux_opts", ip4(6, tcpHdr(testSrcPort, testDstPort, FlagSYN|FlagFIN, optsLinux)), nil, tcpWant(4, FlagSYN|FlagFIN, KindUnknown)},
		{"v4_unknown_psh", ip4(6, tcpFlags(FlagPSH)), nil, tcpWant(4, FlagPSH, KindUnknown)},
		{"v4_unknown_finurg", ip4(6, tcpFlags(FlagFIN|FlagURG)), nil, tcpWant(4, FlagFIN|FlagURG, KindUnknown)},
		{"v4_null_ece", ip4(6, tcpFlags(FlagECE)), nil, tcpWant(4, FlagECE, KindNULL)},
		{"v4_udp", ip4(17, udpProbe()), nil, udpWant(4)},
		{"v4_udp_payload", ip4(17, udpHdr(testSrcPort, testDstPort, []byte("version.bind"))), nil, udpWant(4)},
		{"v4_ip_options", ip4(6, tcpSYN(optsMSS), 0x94, 0x04, 0, 0), nil, tcpWant(4, FlagSYN, KindSYN)}, // router alert
		{"v4_first_fragment", with(ip4(6, tcpFlags(FlagFIN)), func(b []byte) { b[6] = 0x20 }), nil, tcpWant(4, FlagFIN, KindFIN)},
		// Not probes: decode succeeds with KindNone.
		{"v4_ack", ip4(6, tcpFlags(FlagACK)), nil, tcpWant(4, FlagACK, KindNone)},
		{"v4_rst", ip4(6, tcpFlags(FlagRST)), nil, tcpWant(4, FlagRST, KindNone)},
		{"v4_synack", ip4(6, tcpHdr(testSrcPort, testDstPort, FlagSYN|FlagACK, optsLinux)), nil, tcpWant(4, FlagSYN|FlagACK, KindNone)},
		{"v4_rstack", ip4(6, tcpFlags(FlagRST|FlagACK)), nil, tcpWant(4, FlagRST|FlagACK, KindNone)},
		{"v4_finack", ip4(6, tcpFlags(FlagFIN|FlagACK)), nil, tcpWant(4, FlagFIN|FlagACK, KindNone)},

		// IPv6, each kind.
		{"v6_syn_bare", v6syn, nil, tcpWant(6, FlagSYN, KindSYN)},
		{"v6_syn_mss", ip6(6, tcpSYN(optsMSS)), nil, tcpWant(6, FlagSYN, KindSYN)},
		{"v6_connect_linux", ip6(6, tcpSYN(optsLinux)), nil, tcpWant(6, FlagSYN, KindConnect)},
		{"v6_fin", ip6(6, tcpFlags(FlagFIN)), nil, tcpWant(6, FlagFIN, KindFIN)},
		{"v6_null", ip6(6, tcpFlags(0)), nil, tcpWant(6, 0, KindNULL)},
		{"v6_xmas", ip6(6, tcpFlags(FlagFIN|FlagPSH|FlagURG)), nil, tcpWant(6, FlagFIN|FlagPSH|FlagURG, KindXMAS)},
		{"v6_unknown_synfin", ip6(6, tcpFlags(FlagSYN|FlagFIN)), nil, tcpWant(6, FlagSYN|FlagFIN, KindUnknown)},
		{"v6_udp", ip6(17, udpProbe()), nil, udpWant(6)},
		{"v6_ack", ip6(6, tcpFlags(FlagACK)), nil, tcpWant(6, FlagACK, KindNone)},
		{"v6_rst", ip6(6, tcpFlags(FlagRST)), nil, tcpWant(6, FlagRST, KindNone)},
		{"v6_synack", ip6(6, tcpFlags(FlagSYN|FlagACK)), nil, tcpWant(6, FlagSYN|FlagACK, KindNone)},
		// IPv6 extension headers.
		{"v6_ext_syn_mss", ip6(6, tcpSYN(optsMSS), hopByHop(), destOpts(), fragment(0, true)), nil, tcpWant(6, FlagSYN, KindSYN)},
		{"v6_ext_connect", ip6(6, tcpSYN(optsLinux), hopByHop(), destOpts(), fragment(0, false)), nil, tcpWant(6, FlagSYN, KindConnect)},
		{"v6_ext_routing_ah_fin", ip6(6, tcpFlags(FlagFIN), hopByHop(), routing(), authHeader(), destOpts()), nil, tcpWant(6, FlagFIN, KindFIN)},
		{"v6_ext_udp", ip6(17, udpProbe(), hopByHop(), fragment(0, true)), nil, udpWant(6)},
		{"v6_ext_16", ip6(6, tcpFlags(0), repeat(destOpts(), 16)...), nil, tcpWant(6, 0, KindNULL)},
		// No count of extension headers is too many: the walk ends with the copy.
		{"v6_ext_17", ip6(6, tcpSYN(nil), repeat(destOpts(), 17)...), nil, tcpWant(6, FlagSYN, KindSYN)},
		{"v6_ext_60", ip6(6, tcpSYN(nil), repeat(destOpts(), 60)...), nil, tcpWant(6, FlagSYN, KindSYN)},
		{"v6_ext_1k", ip6(6, tcpSYN(nil), bigDestOpts(1024)), nil, tcpWant(6, FlagSYN, KindSYN)},
		{"v6_ext_udp_17", ip6(17, udpProbe(), repeat(destOpts(), 17)...), nil, udpWant(6)},

		// The IP header is valid, the copy was cut (snap length) before the
		// transport header: the addresses, with ErrTransportUnreachable.
		{"cut_v6_ext_60_at_256", ip6(6, tcpSYN(nil), repeat(destOpts(), 60)...)[:256], ErrTransportUnreachable, addrsWant(6)},
		{"cut_v6_ext_1k_at_256", ip6(6, tcpSYN(nil), bigDestOpts(1024))[:256], ErrTransportUnreachable, addrsWant(6)},
		{"cut_v6_ext_1k_at_1024", ip6(6, tcpSYN(nil), bigDestOpts(1024))[:1024], ErrTransportUnreachable, addrsWant(6)},
		{"cut_v6_ext_udp_at_256", ip6(17, udpProbe(), repeat(destOpts(), 60)...)[:256], ErrTransportUnreachable, addrsWant(6)},
		{"cut_v6_in_ext_header", ip6(6, tcpSYN(nil), hopByHop(), destOpts())[:49], ErrTransportUnreachable, addrsWant(6)},
		{"cut_v6_in_tcp", ip6(6, tcpSYN(nil), repeat(destOpts(), 3)...)[:70], ErrTransportUnreachable, addrsWant(6)},
		{"cut_v6_in_fragment_header", ip6(6, tcpSYN(nil), fragment(0, true))[:44], ErrTransportUnreachable, addrsWant(6)},
		{"cut_v6_after_ah", ip6(6, tcpSYN(nil), authHeader())[:64], ErrTransportUnreachable, addrsWant(6)},
		{"cut_v6_jumbo", with(ip6(6, tcpSYN(nil), hopByHop())[:50], func(b []byte) { b[4], b[5] = 0, 0 }), ErrTransportUnreachable, addrsWant(6)},
		{"cut_v4_options", ip4(6, tcpSYN(nil), ipOpts(40)...)[:40], ErrTransportUnreachable, addrsWant(4)},
		{"cut_v4_after_options", ip4(6, tcpSYN(nil), ipOpts(40)...)[:60], ErrTransportUnreachable, addrsWant(4)},
		{"cut_v4_in_tcp", v4syn[:39], ErrTransportUnreachable, addrsWant(4)},
		{"cut_v4_in_udp", ip4(17, udpProbe())[:27], ErrTransportUnreachable, addrsWant(4)},
		{"v4_ip_options_40", ip4(6, tcpSYN(nil), ipOpts(40)...), nil, tcpWant(4, FlagSYN, KindSYN)},

		// Broken or not for us.
		{"err_empty", []byte{}, ErrTruncated, Probe{}},
		{"err_v4_ihl4", with(v4syn, func(b []byte) { b[0] = 0x44 }), ErrHeader, Probe{}},
		{"err_v4_ihl0", with(v4syn, func(b []byte) { b[0] = 0x40 }), ErrHeader, Probe{}},
		{"err_v4_ihl_past_end", with(v4syn, func(b []byte) { b[0] = 0x4f }), ErrTruncated, Probe{}},
		{"err_v4_totlen_short", with(v4syn, func(b []byte) { b[2], b[3] = 0, 19 }), ErrHeader, Probe{}},
		{"err_version5", with(v4syn, func(b []byte) { b[0] = 0x55 }), ErrVersion, Probe{}},
		{"err_version0", make([]byte, 60), ErrVersion, Probe{}},
		{"err_v4_fragment", with(v4syn, func(b []byte) { b[6], b[7] = 0x00, 0x03 }), ErrFragment, Probe{}},
		{"err_v4_last_fragment", with(v4syn, func(b []byte) { b[6], b[7] = 0x1f, 0xff }), ErrFragment, Probe{}},
		{"err_v4_icmp", ip4(protoICMP, []byte{8, 0, 0xf7, 0xff, 0, 0, 0, 0}), ErrProto, Probe{}},
		{"err_v4_esp", ip4(nhESP, []byte{0, 0, 1, 0, 0, 0, 0, 1}), ErrProto, Probe{}},
		{"err_v4_tcp_doff4", with(v4syn, func(b []byte) { b[32] = 0x40 }), ErrHeader, Probe{}},
		// The packet itself (its total length) ends inside the transport header.
		{"err_v4_tcp_truncated", with(v4syn[:39], func(b []byte) { b[3] = 39 }), ErrTruncated, Probe{}},
		{"err_v4_udp_truncated", with(ip4(17, udpProbe())[:27], func(b []byte) { b[3] = 27 }), ErrTruncated, Probe{}},
		{"err_v4_options_past_total", with(ip4(6, tcpSYN(nil), ipOpts(40)...)[:40], func(b []byte) { b[3] = 40 }), ErrTruncated, Probe{}},
		{"err_v6_truncated_header", v6syn[:39], ErrTruncated, Probe{}},
		{"err_v6_fragment", ip6(6, tcpSYN(nil), hopByHop(), fragment(1, true)), ErrFragment, Probe{}},
		{"err_v6_last_fragment", ip6(6, tcpSYN(nil), fragment(0x1fff, false)), ErrFragment, Probe{}},
		{"err_v6_esp", ip6(nhESP, []byte{0, 0, 1, 0, 0, 0, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd}), ErrProto, Probe{}},
		{"err_v6_ext_esp", ip6(nhESP, []byte{0, 0, 1, 0, 0, 0, 0, 1}, hopByHop()), ErrProto, Probe{}},
		{"err_v6_no_next_header", ip6(nhNone, nil, destOpts()), ErrProto, Probe{}},
		{"err_v6_icmp", ip6(protoICMPv6, []byte{128, 0, 0, 0, 0, 1, 0, 1}), ErrProto, Probe{}},
		{"err_v6_ext_past_end", with(ip6(6, tcpSYN(nil), hopByHop()), func(b []byte) { b[41] = 0xff }), ErrTruncated, Probe{}},
		// The packet itself (its payload length) ends inside the headers.
		{"err_v6_ext_past_payload", with(ip6(6, tcpSYN(nil), repeat(destOpts(), 17)...)[:150], func(b []byte) { b[4], b[5] = 0, 110 }), ErrTruncated, Probe{}},
		{"err_v6_tcp_past_payload", with(ip6(6, tcpSYN(nil))[:50], func(b []byte) { b[4], b[5] = 0, 10 }), ErrTruncated, Probe{}},
		{"err_v6_tcp_doff0", with(v6syn, func(b []byte) { b[52] = 0 }), ErrHeader, Probe{}},
	}
	return cs
}

func repeat(e ext, n int) []ext {
	es := make([]ext, n)
	for i := range es {
		es[i] = e
	}
	return es
}

func TestDecode(t *testing.T) {
	for _, tc := range decodeCases() {
		t.Run(tc.name, func(t *testing.T) {
			sentinel := Probe{Src: src4, SrcPort: 1, Kind: KindUDP}
			p := sentinel
			err := Decode(tc.pkt, &p)
			if err != tc.wantErr { // sentinels are returned unwrapped
				t.Fatalf("Decode(% x) error = %v, want %v", tc.pkt, err, tc.wantErr)
			}
			if err != nil && err != ErrTransportUnreachable {
				if p != sentinel {
					t.Errorf("Decode changed *p on error: %+v", p)
				}
				return
			}
			// The tool (internal/scanner) is tested there, on packets the
			// tools sent; these hand-made ones match no tool on purpose or
			// by chance.
			p.Tool = tc.want.Tool
			if p != tc.want {
				t.Errorf("Decode = %+v,\n                  want %+v", p, tc.want)
			}
		})
	}
}

// TestDecodeTruncated cuts valid packets at every length, as a snap length
// would: a prefix shorter than the fixed IP header fails with ErrTruncated,
// a longer one gives the addresses with ErrTransportUnreachable, and none
// panics.
func TestDecodeTruncated(t *testing.T) {
	pkts := map[string][]byte{
		"v4_syn":      ip4(6, tcpSYN(nil)),
		"v4_udp":      ip4(17, udpProbe()),
		"v4_ip_opts":  ip4(6, tcpFlags(FlagFIN), 1, 1, 1, 1, 1, 1, 1, 0),
		"v6_syn":      ip6(6, tcpSYN(nil)),
		"v6_ext_syn":  ip6(6, tcpSYN(nil), hopByHop(), routing(), destOpts(), fragment(0, true), authHeader()),
		"v6_ext_udp":  ip6(17, udpProbe(), hopByHop(), fragment(0, false)),
		"v6_ext_deep": ip6(6, tcpSYN(nil), repeat(destOpts(), 20)...),
	}
	for name, pkt := range pkts {
		var p Probe
		if err := Decode(pkt, &p); err != nil {
			t.Fatalf("%s: full packet: %v", name, err)
		}
		family := int(pkt[0] >> 4)
		fixed := ipv4HeaderLen
		if family == 6 {
			fixed = ipv6HeaderLen
		}
		for n := range len(pkt) {
			// A fresh slice of exactly n bytes, so reading past it is
			// caught by the bounds check even within pkt's capacity.
			b := append([]byte(nil), pkt[:n]...)
			p = Probe{}
			err := Decode(b, &p)
			switch {
			case n < fixed && err != ErrTruncated:
				t.Errorf("%s cut to %d of %d bytes: error = %v, want %v", name, n, len(pkt), err, ErrTruncated)
			case n >= fixed && (err != ErrTransportUnreachable || p != addrsWant(family)):
				t.Errorf("%s cut to %d of %d bytes: error = %v, probe %+v, want %v with the addresses", name, n, len(pkt), err, p, ErrTransportUnreachable)
			}
		}
	}
}

// TestDecodeTruncatedOptions cuts a Linux SYN inside its options: the
// headers are complete, so decoding succeeds, and the kind is decided by
// the options that were captured.
func TestDecodeTruncatedOptions(t *testing.T) {
	for _, family := range []int{4, 6} {
		pkt := ip4(6, tcpSYN(optsLinux))
		if family == 6 {
			pkt = ip6(6, tcpSYN(optsLinux))
		}
		optStart := len(pkt) - len(optsLinux)
		for n := optStart; n <= len(pkt); n++ {
			var p Probe
			b := append([]byte(nil), pkt[:n]...)
			if err := Decode(b, &p); err != nil {
				t.Fatalf("IPv%d cut to %d bytes: %v", family, n, err)
			}
			// MSS is 4 bytes, SACK-permitted the next 2.
			want := KindSYN
			if n-optStart >= 6 {
				want = KindConnect
			}
			if p.Kind != want {
				t.Errorf("IPv%d cut to %d bytes (%d option bytes): kind %v, want %v", family, n, n-optStart, p.Kind, want)
			}
		}
	}
}

func TestStackSYNOptions(t *testing.T) {
	tests := []struct {
		name string
		opts []byte
		want bool
	}{
		{"none", nil, false},
		{"mss", optsMSS, false},
		{"mss_ws", []byte{2, 4, 5, 0xb4, 1, 3, 3, 7}, false},
		{"linux", optsLinux, true},
		{"windows", optsWindows, true},
		{"ts_only", optsTSOnly, true},
		{"sack_only", []byte{4, 2}, true},
		{"nops_then_sack", []byte{1, 1, 1, 1, 1, 1, 4, 2}, true},
		{"eol_before_sack", []byte{2, 4, 5, 0xb4, 0, 0, 4, 2}, false},
		{"zero_length_stops", []byte{2, 0, 4, 2}, false},
		{"length_one_stops", []byte{3, 1, 4, 2}, false},
		{"length_past_end", []byte{2, 40, 4, 2}, false},
		{"kind_without_length", []byte{1, 1, 1, 8}, false},
		{"sack_wrong_length", []byte{4, 3, 0}, false},
		{"ts_wrong_length", []byte{8, 6, 0, 0, 0, 0}, false},
		{"ts_cut", []byte{8, 10, 0, 0, 0, 0}, false},
		{"skips_unknown", []byte{30, 4, 4, 2, 4, 2}, true},
		{"sack_bytes_inside_other_option", []byte{30, 4, 4, 2}, false},
	}
	for _, tc := range tests {
		if got := stackSYNOptions(tc.opts); got != tc.want {
			t.Errorf("%s: stackSYNOptions(% x) = %v, want %v", tc.name, tc.opts, got, tc.want)
		}
	}
}

// TestDecodeOptionsWithinDataOffset checks that bytes after the data
// offset (payload) are not read as options.
func TestDecodeOptionsWithinDataOffset(t *testing.T) {
	seg := append(tcpSYN(optsMSS), 4, 2, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0) // payload that looks like options
	var p Probe
	if err := Decode(ip4(6, seg), &p); err != nil {
		t.Fatal(err)
	}
	if p.Kind != KindSYN {
		t.Errorf("kind %v, want %v: payload read as options", p.Kind, KindSYN)
	}
}

func TestClassify(t *testing.T) {
	const (
		F, S, R, P, A, U, E, C = FlagFIN, FlagSYN, FlagRST, FlagPSH, FlagACK, FlagURG, FlagECE, FlagCWR
	)
	tests := []struct {
		flags TCPFlags
		stack bool
		want  Kind
	}{
		{S, false, KindSYN},
		{S, true, KindConnect},
		{S | E | C, false, KindSYN},
		{S | E | C, true, KindConnect},
		{S | P | U, false, KindSYN},
		{S | F, true, KindUnknown},
		{F, false, KindFIN},
		{F, true, KindFIN},
		{F | E, false, KindFIN},
		{0, false, KindNULL},
		{E | C, false, KindNULL},
		{F | P | U, false, KindXMAS},
		{F | P | U | E | C, false, KindXMAS},
		{F | P | U | S, false, KindUnknown},
		{P, false, KindUnknown},
		{U, false, KindUnknown},
		{F | U, false, KindUnknown},
		{F | P, false, KindUnknown},
		{A, false, KindNone},
		{R, false, KindNone},
		{S | A, true, KindNone},
		{R | A, false, KindNone},
		{F | A, false, KindNone},
		{0xff, false, KindNone},
	}
	for _, tc := range tests {
		if got := Classify(tc.flags, tc.stack); got != tc.want {
			t.Errorf("Classify(%v, %v) = %v, want %v", tc.flags, tc.stack, got, tc.want)
		}
	}
	// Exhaustive: ACK or RST always means not a probe, and ECE/CWR never
	// change the kind.
	for f := range 256 {
		flags := TCPFlags(f)
		for _, stack := range []bool{false, true} {
			k := Classify(flags, stack)
			if (flags&(FlagACK|FlagRST) != 0) != (k == KindNone) {
				t.Errorf("Classify(%v, %v) = %v", flags, stack, k)
			}
			if k2 := Classify(flags&^(FlagECE|FlagCWR), stack); k2 != k {
				t.Errorf("Classify(%v) = %v but without ECE/CWR %v", flags, k, k2)
			}
			if k == KindUDP || int(k) >= NumKinds {
				t.Errorf("Classify(%v) = %v", flags, k)
			}
		}
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{TCP.String(), "TCP"},
		{UDP.String(), "UDP"},
		{Proto(1).String(), "proto 1"},
		{Proto(58).String(), "proto 58"},
		{TCPFlags(0).String(), "none"},
		{FlagSYN.String(), "SYN"},
		{(FlagFIN | FlagPSH | FlagURG).String(), "FIN|PSH|URG"},
		{(FlagSYN | FlagACK).String(), "SYN|ACK"},
		{TCPFlags(0xff).String(), "FIN|SYN|RST|PSH|ACK|URG|ECE|CWR"},
		{(FlagSYN | FlagECE | FlagCWR).String(), "SYN|ECE|CWR"},
		{KindNone.String(), "not a probe"},
		{KindSYN.String(), "TCP SYN scan"},
		{KindConnect.String(), "TCP connect"},
		{KindFIN.String(), "TCP FIN scan"},
		{KindNULL.String(), "TCP NULL scan"},
		{KindXMAS.String(), "TCP XMAS scan"},
		{KindUnknown.String(), "TCP unknown-flags scan"},
		{KindUDP.String(), "UDP scan"},
		{Kind(NumKinds).String(), fmt.Sprintf("kind %d", NumKinds)},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestErrorsDistinct(t *testing.T) {
	errs := []error{ErrTruncated, ErrVersion, ErrHeader, ErrFragment, ErrProto, ErrTransportUnreachable}
	for i, a := range errs {
		for j, b := range errs {
			if (i == j) != errors.Is(a, b) {
				t.Errorf("errors.Is(%v, %v) = %v", a, b, errors.Is(a, b))
			}
		}
	}
}

func TestDecodeAllocs(t *testing.T) {
	for _, tc := range decodeCases() {
		var p Probe
		allocs := testing.AllocsPerRun(100, func() { _ = Decode(tc.pkt, &p) })
		if allocs != 0 {
			t.Errorf("%s: %v allocations per Decode, want 0", tc.name, allocs)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	benches := []struct {
		name string
		pkt  []byte
	}{
		{"IPv4_SYN", ip4(6, tcpSYN(optsMSS))},
		{"IPv4_connect", ip4(6, tcpSYN(optsLinux))},
		{"IPv4_UDP", ip4(17, udpProbe())},
		{"IPv6_SYN", ip6(6, tcpSYN(optsMSS))},
		{"IPv6_SYN_ext", ip6(6, tcpSYN(optsMSS), hopByHop(), destOpts(), fragment(0, true))},
		{"IPv6_SYN_ext_60", ip6(6, tcpSYN(optsMSS), repeat(destOpts(), 60)...)},
	}
	for _, bc := range benches {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.pkt)))
			var p Probe
			for b.Loop() {
				if err := Decode(bc.pkt, &p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
