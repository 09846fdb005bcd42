package scanner

import (
	"encoding/binary"
	"testing"
)

var (
	mss1460  = []byte{2, 4, 0x05, 0xb4}
	windows  = []byte{2, 4, 0x05, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2}
	linuxSYN = []byte{2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7}
)

// syn4 is an IPv4 SYN to 10.201.0.1 port 80 with the given fields.
func syn4(ttl uint8, id uint16, seq uint32, win uint16, opts []byte) Fields {
	return Fields{TTL: ttl, IPID: id, Dst4: 0x0ac90001, Proto: TCP, SrcPort: 40000, DstPort: 80,
		Flags: flagSYN, Seq: seq, Window: win, Options: opts}
}

// TestIdentifyRules: each rule's edge, where one field more or less makes
// it another tool (the traces test the rules on what the tools sent).
func TestIdentifyRules(t *testing.T) {
	const seq = 0x12345678
	massID := uint16((0x0ac90001 ^ 80 ^ seq) & 0xffff)
	zmap := syn4(255, 54321, seq, 65535, mss1460)
	zmapLow := zmap
	zmapLow.SrcPort = 1024
	v6 := syn4(255, 0, seq, 1024, mss1460)
	v6.IPv6, v6.Dst4 = true, 0
	ack := syn4(64, 1, seq, 1024, mss1460)
	ack.Flags |= flagACK
	udpU1 := Fields{Proto: UDP, PayloadLen: 300, Payload: []byte("CCCC")}
	udp := Fields{Proto: UDP, PayloadLen: 300, Payload: []byte("GET ")}
	for _, tc := range []struct {
		name string
		f    Fields
		want Tool
	}{
		{"masscan, no options", syn4(255, massID, seq, 1024, nil), Masscan},
		{"masscan, MSS", syn4(255, massID, seq, 1024, mss1460), Masscan},
		{"masscan's ID but a stack's options", syn4(255, massID, seq, 1024, linuxSYN), OSStack},
		{"zmap 2", zmap, ZMap},
		{"zmap's ID, source port below its range", zmapLow, Unknown},
		{"zmap 4.1", syn4(64, 7, seq, 65535, windows), ZMapNew},
		{"Windows itself (TTL 128)", syn4(128, 7, seq, 65535, windows), OSStack},
		{"mirai", syn4(64, 7, 0x0ac90001, 5000, nil), Mirai},
		{"mirai's sequence number with options", syn4(64, 7, 0x0ac90001, 5000, mss1460), Unknown},
		{"nmap -sS", syn4(44, 7, seq, 2048, mss1460), NmapSYN},
		{"nmap's window, TTL 255", syn4(255, 7, seq, 2048, mss1460), Unknown},
		{"nmap over IPv6 (hop limit 255)", v6, NmapSYN},
		{"nmap's window, MSS 1400", syn4(44, 7, seq, 2048, []byte{2, 4, 0x05, 0x78}), Unknown},
		{"nmap -O, window scale first", syn4(50, 7, seq, 1, []byte{3, 3, 10, 1, 2, 4, 5, 0xb4}), NmapOS},
		{"nmap -O, window 512", syn4(50, 7, seq, 512, []byte{2, 4, 1, 9, 4, 2}), NmapOS},
		{"linux connect", syn4(64, 7, seq, 64240, linuxSYN), OSStack},
		{"a reply", ack, Unknown},
		{"nmap U1", udpU1, NmapOS},
		{"other UDP", udp, Unknown},
		{"hping3", syn4(64, 7, seq, 512, nil), Unknown},
	} {
		f := tc.f
		if got := Identify(&f); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestNames(t *testing.T) {
	for _, tool := range Tools() {
		if Parse(tool.String()) != tool {
			t.Errorf("Parse(%q) = %s", tool.String(), Parse(tool.String()))
		}
	}
	if Parse("") != Unknown || Parse("nmap") != Unknown || Tool(200).String() != "unknown" {
		t.Error("unknown names are not Unknown")
	}
}

// FuzzIdentify: any header fields and options name one of the tools, and
// never panic.
func FuzzIdentify(f *testing.F) {
	f.Add(uint8(6), uint8(255), uint16(54321), uint32(1), uint16(65535), uint8(2), []byte{2, 4, 5, 0xb4})
	f.Add(uint8(6), uint8(50), uint16(1), uint32(1), uint16(1), uint8(2), []byte{3, 3, 10, 1, 8, 10, 255, 255, 255, 255, 0, 0, 0, 0})
	f.Add(uint8(17), uint8(64), uint16(0x1042), uint32(300), uint16(0), uint8(0), []byte("CCCC"))
	f.Add(uint8(6), uint8(64), uint16(0), uint32(0), uint16(0), uint8(2), []byte{2, 0, 8, 1, 1, 40})
	f.Fuzz(func(t *testing.T, proto, ttl uint8, id uint16, seq uint32, win uint16, flags uint8, b []byte) {
		fl := Fields{IPv6: ttl&1 == 1, TTL: ttl, IPID: id, Dst4: seq ^ uint32(id), Proto: proto,
			SrcPort: id, DstPort: win, Flags: flags, Seq: seq, Window: win, Options: b, Payload: b}
		if len(b) >= 2 {
			fl.PayloadLen = int(binary.BigEndian.Uint16(b))
		}
		if tool := Identify(&fl); tool >= NumTools {
			t.Fatalf("Identify = %d", tool)
		}
	})
}

// BenchmarkIdentify: the cost of naming a probe, per kind of packet.
func BenchmarkIdentify(b *testing.B) {
	for _, bc := range []struct {
		name string
		f    Fields
	}{
		{"nmap-syn", syn4(44, 7, 0x12345678, 2048, mss1460)},
		{"os-stack", syn4(64, 7, 0x12345678, 64240, linuxSYN)},
		{"no-options", syn4(64, 7, 0x12345678, 512, nil)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for range b.N {
				f := bc.f
				Identify(&f)
			}
		})
	}
}
