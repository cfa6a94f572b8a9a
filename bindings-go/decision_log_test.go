package arbiter

import (
	"bytes"
	"encoding/json"
	"errors"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// docsBundle lets members of Team::"core" do anything; its manifest marks `ip` sensitive.
func docsBundle(t *testing.T) *Engine {
	t.Helper()
	e, err := NewEngineFromFiles(map[string]string{
		"p.cedar":       `@id("team") permit (principal in Team::"core", action, resource);`,
		"entities.json": `[{"uid": {"type": "User", "id": "ann"}, "attrs": {}, "parents": [{"type": "Team", "id": "core"}]}]`,
		"manifest.json": `{"name": "docs", "version": "3", "sensitive_attributes": ["ip"]}`,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func annReads(requestID string) Request {
	return Request{
		Principal: &EntityRef{Type: "User", ID: "ann"},
		Action:    EntityRef{Type: "Action", ID: "read"},
		Resource:  EntityRef{Type: "Doc", ID: "d1"},
		Context:   map[string]any{"ip": "10.0.0.1", "agent": "git/2.45"},
		RequestID: requestID,
	}
}

// events collects a decision log's events, parsed.
type events struct {
	mu   sync.Mutex
	list []map[string]any
}

func (ev *events) sink(t *testing.T) func([]byte) {
	return func(event []byte) {
		var parsed map[string]any
		if err := json.Unmarshal(event, &parsed); err != nil {
			t.Errorf("an event is not JSON: %s", event)
		}
		ev.mu.Lock()
		ev.list = append(ev.list, parsed)
		ev.mu.Unlock()
	}
}

func (ev *events) len() int {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return len(ev.list)
}

func TestDecisionLogEventsNameTheRequestAndMaskSensitiveAttributes(t *testing.T) {
	e := docsBundle(t)
	var ev events
	if err := e.SetDecisionLog(ev.sink(t)); err != nil {
		t.Fatal(err)
	}
	d, err := e.Authorize(annReads("go-1"))
	if err != nil || !d.Allowed {
		t.Fatalf("%+v %v", d, err)
	}
	if _, err := e.AuthorizeJSON([]byte(`{"principal": {"type": "User", "id": "bo"}, "action": {"type": "Action", "id": "read"}, "resource": {"type": "Doc", "id": "d1"}, "request_id": "go-2"}`)); err != nil {
		t.Fatal(err)
	}
	if ev.len() != 2 {
		t.Fatalf("%d events", ev.len())
	}
	first, second := ev.list[0], ev.list[1]
	if first["request_id"] != "go-1" || first["decision"] != "allow" || first["bundle"].(map[string]any)["name"] != "docs" {
		t.Fatalf("event: %v", first)
	}
	if reasons := first["reasons"].([]any); len(reasons) != 1 || reasons[0] != "team" {
		t.Fatalf("reasons: %v", reasons)
	}
	context := first["context"].(map[string]any)
	if context["ip"] != "[masked]" || context["agent"] != "git/2.45" {
		t.Fatalf("context: %v", context)
	}
	if first["latency_us"].(float64) <= 0 {
		t.Fatalf("latency: %v", first["latency_us"])
	}
	if second["request_id"] != "go-2" || second["decision"] != "deny" || second["principal"].(map[string]any)["id"] != "bo" {
		t.Fatalf("event: %v", second)
	}
	m, err := e.Metrics()
	if err != nil || m.DecisionLog["logged"] != 2 {
		t.Fatalf("metrics: %v %v", m.DecisionLog, err)
	}
}

func TestDecisionLogFromManyGoroutinesAndItsLimits(t *testing.T) {
	e := docsBundle(t)
	var ev events
	if err := e.SetDecisionLog(ev.sink(t)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if _, err := e.Authorize(annReads("many")); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if ev.len() != 800 {
		t.Fatalf("%d events from 800 decisions", ev.len())
	}

	// An option out of range: refused, and the sink set before keeps logging.
	err := e.SetDecisionLog(func([]byte) {}, SampleRate(2))
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "sample_rate") {
		t.Fatalf("sample rate 2: %v", err)
	}
	e.Authorize(annReads("after"))
	if ev.len() != 801 {
		t.Fatalf("%d events", ev.len())
	}

	// A rate limit: a burst of 3, the rest counted.
	var limited events
	if err := e.SetDecisionLog(limited.sink(t), MaxEventsPerSecond(3)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		e.Authorize(annReads("limited"))
	}
	m, _ := e.Metrics()
	if n := limited.len(); n < 3 || n > 10 || m.DecisionLog["rate_limited"] != uint64(100-n) {
		t.Fatalf("%d events, %v", n, m.DecisionLog)
	}

	// Sampling: a request id is in or out as a whole.
	var sampled events
	if err := e.SetDecisionLog(sampled.sink(t), SampleRate(0.5)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		for i := 0; i < 4; i++ {
			e.Authorize(annReads(id))
		}
	}
	if n := sampled.len(); n%4 != 0 {
		t.Fatalf("%d events: a request id was split", n)
	}

	e.ClearDecisionLog()
	e.Authorize(annReads("cleared"))
	if sampled.len()%4 != 0 || limited.len() > 10 {
		t.Fatal("a cleared log still logs")
	}
}

func TestAPanickingSinkLosesTheEventNotTheDecision(t *testing.T) {
	e := docsBundle(t)
	var logged bytes.Buffer
	log.SetOutput(&logged)
	defer log.SetOutput(os.Stderr)
	if err := e.SetDecisionLog(func([]byte) { panic("sink broke") }); err != nil {
		t.Fatal(err)
	}
	d, err := e.Authorize(annReads("p"))
	if err != nil || !d.Allowed {
		t.Fatalf("%+v %v", d, err)
	}
	if !strings.Contains(logged.String(), "sink broke") {
		t.Fatalf("log: %q", logged.String())
	}
	// Closing frees the engine and with it the sink; a closed engine takes no sink.
	e.Close()
	if err := e.SetDecisionLog(func([]byte) {}); err != ErrClosed {
		t.Fatalf("closed: %v", err)
	}
}

// Decisions as OpenTelemetry log records (OTLP/JSON) to net/http's server: each decision
// arrives with its fields as attributes, and the counts say so; a bad endpoint is refused.
func TestDecisionLogToOTLP(t *testing.T) {
	var mu sync.Mutex
	var records []map[string]any
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var export struct {
			ResourceLogs []struct {
				ScopeLogs []struct {
					LogRecords []map[string]any `json:"logRecords"`
				} `json:"scopeLogs"`
			} `json:"resourceLogs"`
		}
		if r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&export) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, rl := range export.ResourceLogs {
			for _, sl := range rl.ScopeLogs {
				records = append(records, sl.LogRecords...)
			}
		}
	}))
	defer receiver.Close()
	e, err := NewGitLabDefault()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	request, _ := json.Marshal(userRequest("alice", "push_code", "10"))
	if err := e.ExportDecisionLogOTLP(OTLPOptions{Endpoint: "udp://x"}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("a bad endpoint: %v", err)
	}
	if err := e.ExportDecisionLogOTLP(OTLPOptions{Endpoint: receiver.URL + "/v1/logs", Encoding: "json", FlushIntervalSeconds: 0.05}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 25; i++ {
		if _, err := e.AuthorizeJSON(request); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		stats, err := e.OTLPStats()
		if err != nil || stats == nil {
			t.Fatalf("%v %v", stats, err)
		}
		if stats.Exported == 25 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not exported: %+v", stats)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(records) != 25 || records[0]["eventName"] != "arbiter.decision" {
		t.Fatalf("%d records: %v", len(records), records)
	}
	found := false
	for _, kv := range records[0]["attributes"].([]any) {
		attr := kv.(map[string]any)
		if attr["key"] == "decision" {
			found = attr["value"].(map[string]any)["stringValue"] == "allow"
		}
	}
	if !found {
		t.Fatalf("no decision attribute: %v", records[0])
	}
	e.ClearDecisionLog()
	if stats, err := e.OTLPStats(); err != nil || stats != nil {
		t.Fatalf("cleared: %v %v", stats, err)
	}
}
