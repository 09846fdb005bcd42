package scanner

// Tool is the name of a scanner.
type Tool uint8

// The tools Identify names.
const (
	Unknown Tool = iota
	NmapSYN
	NmapOS
	Masscan
	ZMap
	ZMapNew
	Mirai
	OSStack
	NumTools // the number of tools, for arrays indexed by Tool
)

var names = [NumTools]string{"unknown", "nmap-syn", "nmap-os", "masscan", "zmap", "zmap-new", "mirai", "os-stack"}

// String is the tool's name as lines, records and metrics write it.
func (t Tool) String() string {
	if t >= NumTools {
		return names[Unknown]
	}
	return names[t]
}

// Tools lists every tool, for metrics and documentation.
func Tools() []Tool {
	ts := make([]Tool, NumTools)
	for i := range ts {
		ts[i] = Tool(i)
	}
	return ts
}

// Parse reads a tool's name; an empty or unknown name is Unknown (a record
// of an older version, or of a newer one with a tool this one does not know).
func Parse(s string) Tool {
	for i, n := range names {
		if n == s {
			return Tool(i)
		}
	}
	return Unknown
}

// Protocols of Fields.Proto.
const (
	TCP = 6
	UDP = 17
)

// TCP flag bits of Fields.Flags.
const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagACK = 0x10
)

// Fields are the parts of one packet's headers Identify looks at, as the
// decoder found them. Slices point into the packet; nothing is copied.
type Fields struct {
	IPv6 bool
	TTL  uint8  // the IPv6 hop limit
	IPID uint16 // IPv4 only
	// Dst4 is the IPv4 destination address as a number; 0 for IPv6.
	Dst4             uint32
	Proto            uint8 // TCP or UDP
	SrcPort, DstPort uint16
	// TCP only.
	Flags   uint8
	Seq     uint32
	Window  uint16
	Options []byte // the TCP options, as far as captured
	// UDP only: the payload's length (from the UDP header) and its
	// captured start.
	PayloadLen int
	Payload    []byte
}

// Identify names the tool that sent the packet f.
func Identify(f *Fields) Tool {
	switch f.Proto {
	case UDP:
		return identifyUDP(f)
	case TCP:
		if f.Flags&(flagACK|flagRST) != 0 {
			return Unknown // a reply, not a probe
		}
		o := readOptions(f.Options)
		if t := template(f, &o); t != Unknown {
			return t
		}
		return byShape(f, &o)
	}
	return Unknown
}

// identifyUDP knows nmap's OS detection probe U1: 300 bytes of 'C'.
func identifyUDP(f *Fields) Tool {
	if f.PayloadLen == 300 && len(f.Payload) > 0 && f.Payload[0] == 'C' {
		return NmapOS
	}
	return Unknown
}

// template names the stateless scanners that stamp a tell-tale number into
// every packet: masscan (its IP ID), ZMap <= 4.0 (IP ID 54321), Mirai (the
// sequence number is the target's address).
func template(f *Fields, o *options) Tool {
	if f.IPv6 {
		return Unknown
	}
	bare := o.n == 0 || o.mssOnly()
	switch {
	case f.Seq == f.Dst4 && o.n == 0 && f.Flags&flagSYN != 0:
		return Mirai
	case bare && f.IPID == uint16(f.Dst4^uint32(f.DstPort)^f.Seq):
		return Masscan
	case bare && f.IPID == 54321 && f.Window == 65535 && f.SrcPort >= 32768 && f.SrcPort <= 61000:
		return ZMap
	}
	return Unknown
}

// byShape names a packet by its window, TTL and options.
func byShape(f *Fields, o *options) Tool {
	switch {
	case o.nmapOS() || (o.n > 0 && osWindow(f.Window)):
		return NmapOS
	case f.Window == 65535 && f.TTL <= 64 && o.windowsOrder():
		return ZMapNew
	case nmapWindow(f.Window) && (o.n == 0 || o.mssOnly()) && (f.IPv6 || f.TTL <= 64):
		return NmapSYN
	case f.Flags&flagSYN != 0 && f.Flags&flagFIN == 0 && (o.sack || o.ts):
		return OSStack
	}
	return Unknown
}

// nmapWindow: the windows nmap's raw-packet scans choose from.
func nmapWindow(w uint16) bool {
	return w == 1024 || w == 2048 || w == 3072 || w == 4096
}

// osWindow: windows of nmap's OS detection probes (SEQ 1, 63, 4, 16, 512;
// ECN 3; T2 128, T3 256, T5 31337) that no stack sends with options.
func osWindow(w uint16) bool {
	switch w {
	case 1, 3, 4, 16, 63, 128, 256, 512, 31337:
		return true
	}
	return false
}
