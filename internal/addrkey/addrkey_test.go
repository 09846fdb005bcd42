package addrkey

import (
	"net/netip"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, s := range []string{"192.0.2.1", "::ffff:192.0.2.1", "2001:db8::1", "::", "0.0.0.0"} {
		a := netip.MustParseAddr(s)
		if got := Of(a).Addr(); got != a {
			t.Errorf("%s came back as %s", a, got)
		}
	}
	if Of(netip.MustParseAddr("192.0.2.1")) == Of(netip.MustParseAddr("::ffff:192.0.2.1")) {
		t.Error("an IPv4 address and its IPv4-mapped IPv6 form share a key")
	}
}
