package arbiter

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// A bundle signed with the CLI loads with its public key, and refuses any other key and a
// change made after signing (the engine keeps the bundle it had).
func TestSignedBundles(t *testing.T) {
	cli := filepath.Join("..", "target", "release", "arbiter")
	dir := t.TempDir()
	policy := filepath.Join(dir, "p.cedar")
	if err := os.WriteFile(policy, []byte(`@id("signed") permit (principal, action, resource);`), 0o644); err != nil {
		t.Fatal(err)
	}
	public, err := exec.Command(cli, "bundle", "sign", "--bundle", dir, "--key", filepath.Join("..", "core", "tests", "fixtures", "keys", "ed.pem")).Output()
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngineFromSignedBundleDir(dir, string(public))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := NewEngineFromSignedBundleDir(dir); !errors.Is(err, ErrSignature) {
		t.Fatalf("no trusted key: %v", err)
	}
	if _, err := NewEngineFromSignedBundleDir(dir, "not a key"); !errors.Is(err, ErrSignature) {
		t.Fatalf("a bad key: %v", err)
	}
	if err := os.WriteFile(policy, []byte(`@id("changed") forbid (principal, action, resource);`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.ReloadFromDir(dir); !errors.Is(err, ErrSignature) {
		t.Fatalf("a changed bundle reloaded: %v", err)
	}
	req := Request{Principal: &EntityRef{Type: "U", ID: "1"}, Action: EntityRef{Type: "A", ID: "x"}, Resource: EntityRef{Type: "R", ID: "1"}}
	if d, err := e.Authorize(req); err != nil || !d.Allowed || d.Reasons[0] != "signed" {
		t.Fatalf("the signed bundle should still serve: %+v %v", d, err)
	}
}
