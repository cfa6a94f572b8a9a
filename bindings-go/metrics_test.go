package arbiter

import (
	"strings"
	"testing"
)

func TestMetricsCountDecisionsAndErrors(t *testing.T) {
	e := gitlab(t)
	for _, user := range []string{"alice", "alice", "eve"} {
		if _, err := e.Authorize(userRequest(user, "push_code", "10")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.AuthorizeJSON([]byte("{oops")); err == nil {
		t.Fatal("a malformed request decided")
	}
	m, err := e.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	var push *ActionDecisions
	for i := range m.Decisions {
		if m.Decisions[i].Action == "Gitlab::Action::push_code" {
			push = &m.Decisions[i]
		}
	}
	if push == nil || push.Allow != 2 || push.Deny != 1 {
		t.Fatalf("push_code: %+v", push)
	}
	if m.RequestErrors["malformed_request"] != 1 || m.Latency.Count != 4 || m.Bundle.Name != "gitlab" {
		t.Fatalf("metrics: %+v", m)
	}
	last := m.Latency.Buckets[len(m.Latency.Buckets)-1]
	if last.LeSeconds != nil || last.Count != 4 {
		t.Fatalf("+Inf bucket: %+v", last)
	}
	text, err := e.MetricsPrometheus()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, `arbiter_decisions_total{action="Gitlab::Action::push_code",decision="allow"} 2`) {
		t.Fatalf("prometheus text:\n%s", text)
	}
	e.Close()
	if _, err := e.Metrics(); err != ErrClosed {
		t.Fatalf("closed engine: %v", err)
	}
}
