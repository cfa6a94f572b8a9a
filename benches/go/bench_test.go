package bench

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	arbiter "github.com/arbiter-authz/arbiter/bindings-go"
	"github.com/cedar-policy/cedar-go"
	"github.com/golang-jwt/jwt/v5"
	"github.com/open-policy-agent/opa/v1/rego"
)

var root = filepath.Join("..", "..")

func read(tb testing.TB, path ...string) []byte {
	data, err := os.ReadFile(filepath.Join(path...))
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// The request every decision benchmark asks: alice, a developer of project 10 (entities.json),
// pushes to it.
var (
	principal = arbiter.EntityRef{Type: "Gitlab::User", ID: "alice"}
	request   = arbiter.Request{
		Principal: &principal,
		Action:    arbiter.EntityRef{Type: "Gitlab::Action", ID: "push_code"},
		Resource:  arbiter.EntityRef{Type: "Gitlab::Project", ID: "10"},
		// Given once as JSON, as a service asking many times would (the peers too get their
		// inputs prebuilt).
		ContextJSON: []byte(`{"admin_mode":false}`),
	}
)

// cedarGoBundle loads the default bundle's policy files and entities into cedar-go.
func cedarGoBundle(tb testing.TB) (*cedar.PolicySet, cedar.EntityMap) {
	files, _ := filepath.Glob(filepath.Join(root, "policies", "gitlab", "*.cedar"))
	sort.Strings(files)
	var text []string
	for _, f := range files {
		text = append(text, string(read(tb, f)))
	}
	policies, err := cedar.NewPolicySetFromBytes("gitlab.cedar", []byte(strings.Join(text, "\n")))
	if err != nil {
		tb.Fatal(err)
	}
	// The engine's view of the entities: entities.json plus the action hierarchy of the schema
	// (cedar-go has no schema to take it from), with explicit escapes.
	out, err := exec.Command(filepath.Join(root, "target", "release", "arbiter"), "entities").Output()
	if err != nil {
		tb.Fatalf("arbiter entities: %v", err)
	}
	var entities cedar.EntityMap
	if err := json.Unmarshal(out, &entities); err != nil {
		tb.Fatal(err)
	}
	return policies, entities
}

func BenchmarkDecision(b *testing.B) {
	b.Run("default_bundle/arbiter_go", func(b *testing.B) {
		e, err := arbiter.NewEngineFromBundleDir(filepath.Join(root, "policies", "gitlab"))
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close()
		if d, err := e.Authorize(request); err != nil || !d.Allowed {
			b.Fatalf("%+v %v", d, err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := e.Authorize(request); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("default_bundle/arbiter_go_json", func(b *testing.B) {
		e, err := arbiter.NewEngineFromBundleDir(filepath.Join(root, "policies", "gitlab"))
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close()
		raw, _ := json.Marshal(map[string]any{"principal": principal, "action": request.Action, "resource": request.Resource,
			"context": json.RawMessage(request.ContextJSON)})
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := e.AuthorizeJSON(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("default_bundle/cedar_go", func(b *testing.B) {
		policies, entities := cedarGoBundle(b)
		req := cedar.Request{
			Principal: cedar.NewEntityUID("Gitlab::User", "alice"),
			Action:    cedar.NewEntityUID("Gitlab::Action", "push_code"),
			Resource:  cedar.NewEntityUID("Gitlab::Project", "10"),
			Context:   cedar.NewRecord(cedar.RecordMap{"admin_mode": cedar.False}),
		}
		if d, diag := policies.IsAuthorized(entities, req); d != cedar.Allow {
			b.Fatalf("cedar-go decides %v: %+v", d, diag)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			policies.IsAuthorized(entities, req)
		}
	})
	sliceInput := map[string]any{
		"principal": map[string]any{"state": "active"},
		"action":    "push_code",
		"resource":  map[string]any{"archived": false, "features": map[string]any{"repository": "enabled"}},
		"context":   map[string]any{"access_level": 30},
	}
	sliceRequest := arbiter.Request{
		Principal:   &arbiter.EntityRef{Type: "User", ID: "alice"},
		Action:      arbiter.EntityRef{Type: "Action", ID: "push_code"},
		Resource:    arbiter.EntityRef{Type: "Project", ID: "3"},
		ContextJSON: []byte(`{"access_level":30}`),
	}
	b.Run("slice/arbiter_go", func(b *testing.B) {
		e, err := arbiter.NewEngineFromFiles(map[string]string{
			"slice.cedar":   string(read(b, "testdata", "slice.cedar")),
			"entities.json": string(read(b, "testdata", "slice_entities.json")),
		})
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close()
		if d, err := e.Authorize(sliceRequest); err != nil || !d.Allowed {
			b.Fatalf("%+v %v", d, err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := e.Authorize(sliceRequest); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("slice/opa", func(b *testing.B) {
		ctx := context.Background()
		query, err := rego.New(rego.Query("data.gitlab.allow"), rego.Module("slice.rego", string(read(b, "testdata", "slice.rego")))).PrepareForEval(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if rs, err := query.Eval(ctx, rego.EvalInput(sliceInput)); err != nil || !rs.Allowed() {
			b.Fatalf("%v %v", rs, err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := query.Eval(ctx, rego.EvalInput(sliceInput)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func tokensBundle(b *testing.B, issuer map[string]any) *arbiter.Engine {
	tokens, _ := json.Marshal(map[string]any{"jwt": map[string]any{"issuers": []any{issuer}}, "cache": map[string]any{"max_entries": 0}})
	e, err := arbiter.NewEngineFromFiles(map[string]string{
		"p.cedar":     "permit (principal, action, resource);",
		"tokens.json": string(tokens),
		"hs.b64":      string(read(b, root, "core", "tests", "fixtures", "keys", "hs256.b64")),
	})
	if err != nil {
		b.Fatal(err)
	}
	return e
}

func BenchmarkToken(b *testing.B) {
	claims := jwt.MapClaims{"iss": "bench", "sub": "42", "aud": "api", "exp": time.Now().Add(time.Hour).Unix()}
	secret, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(read(b, root, "core", "tests", "fixtures", "keys", "hs256.b64"))))
	if err != nil {
		b.Fatal(err)
	}
	block, _ := pem.Decode(read(b, root, "core", "tests", "fixtures", "keys", "rsa.pem"))
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		b.Fatal(err)
	}
	rsaKey := parsed.(*rsa.PrivateKey)
	hsToken, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	rsHeader := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	rsHeader.Header["kid"] = "k1"
	rsToken, _ := rsHeader.SignedString(rsaKey)
	n := base64.RawURLEncoding.EncodeToString(rsaKey.N.Bytes())
	jwks := map[string]any{"keys": []any{map[string]any{"kty": "RSA", "alg": "RS256", "kid": "k1", "n": n, "e": "AQAB"}}}
	parser := func(method string) *jwt.Parser {
		return jwt.NewParser(jwt.WithValidMethods([]string{method}), jwt.WithAudience("api"), jwt.WithIssuer("bench"), jwt.WithExpirationRequired())
	}
	cases := []struct {
		name, token, method string
		issuer              map[string]any
		key                 any
	}{
		{"hs256", hsToken, "HS256", map[string]any{"issuer": "bench", "audiences": []string{"api"}, "algorithms": []string{"HS256"},
			"hmac_secret_file": "hs.b64", "secret_encoding": "base64", "principal": map[string]any{"type": "User"}}, secret},
		{"rs256", rsToken, "RS256", map[string]any{"issuer": "bench", "audiences": []string{"api"}, "algorithms": []string{"RS256"},
			"jwks": jwks, "principal": map[string]any{"type": "User"}}, &rsaKey.PublicKey},
	}
	for _, c := range cases {
		b.Run(c.name+"/arbiter_go", func(b *testing.B) {
			e := tokensBundle(b, c.issuer)
			defer e.Close()
			if info, err := e.VerifyToken(c.token); err != nil || !info.Valid {
				b.Fatalf("%+v %v", info, err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := e.VerifyToken(c.token); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/golang_jwt", func(b *testing.B) {
			p := parser(c.method)
			keyFunc := func(*jwt.Token) (any, error) { return c.key, nil }
			if _, err := p.Parse(c.token, keyFunc); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := p.Parse(c.token, keyFunc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
