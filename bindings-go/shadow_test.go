package arbiter

import (
	"encoding/json"
	"testing"
)

func TestACandidateBundleIsComparedButNeverDecides(t *testing.T) {
	e, err := NewEngineFromFiles(map[string]string{"p.cedar": `@id("live") permit (principal, action, resource);`})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.SetCandidateFromFiles(map[string]string{"p.cedar": `@id("candidate") forbid (principal, action, resource);`}); err != nil {
		t.Fatal(err)
	}
	req := Request{Principal: &EntityRef{Type: "U", ID: "1"}, Action: EntityRef{Type: "A", ID: "x"}, Resource: EntityRef{Type: "R", ID: "1"}}
	if d, err := e.Authorize(req); err != nil || !d.Allowed || d.Reasons[0] != "live" {
		t.Fatalf("live decision: %+v %v", d, err)
	}
	r, err := e.ShadowReport()
	if err != nil {
		t.Fatal(err)
	}
	if r.Candidate == nil || r.Agreements != 0 || r.Disagreements != 1 || len(r.Recent) != 1 {
		t.Fatalf("report: %+v", r)
	}
	var candidate struct {
		Decision string   `json:"decision"`
		Reasons  []string `json:"reasons"`
	}
	if err := json.Unmarshal(r.Recent[0].Candidate, &candidate); err != nil || candidate.Decision != "deny" || candidate.Reasons[0] != "candidate" {
		t.Fatalf("candidate decision: %s %v", r.Recent[0].Candidate, err)
	}
	if err := e.SetCandidateFromDir("/nonexistent"); err == nil {
		t.Fatal("a missing candidate loaded")
	}
	e.ClearCandidate()
	if r, _ := e.ShadowReport(); r.Candidate != nil {
		t.Fatalf("after clear: %+v", r)
	}
}
