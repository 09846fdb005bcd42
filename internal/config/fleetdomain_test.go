package config

import (
	"strings"
	"testing"
)

// TestFleetDomains: fleet.domain and fleet.local_domain are read, and each
// problem names the file, line and key.
func TestFleetDomains(t *testing.T) {
	const head = "fleet:\n  servers: [nats://n1:4222]\n  name: h1\n"
	c, err := Parse("test.yaml", []byte(head+"  domain: hub\n  local_domain: site_a\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Fleet.Domain != "hub" || c.Fleet.LocalDomain != "site_a" {
		t.Errorf("domain %q, local_domain %q", c.Fleet.Domain, c.Fleet.LocalDomain)
	}
	tests := []struct {
		name, yaml, key string
		line            int
		msg             string
	}{
		{"domain dot", head + "  domain: hub.eu\n", "fleet.domain", 4, "JetStream domain name"},
		{"local wildcard", head + "  domain: hub\n  local_domain: \"site*\"\n", "fleet.local_domain", 5, "JetStream domain name"},
		{"local without hub", head + "  local_domain: site_a\n", "fleet.local_domain", 4, "needs fleet.domain"},
		{"same domains", head + "  domain: hub\n  local_domain: hub\n", "fleet.local_domain", 5, "a domain of its own"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := parseErrs(t, tt.yaml)[0]
			if e.File != "test.yaml" || e.Key != tt.key || e.Line != tt.line || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("first error %q (key %q, line %d), want key %q at line %d containing %q", e.Error(), e.Key, e.Line, tt.key, tt.line, tt.msg)
			}
		})
	}
}
