package respond

import (
	"net/netip"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

func TestRepeatTimeout(t *testing.T) {
	cfg, err := config.Parse("t.yaml", []byte("block: {timeout: 1h, repeat_factor: 4, max_timeout: 30d}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for times, want := range map[int]time.Duration{
		1: time.Hour, 2: 4 * time.Hour, 3: 16 * time.Hour, 4: 64 * time.Hour, 5: 256 * time.Hour, 6: 720 * time.Hour, 50: 720 * time.Hour,
	} {
		if got := repeatTimeout(cfg, times); got != want {
			t.Errorf("block %d: %s, want %s", times, got, want)
		}
	}
	off, _ := config.Parse("t.yaml", []byte("block: {timeout: 2h, repeat_factor: 1}\n"))
	if got := repeatTimeout(off, 9); got != 2*time.Hour {
		t.Errorf("repeat_factor 1: %s, want 2h every time", got)
	}
}

func TestWrapTargetForTCPWrappers(t *testing.T) {
	if got := wrapTarget(netip.MustParseAddr("fd00::1")); got != "[fd00::1]" {
		t.Errorf("IPv6: %q", got)
	}
	if got := wrapTarget(netip.MustParseAddr("10.0.0.1")); got != "10.0.0.1" {
		t.Errorf("IPv4: %q", got)
	}
}
