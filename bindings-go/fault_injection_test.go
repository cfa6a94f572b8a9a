//go:build arbiter_fault_injection

package arbiter

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
)

// A panic inside Arbiter reaches Go as a deny carrying an "internal" error (every way of
// deciding, from many goroutines), and a reload that panics as ErrInternal with the old bundle
// kept; disarmed, the engine decides as before.
func TestInjectedPanicsAreDeniesAndReloadErrors(t *testing.T) {
	e, err := NewEngineFromFiles(map[string]string{"p.cedar": `@id("all") permit (principal, action, resource);`})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	req := Request{
		Principal: &EntityRef{Type: "User", ID: "ann"},
		Action:    EntityRef{Type: "Action", ID: "read"},
		Resource:  EntityRef{Type: "Doc", ID: "d1"},
	}
	if d, err := e.Authorize(req); err != nil || !d.Allowed {
		t.Fatalf("before: %+v %v", d, err)
	}
	internalDeny := func(d Decision, err error) {
		t.Helper()
		if err != nil || d.Allowed || len(d.Reasons) != 0 || len(d.Errors) != 1 || d.Errors[0].Kind != "internal" ||
			!strings.Contains(d.Errors[0].Message, "fault injected while deciding") {
			t.Errorf("want a deny with an internal error, got %+v %v", d, err)
		}
	}

	e.injectPanics(true)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				internalDeny(e.Authorize(req))
			}
		}()
	}
	wg.Wait()
	raw, err := e.AuthorizeJSON([]byte(`{"principal": {"type": "User", "id": "ann"}, "action": {"type": "Action", "id": "read"}, "resource": {"type": "Doc", "id": "d1"}}`))
	if err != nil {
		t.Fatal(err)
	}
	var answer struct {
		Decision string          `json:"decision"`
		Errors   []DecisionError `json:"errors"`
	}
	if err := json.Unmarshal(raw, &answer); err != nil {
		t.Fatal(err)
	}
	internalDeny(Decision{Allowed: answer.Decision != "deny", Errors: answer.Errors}, nil)

	err = e.ReloadFromFiles(map[string]string{"p.cedar": "forbid (principal, action, resource);"})
	if !errors.Is(err, ErrInternal) || !strings.Contains(err.Error(), "fault injected while reloading") {
		t.Fatalf("reload: want ErrInternal, got %v", err)
	}

	e.injectPanics(false)
	if d, err := e.Authorize(req); err != nil || !d.Allowed || d.Reasons[0] != "all" {
		t.Fatalf("after: %+v %v", d, err)
	}
}
