package arbiter

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestExplainNamesThePoliciesBehindADecision(t *testing.T) {
	e := gitlab(t)
	request, _ := json.Marshal(userRequest("eve", "push_code", "10"))
	x, err := e.Explain(request)
	if err != nil {
		t.Fatal(err)
	}
	if x.Allowed || len(x.Reasons) != 0 {
		t.Fatalf("want a deny: %+v", x)
	}
	var developer *PolicyExplanation
	for i := range x.Policies {
		if x.Policies[i].ID == "role-developer" {
			developer = &x.Policies[i]
		}
	}
	if developer == nil || developer.Effect != "permit" || developer.Outcome != "not_satisfied" || !strings.Contains(developer.Condition, "30") {
		t.Fatalf("role-developer: %+v", developer)
	}
	text, err := e.ExplainText(request)
	if err != nil || !strings.HasPrefix(text, "DENY: no permit was satisfied\n") {
		t.Fatalf("text: %q %v", text, err)
	}
	if _, err := e.Explain([]byte("{oops")); !errors.Is(err, ErrMalformedRequest) {
		t.Fatalf("bad request: %v", err)
	}
}
