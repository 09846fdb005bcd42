package fleet

import (
	"net/netip"
	"testing"
	"time"
)

// A block record carries the tool that sent the probe; an older peer's
// record without one decodes with none, and a name this version does not
// know reads as unknown.
func TestRecordTool(t *testing.T) {
	a := netip.MustParseAddr("10.201.0.2")
	exp := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	rec := marshal(newBlockRecord(a, exp, Block{Origin: OriginDetect, ScanType: "TCP SYN scan", Tool: "masscan"}))
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"this version", rec, "masscan"},
		{"an older peer", []byte(`{"addr":"10.201.0.2","expires":"2026-03-04T05:06:07Z","origin":"detect","scan_type":"TCP SYN scan"}`), ""},
		{"a newer peer", []byte(`{"addr":"10.201.0.2","expires":"2026-03-04T05:06:07Z","origin":"detect","tool":"nmap-udp"}`), "unknown"},
		{"junk", []byte(`{"addr":"10.201.0.2","expires":"2026-03-04T05:06:07Z","origin":"detect","tool":"a\tb\nc"}`), "unknown"},
	} {
		b, err := decodeBlock("h2", a, tc.data)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if b.Tool != tc.want {
			t.Errorf("%s: tool %q, want %q", tc.name, b.Tool, tc.want)
		}
	}
}
