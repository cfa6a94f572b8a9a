package arbiter

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

var bundleDir = filepath.Join("..", "policies", "gitlab")

func gitlab(t testing.TB) *Engine {
	t.Helper()
	e, err := NewEngineFromBundleDir(bundleDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// userRequest asks for a check. In entities.json, alice is a Developer of project 10, bob
// (blocked) too, and eve a Reporter; no one is a member of project 3.
func userRequest(user, action, project string) Request {
	return Request{
		Principal: &EntityRef{Type: "Gitlab::User", ID: user},
		Action:    EntityRef{Type: "Gitlab::Action", ID: action},
		Resource:  EntityRef{Type: "Gitlab::Project", ID: project},
		Context:   map[string]any{"admin_mode": false},
	}
}

func TestVersion(t *testing.T) {
	if v := Version(); !strings.Contains(v, ".") {
		t.Fatalf("version %q", v)
	}
}

func TestAuthorizeJSONSpeaksTheContract(t *testing.T) {
	e := gitlab(t)
	req, _ := json.Marshal(userRequest("alice", "push_code", "10"))
	out, err := e.AuthorizeJSON(req)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"decision":"allow","reasons":["role-developer"],"errors":[]}` {
		t.Fatalf("got %s", out)
	}
}

func TestAuthorizeTypedRequests(t *testing.T) {
	e := gitlab(t)
	d, err := e.Authorize(userRequest("alice", "push_code", "10"))
	if err != nil || !d.Allowed || len(d.Reasons) != 1 || d.Reasons[0] != "role-developer" {
		t.Fatalf("%+v %v", d, err)
	}
	d, err = e.Authorize(userRequest("bob", "push_code", "10"))
	if err != nil || d.Allowed || d.Reasons[0] != "user-blocked" {
		t.Fatalf("%+v %v", d, err)
	}
	// alice, blocked for this request only.
	blocked := userRequest("alice", "push_code", "10")
	blocked.Entities = []Entity{{
		UID:     EntityRef{Type: "Gitlab::User", ID: "alice"},
		Attrs:   map[string]any{"state": "blocked", "admin": false, "auditor": false, "external": false, "user_type": "human"},
		Parents: []EntityRef{},
	}}
	if d, err = e.Authorize(blocked); err != nil || d.Allowed {
		t.Fatalf("%+v %v", d, err)
	}
	if d, _ = e.Authorize(userRequest("alice", "push_code", "10")); !d.Allowed {
		t.Fatal("alice stays active outside that request")
	}
	// The same as JSON, given once: it wins over the Go values.
	raw := userRequest("alice", "push_code", "10")
	raw.ContextJSON = []byte(`{"admin_mode": false}`)
	raw.EntitiesJSON, _ = json.Marshal(blocked.Entities)
	if d, err = e.Authorize(raw); err != nil || d.Allowed || d.Reasons[0] != "user-blocked" {
		t.Fatalf("%+v %v", d, err)
	}
	// A token nobody configured for: a deny carrying the token error.
	token := Request{Action: EntityRef{"Gitlab::Action", "read_project"}, Resource: EntityRef{"Gitlab::Project", "1"},
		Context: map[string]any{"admin_mode": false}, Token: "not-a-token"}
	if d, err = e.Authorize(token); err != nil || d.Allowed || len(d.Errors) != 1 || d.Errors[0].Kind != "unknown_issuer" {
		t.Fatalf("%+v %v", d, err)
	}
}

// What a security review found the typed Rust path letting through: an attribute of the wrong
// type (which made the fail-closed `archived-read-only` forbid error out and be skipped) and an
// action entity regrouping actions (which let a job token remove a project). Both are
// ErrInvalidEntities here, and a key given twice in request JSON is refused.
func TestEntitiesTheSchemaRefusesAreErrorsNeverSkippedForbids(t *testing.T) {
	e := gitlab(t)
	features := map[string]any{"repository": "enabled", "issues": "enabled", "merge_requests": "enabled",
		"builds": "enabled", "container_registry": "enabled", "package_registry": "enabled"}
	project := func(archived any) Entity {
		return Entity{UID: EntityRef{Type: "Gitlab::Project", ID: "10"},
			Attrs:   map[string]any{"visibility": "private", "archived": archived, "features": features, "job_token_allowlist": []any{}},
			Parents: []EntityRef{{Type: "Gitlab::Group", ID: "acme/platform"}},
			Tags:    map[string]any{"alice": map[string]any{"access_level": 30}}}
	}
	push := func(archived any) Request {
		r := userRequest("alice", "push_code", "10")
		r.Entities = []Entity{project(archived)}
		return r
	}
	if d, err := e.Authorize(push(false)); err != nil || !d.Allowed {
		t.Fatalf("%+v %v", d, err)
	}
	if d, err := e.Authorize(push(true)); err != nil || d.Allowed || d.Reasons[0] != "archived-read-only" {
		t.Fatalf("%+v %v", d, err)
	}
	job := userRequest("100", "remove_project", "3")
	job.Principal = &EntityRef{Type: "Gitlab::CiJob", ID: "100"}
	if d, err := e.Authorize(job); err != nil || d.Allowed {
		t.Fatalf("%+v %v", d, err)
	}
	job.Entities = []Entity{{UID: EntityRef{Type: "Gitlab::Action", ID: "remove_project"}, Attrs: map[string]any{},
		Parents: []EntityRef{{Type: "Gitlab::Action", ID: "job_token"}}}}
	for _, r := range []Request{push("true"), job} {
		if d, err := e.Authorize(r); !errors.Is(err, ErrInvalidEntities) {
			t.Fatalf("%+v %v", d, err)
		}
	}
	twice := userRequest("eve", "push_code", "10")
	twice.ContextJSON = []byte(`{"admin_mode": false, "admin_mode": true}`)
	if d, err := e.Authorize(twice); !errors.Is(err, ErrInvalidContext) {
		t.Fatalf("%+v %v", d, err)
	}
}

func TestErrorsMapToSentinels(t *testing.T) {
	if _, err := NewEngineFromBundleDir("/nonexistent/bundle"); !errors.Is(err, ErrIo) || !strings.Contains(err.Error(), "/nonexistent/bundle") {
		t.Fatalf("%v", err)
	}
	if _, err := NewEngineFromFiles(map[string]string{"p.cedar": "permit (principal,"}); !errors.Is(err, ErrPolicyParse) {
		t.Fatalf("%v", err)
	}
	e := gitlab(t)
	if _, err := e.AuthorizeJSON([]byte("{oops")); !errors.Is(err, ErrMalformedRequest) {
		t.Fatalf("%v", err)
	}
	if _, err := e.AuthorizeJSON(nil); !errors.Is(err, ErrMalformedRequest) {
		t.Fatalf("%v", err)
	}
	if _, err := e.AuthorizeJSON([]byte("\xff")); !errors.Is(err, ErrInvalidUtf8) {
		t.Fatalf("%v", err)
	}
	if _, err := e.Authorize(userRequest("alice", "fly", "10")); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("%v", err)
	}
	bad := userRequest("alice", "push_code", "10")
	bad.Context["admin_mode"] = "high"
	if _, err := e.Authorize(bad); !errors.Is(err, ErrInvalidContext) {
		t.Fatalf("%v", err)
	}
	var arbiterErr *Error
	if _, err := e.Authorize(bad); !errors.As(err, &arbiterErr) || arbiterErr.Kind != "invalid_context" || arbiterErr.Message == "" {
		t.Fatalf("%v", err)
	}
	// C would read a path only up to a NUL byte: refused, never cut short to another bundle.
	dir := bundleDir + "\x00.next"
	if _, err := NewEngineFromBundleDir(dir); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "NUL") {
		t.Fatalf("%v", err)
	}
	for _, call := range []func(string) error{e.ReloadFromDir, e.SetCandidateFromDir} {
		if err := call(dir); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("%v", err)
		}
	}
	if err := e.SetDecisionLog(nil); !errors.Is(err, ErrNullArgument) {
		t.Fatalf("a nil sink: %v", err)
	}
}

func TestBatchAndTokens(t *testing.T) {
	e := gitlab(t)
	a, _ := json.Marshal(userRequest("alice", "push_code", "10"))
	out, err := e.AuthorizeJSONBatch([]byte("[" + string(a) + `, {"bad": 1}]`))
	if err != nil {
		t.Fatal(err)
	}
	var answers []map[string]any
	if err := json.Unmarshal(out, &answers); err != nil || len(answers) != 2 || answers[0]["decision"] != "allow" || answers[1]["error"] == nil {
		t.Fatalf("%s %v", out, err)
	}
	info, err := e.VerifyToken("eyJhbGciOiJub25lIn0.e30.")
	if err != nil || info.Valid || info.Error == nil || info.Error.Kind == "" {
		t.Fatalf("%+v %v", info, err)
	}
}

func TestCloseIsIdempotentAndLaterCallsFail(t *testing.T) {
	e, err := NewGitLabDefault()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.AuthorizeJSON([]byte("{}")); !errors.Is(err, ErrClosed) {
		t.Fatalf("%v", err)
	}
	if _, err := e.Authorize(userRequest("alice", "push_code", "10")); !errors.Is(err, ErrClosed) {
		t.Fatalf("%v", err)
	}
	if err := e.ReloadFromDir(bundleDir); !errors.Is(err, ErrClosed) {
		t.Fatalf("%v", err)
	}
}

// Many goroutines decide while another reloads between two bundles and now and then a broken
// one: every decision comes from exactly one whole bundle.
func TestConcurrentDecisionsDuringReloads(t *testing.T) {
	bundleA := map[string]string{"p.cedar": `@id("a") permit (principal, action, resource);`}
	bundleB := map[string]string{"p.cedar": `@id("b") permit (principal, action, resource);`}
	e, err := NewEngineFromFiles(bundleA)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	req := Request{Principal: &EntityRef{"U", "1"}, Action: EntityRef{"Action", "x"}, Resource: EntityRef{"R", "1"}}
	var done atomic.Bool
	var decisions atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				d, err := e.Authorize(req)
				if err != nil || !d.Allowed || len(d.Reasons) != 1 || (d.Reasons[0] != "a" && d.Reasons[0] != "b") {
					t.Errorf("%+v %v", d, err)
					return
				}
				decisions.Add(1)
			}
		}()
	}
	for i := 0; i < 300; i++ {
		next := bundleA
		if i%2 == 0 {
			next = bundleB
		}
		if err := e.ReloadFromFiles(next); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			if err := e.ReloadFromFiles(map[string]string{"p.cedar": "permit ("}); !errors.Is(err, ErrPolicyParse) {
				t.Fatalf("%v", err)
			}
		}
	}
	done.Store(true)
	wg.Wait()
	if decisions.Load() == 0 {
		t.Fatal("no decisions")
	}
}

// rssBytes is the resident set size of this process.
func rssBytes(t *testing.T) int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skip("no /proc/self/statm on this system")
	}
	var size, resident int64
	if _, err := fmt.Sscan(string(data), &size, &resident); err != nil {
		t.Fatal(err)
	}
	return resident * int64(os.Getpagesize())
}

// A million decisions leave the resident set where the first hundred thousand put it.
func TestMillionDecisionsKeepMemoryStable(t *testing.T) {
	if raceEnabled {
		t.Skip("runs without the race detector (make go-test does both)")
	}
	e := gitlab(t)
	typed := userRequest("alice", "push_code", "10")
	raw, _ := json.Marshal(userRequest("bob", "download_code", "1"))
	decide := func(n int) {
		for i := 0; i < n; i++ {
			if i%2 == 0 {
				if _, err := e.Authorize(typed); err != nil {
					t.Fatal(err)
				}
			} else if _, err := e.AuthorizeJSON(raw); err != nil {
				t.Fatal(err)
			}
		}
	}
	decide(100_000)
	runtime.GC()
	before := rssBytes(t)
	decide(900_000)
	runtime.GC()
	after := rssBytes(t)
	t.Logf("RSS after 100k decisions: %d KiB, after 1M: %d KiB", before/1024, after/1024)
	if after-before > 16<<20 {
		t.Fatalf("RSS grew by %d KiB over 900k decisions", (after-before)/1024)
	}
}
