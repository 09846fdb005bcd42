package packet

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the seed corpus in testdata/fuzz/FuzzDecode from decodeCases")

const corpusDir = "testdata/fuzz/FuzzDecode"

// corpusFile is a seed in the "go test fuzz v1" format.
func corpusFile(pkt []byte) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", pkt)
}

// TestSeedCorpus keeps testdata/fuzz/FuzzDecode in step with decodeCases:
// every case is a seed file of the same name. Run with -update to rewrite
// them. Other files in the directory (inputs the fuzzer found) are left
// alone.
func TestSeedCorpus(t *testing.T) {
	if *update {
		if err := os.MkdirAll(corpusDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range decodeCases() {
		path := filepath.Join(corpusDir, tc.name)
		want := corpusFile(tc.pkt)
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%v (run go test -run TestSeedCorpus -update)", err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale (run go test -run TestSeedCorpus -update)", path)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, tc := range decodeCases() {
		f.Add(tc.pkt)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sentinel := Probe{SrcPort: 7, DstPort: 9, Flags: 0xff, Kind: Kind(200)}
		p := sentinel
		err := Decode(b, &p)
		if err == ErrTransportUnreachable {
			checkAddrsOnly(t, b, p)
			return
		}
		if err != nil {
			switch err {
			case ErrTruncated, ErrVersion, ErrHeader, ErrFragment, ErrProto:
			default:
				t.Fatalf("unexpected error %v", err)
			}
			if p != sentinel {
				t.Fatalf("*p changed on error %v: %+v", err, p)
			}
			return
		}
		checkProbe(t, b, p)
	})
}

// checkAddrsOnly checks a Probe from a packet whose transport header was
// not captured: the header's addresses, nothing else.
func checkAddrsOnly(t *testing.T, b []byte, p Probe) {
	t.Helper()
	var want Probe
	switch b[0] >> 4 {
	case 4:
		want = Probe{Src: netip.AddrFrom4([4]byte(b[12:16])), Dst: netip.AddrFrom4([4]byte(b[16:20]))}
	case 6:
		want = Probe{Src: netip.AddrFrom16([16]byte(b[8:24])), Dst: netip.AddrFrom16([16]byte(b[24:40]))}
	default:
		t.Fatalf("version %d gave %v", b[0]>>4, ErrTransportUnreachable)
	}
	if p != want {
		t.Fatalf("%v with probe %+v, want only the addresses %+v", ErrTransportUnreachable, p, want)
	}
}

// checkProbe checks what must hold for every packet Decode accepts.
func checkProbe(t *testing.T, b []byte, p Probe) {
	t.Helper()
	if !p.Src.IsValid() || !p.Dst.IsValid() {
		t.Fatalf("invalid address in %+v", p)
	}
	switch b[0] >> 4 {
	case 4:
		if !p.Src.Is4() || !p.Dst.Is4() {
			t.Fatalf("IPv4 packet gave %v -> %v", p.Src, p.Dst)
		}
		if p.Src.As4() != [4]byte(b[12:16]) || p.Dst.As4() != [4]byte(b[16:20]) {
			t.Fatalf("addresses %v -> %v, header % x", p.Src, p.Dst, b[12:20])
		}
		// IPv4 has no extension headers: the transport header is at IHL.
		th := b[int(b[0]&0x0f)*4:]
		if p.SrcPort != binary.BigEndian.Uint16(th) || p.DstPort != binary.BigEndian.Uint16(th[2:]) {
			t.Fatalf("ports %d -> %d, transport header % x", p.SrcPort, p.DstPort, th[:4])
		}
		if byte(p.Proto) != b[9] {
			t.Fatalf("proto %v, header says %d", p.Proto, b[9])
		}
		if p.Proto == TCP && p.Flags != TCPFlags(th[13]) {
			t.Fatalf("flags %v, header says %v", p.Flags, TCPFlags(th[13]))
		}
	case 6:
		if p.Src.Is4() || p.Dst.Is4() { // 16-byte addresses, never unmapped
			t.Fatalf("IPv6 packet gave %v -> %v", p.Src, p.Dst)
		}
		if p.Src.As16() != [16]byte(b[8:24]) || p.Dst.As16() != [16]byte(b[24:40]) {
			t.Fatalf("addresses %v -> %v, header % x", p.Src, p.Dst, b[8:40])
		}
	default:
		t.Fatalf("version %d decoded", b[0]>>4)
	}
	switch p.Proto {
	case TCP:
		if p.Kind == KindUDP || p.Kind != Classify(p.Flags, p.Kind == KindConnect) {
			t.Fatalf("kind %v does not match flags %v", p.Kind, p.Flags)
		}
		if p.Kind == KindConnect && Classify(p.Flags, false) != KindSYN {
			t.Fatalf("connect with flags %v", p.Flags)
		}
	case UDP:
		if p.Kind != KindUDP || p.Flags != 0 {
			t.Fatalf("UDP decoded as %v flags %v", p.Kind, p.Flags)
		}
	default:
		t.Fatalf("proto %v decoded", p.Proto)
	}
}
