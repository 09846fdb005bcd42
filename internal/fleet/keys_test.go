package fleet

import (
	"net/netip"
	"regexp"
	"testing"
)

// keyRe is JetStream's key alphabet.
var keyRe = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)

func TestEncodeAddr(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"203.0.113.7", "203-0-113-7"},
		{"2001:db8::7", "2001_db8__7"},
		{"::ffff:192.0.2.1", "192-0-2-1"},
		{"fe80::1%eth0", "fe80__1"},
		{"::", "__"},
	} {
		a := netip.MustParseAddr(tt.in)
		got := EncodeAddr(a)
		if got != tt.want {
			t.Errorf("EncodeAddr(%s) = %q, want %q", tt.in, got, tt.want)
		}
		back, err := DecodeAddr(got)
		if err != nil || back != a.Unmap().WithZone("") {
			t.Errorf("DecodeAddr(%q) = %v, %v", got, back, err)
		}
	}
	for _, bad := range []string{"", "1.2.3.4", "1-2-3", "1-2-3-4-5", "2001:db8::1", "01-2-3-4", "2001_DB8__1", "2001_0db8__1",
		"_1", "1-2-3-4_", "0_0_0_0_0_0_0_0", "x", "ffff_192-0-2-1", "__ffff_192-0-2-1"} {
		if a, err := DecodeAddr(bad); err == nil {
			t.Errorf("DecodeAddr(%q) = %v, want an error", bad, a)
		}
	}
}

func TestKeys(t *testing.T) {
	a := netip.MustParseAddr("2001:db8::5")
	if k := HostAddrKey("web-1", a); k != "web-1.2001_db8__5" {
		t.Errorf("HostAddrKey = %q", k)
	}
	if k := SightingKey(a, "web-1"); k != "2001_db8__5.web-1" {
		t.Errorf("SightingKey = %q", k)
	}
	if s := Subject(BucketBlocks, "h1.1-2-3-4"); s != "$KV.portsentry_blocks.h1.1-2-3-4" {
		t.Errorf("Subject = %q", s)
	}
	h, b, err := ParseHostAddrKey("web-1.2001_db8__5")
	if err != nil || h != "web-1" || b != a {
		t.Errorf("ParseHostAddrKey = %q %v %v", h, b, err)
	}
	b, h, err = ParseSightingKey("2001_db8__5.web-1")
	if err != nil || h != "web-1" || b != a {
		t.Errorf("ParseSightingKey = %v %q %v", b, h, err)
	}
	for _, bad := range []string{"", "h1", "h1.", ".1-2-3-4", "h1.1-2-3-4.x", "h*.1-2-3-4", "h1.1.2.3.4"} {
		if _, _, err := ParseHostAddrKey(bad); err == nil {
			t.Errorf("ParseHostAddrKey(%q) succeeded", bad)
		}
	}
}

// FuzzParseKey: the key parsers never panic, and what they accept is
// canonical: it encodes back to the same key, in JetStream's alphabet, and
// two tokens exactly. Seeds: testdata/fuzz/FuzzParseKey.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"h1.203-0-113-7", "web-01.2001_db8__7", "h1.__", "2001_db8__7.h1", "h1.1.2.3.4", "h1.::1", "a.ffff_1-2-3-4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if h, a, err := ParseHostAddrKey(key); err == nil {
			if HostAddrKey(h, a) != key || !keyRe.MatchString(key) || !a.IsValid() || a.Zone() != "" || a.Is4In6() {
				t.Errorf("ParseHostAddrKey(%q) = %q, %v: not canonical", key, h, a)
			}
		}
		if a, h, err := ParseSightingKey(key); err == nil {
			if SightingKey(a, h) != key || !keyRe.MatchString(key) {
				t.Errorf("ParseSightingKey(%q) = %v, %q: not canonical", key, a, h)
			}
		}
		if a, err := DecodeAddr(key); err == nil && EncodeAddr(a) != key {
			t.Errorf("DecodeAddr(%q) = %v: not canonical", key, a)
		}
	})
}
