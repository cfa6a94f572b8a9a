package arbiter

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

var anyRequest = Request{Principal: &EntityRef{Type: "U", ID: "1"}, Action: EntityRef{Type: "A", ID: "x"}, Resource: EntityRef{Type: "R", ID: "1"}}

func decided(t *testing.T, e *Engine) bool {
	t.Helper()
	d, err := e.Authorize(anyRequest)
	if err != nil {
		t.Fatal(err)
	}
	return d.Allowed
}

// startRefresher makes a refresher for source and starts its engine; both close with the test.
func startRefresher(t *testing.T, source string, options RefreshOptions) (*Refresher, *Engine) {
	t.Helper()
	r, err := NewRefresher(source, options)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	e, err := r.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return r, e
}

// A directory source: started, refreshed when it changes, a broken bundle refused with its kind
// while the old one serves, and the status in the engine's metrics.
func TestRefresherFromADirectory(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "p.cedar")
	write := func(text string) {
		if err := os.WriteFile(policy, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`permit (principal, action, resource);`)
	r, e := startRefresher(t, dir, RefreshOptions{Interval: time.Hour})
	if !decided(t, e) {
		t.Fatal("the first bundle allows")
	}
	if o, err := r.RefreshIfDue(e); err != nil || o.Refreshed != "not_due" {
		t.Fatalf("%+v %v", o, err)
	}
	write(`forbid (principal, action, resource);`)
	if o, err := r.Refresh(e); err != nil || o.Refreshed != "updated" || o.Digest == "" {
		t.Fatalf("%+v %v", o, err)
	}
	if decided(t, e) {
		t.Fatal("the new bundle denies")
	}
	write(`permit (`)
	if _, err := r.Refresh(e); !errors.Is(err, ErrPolicyParse) {
		t.Fatalf("a broken bundle: %v", err)
	}
	m, err := e.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if m.Source == nil || m.Source.ConsecutiveFailures != 1 || m.Source.LastError == "" || m.Source.Source != dir {
		t.Fatalf("%+v", m.Source)
	}
	if decided(t, e) {
		t.Fatal("the old bundle keeps serving")
	}
	remote, err := NewRefresher("https://127.0.0.1:1/b.tar.gz", RefreshOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Start(); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("a remote source without keys: %v", err)
	}
	remote.Close()
	if _, err := remote.Start(); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed: %v", err)
	}
}

// An HTTP source (net/http's own server, ETags and 304s included) carrying a bundle signed and
// packed by the CLI; a restart with the server down serves the cache.
func TestRefresherFromHTTPWithACache(t *testing.T) {
	cli := filepath.Join("..", "target", "release", "arbiter")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.cedar"), []byte(`permit (principal, action, resource);`), 0o644); err != nil {
		t.Fatal(err)
	}
	public, err := exec.Command(cli, "bundle", "sign", "--bundle", dir, "--key", filepath.Join("..", "core", "tests", "fixtures", "keys", "ed.pem")).Output()
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "bundle.tar.gz")
	if out, err := exec.Command(cli, "bundle", "pack", dir, "--out", archive).CombinedOutput(); err != nil {
		t.Fatal(string(out))
	}
	body, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	var notModified atomic.Int32
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Header.Get("If-None-Match") == `"v1"` {
			notModified.Add(1)
		}
		w.Header().Set("ETag", `"v1"`)
		http.ServeContent(w, req, "bundle.tar.gz", time.Time{}, bytes.NewReader(body))
	}))
	options := RefreshOptions{CacheDir: t.TempDir(), PublicKeysPEM: []string{string(public)}, Timeout: 2 * time.Second}
	r, e := startRefresher(t, server.URL+"/bundle.tar.gz", options)
	if o, err := r.Refresh(e); err != nil || o.Refreshed != "unchanged" || notModified.Load() != 1 {
		t.Fatalf("%+v %v (304s: %d)", o, err, notModified.Load())
	}
	server.Close()
	if _, err := r.Refresh(e); !errors.Is(err, ErrIo) {
		t.Fatalf("the source down: %v", err)
	}
	_, cached := startRefresher(t, server.URL+"/bundle.tar.gz", options)
	m, _ := cached.Metrics()
	if !decided(t, cached) || m.Source == nil || m.Source.ServedFrom != "cache" {
		t.Fatalf("%+v", m.Source)
	}
}
