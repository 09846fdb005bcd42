package daemon

import (
	"os"
	"strings"
	"testing"
)

// Every counter of the table is listed in docs/metrics.md under its
// Prometheus name, and no two rows share a name.
func TestEveryCounterIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	status, metric := map[string]bool{}, map[string]bool{}
	for _, c := range counters {
		if status[c.Status] || metric[c.Metric] {
			t.Errorf("%s / %s: a name used twice", c.Status, c.Metric)
		}
		status[c.Status], metric[c.Metric] = true, true
		if !strings.Contains(string(doc), "`portsentry_"+c.Metric+"`") {
			t.Errorf("docs/metrics.md does not list portsentry_%s", c.Metric)
		}
		if c.Help == "" || c.value == nil {
			t.Errorf("%s: no help or no value", c.Metric)
		}
	}
}
