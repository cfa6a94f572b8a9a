// Package envoy tests `arbiter serve` through Envoy's own ext_authz client: each CheckRequest a
// proxy would send is answered by the server, and the answer is checked against the same
// request decided in-process by the embedded engine (the Go binding).
package envoy

import (
	"bufio"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	arbiter "github.com/arbiter-authz/arbiter/bindings-go"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

var (
	root      = repoRoot()
	bundleDir = filepath.Join(root, "policies", "gitlab")
	key       = mustKey()
	otherKey  = mustKey()
	client    authv3.AuthorizationClient
	health    healthpb.HealthClient
	engine    *arbiter.Engine
)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func mustKey() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwks is the JSON Web Key Set of key, as the default bundle reads it from ARBITER_GITLAB_JWKS.
func jwks(k *rsa.PublicKey) string {
	set := map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
		"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes()),
	}}}
	out, _ := json.Marshal(set)
	return string(out)
}

// jobToken is a CI job's ID token for job 77 of alice on project 10, signed by signer, valid
// until exp.
func jobToken(signer *rsa.PrivateKey, exp time.Time) string {
	header, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": "k1"})
	claims, _ := json.Marshal(map[string]any{
		"iss": "https://gitlab.example.com", "aud": "arbiter", "sub": "project_path:acme/app:ref_type:branch:ref:main",
		"iat": time.Now().Add(-time.Minute).Unix(), "exp": exp.Unix(),
		"job_id": "77", "project_id": "10", "user_id": "alice", "ref_protected": "true",
	})
	signing := b64(header) + "." + b64(claims)
	digest := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, signer, crypto.SHA256, digest[:])
	if err != nil {
		panic(err)
	}
	return signing + "." + b64(sig)
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	os.Setenv("ARBITER_GITLAB_JWKS", jwks(&key.PublicKey))
	var err error
	if engine, err = arbiter.NewEngineFromBundleDir(bundleDir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer engine.Close()
	server, err := start("--max-request-bytes", "65536")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := server.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "arbiter-server did not exit cleanly:", err)
		}
	}()
	conn, err := grpc.NewClient(server.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer conn.Close()
	client = authv3.NewAuthorizationClient(conn)
	health = healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		status, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
		cancel()
		if err == nil && status.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "the server never became ready:", err)
			return 1
		}
		time.Sleep(50 * time.Millisecond)
	}
	return m.Run()
}

// serverProcess is a running arbiter-server and the addresses it listens on.
type serverProcess struct {
	cmd  *exec.Cmd
	HTTP string
	GRPC string
}

// start runs arbiter-server over the default bundle directory on loopback ports, with args.
func start(args ...string) (*serverProcess, error) {
	args = append([]string{"--bundle", bundleDir, "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"}, args...)
	cmd := exec.Command(filepath.Join(root, "target", "release", "arbiter-server"), args...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	server := &serverProcess{cmd: cmd}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || json.Unmarshal([]byte(line), server) != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("no listening line (%v): %q", err, line)
	}
	return server, nil
}

// stop sends SIGTERM and waits for a clean exit.
func (s *serverProcess) stop() error {
	s.cmd.Process.Signal(syscall.SIGTERM)
	return s.cmd.Wait()
}

// check sends one HTTP request's attributes to the server, as Envoy would.
func check(t *testing.T, method, path string, headers map[string]string, peer string) *authv3.CheckResponse {
	t.Helper()
	request := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Principal: peer},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "envoy-id-1", Method: method, Path: path, Host: "gitlab.example.com",
			Scheme: "https", Protocol: "HTTP/1.1", Headers: headers,
		}},
	}}
	return send(t, request)
}

func send(t *testing.T, request *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	response, err := client.Check(ctx, request)
	if err != nil {
		t.Fatalf("Check failed with a gRPC error (Envoy could fail open on it): %v", err)
	}
	return response
}

// decision is the decision JSON of the contract.
type decision struct {
	Decision string   `json:"decision"`
	Reasons  []string `json:"reasons"`
	Errors   []struct {
		Kind string `json:"kind"`
	} `json:"errors"`
}

func (d decision) kinds() []string {
	var kinds []string
	for _, e := range d.Errors {
		kinds = append(kinds, e.Kind)
	}
	return kinds
}

// denied checks that response is a 403 deny, and answers the decision its body carries.
func denied(t *testing.T, response *authv3.CheckResponse) decision {
	t.Helper()
	if got := response.GetStatus().GetCode(); got != int32(code.Code_PERMISSION_DENIED) {
		t.Fatalf("status %d, want PERMISSION_DENIED; %v", got, response)
	}
	d := response.GetDeniedResponse()
	if d == nil || d.GetStatus().GetCode() != 403 {
		t.Fatalf("not a 403 denied response: %v", response)
	}
	var body decision
	if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil || body.Decision != "deny" {
		t.Fatalf("deny body %q: %v", d.GetBody(), err)
	}
	return body
}

// allowed checks that response is OK, and answers the headers it sets and removes.
func allowed(t *testing.T, response *authv3.CheckResponse) (map[string]string, []string) {
	t.Helper()
	if got := response.GetStatus().GetCode(); got != int32(code.Code_OK) {
		t.Fatalf("status %d, want OK; %v", got, response)
	}
	ok := response.GetOkResponse()
	if ok == nil {
		t.Fatalf("no OK response: %v", response)
	}
	headers := map[string]string{}
	for _, h := range ok.GetHeaders() {
		if h.GetAppendAction().String() != "OVERWRITE_IF_EXISTS_OR_ADD" {
			t.Errorf("header %s is appended, not overwritten: a client could set it", h.GetHeader().GetKey())
		}
		headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return headers, ok.GetHeadersToRemove()
}

// inProcess decides the Cedar request a route maps to with the embedded engine.
func inProcess(t *testing.T, principal map[string]string, token, action, project string) decision {
	t.Helper()
	request := map[string]any{
		"action":   map[string]string{"type": "Gitlab::Action", "id": action},
		"resource": map[string]string{"type": "Gitlab::Project", "id": project},
		"context":  map[string]any{"admin_mode": false},
	}
	if principal != nil {
		request["principal"] = principal
	}
	if token != "" {
		request["token"] = token
	}
	body, _ := json.Marshal(request)
	out, err := engine.AuthorizeJSON(body)
	if err != nil {
		t.Fatalf("in-process: %v", err)
	}
	var d decision
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// sameAsInProcess checks the server's answer against the embedded engine's for one request.
func sameAsInProcess(t *testing.T, response *authv3.CheckResponse, want decision) {
	t.Helper()
	if want.Decision == "allow" {
		allowed(t, response)
		return
	}
	got := denied(t, response)
	if !slices.Equal(got.Reasons, want.Reasons) || !slices.Equal(got.kinds(), want.kinds()) {
		t.Errorf("server denied with %+v, in-process %+v", got, want)
	}
}

var anonymous = map[string]string{"type": "Gitlab::User", "id": "anonymous"}

func TestAnAnonymousCallerReadsAPublicProjectAndNotAPrivateOne(t *testing.T) {
	response := check(t, "GET", "/api/v4/projects/1", map[string]string{"x-request-id": "req-1"}, "")
	sameAsInProcess(t, response, inProcess(t, anonymous, "", "read_project", "1"))
	headers, _ := allowed(t, response)
	if headers["x-arbiter-principal"] != `Gitlab::User::"anonymous"` || headers["x-arbiter-decision-id"] != "req-1" {
		t.Errorf("headers %v", headers)
	}
	response = check(t, "GET", "/api/v4/projects/3", nil, "")
	sameAsInProcess(t, response, inProcess(t, anonymous, "", "read_project", "3"))
	denied(t, response)
}

func TestAVerifiedJobTokenNamesThePrincipal(t *testing.T) {
	token := jobToken(key, time.Now().Add(time.Hour))
	for _, c := range []struct{ method, path, action string }{
		{"GET", "/api/v4/projects/10/repository/archive", "download_code"},
		{"GET", "/api/v4/projects/10/repository/files/lib%2Fa.rb/raw", "download_code"},
		{"POST", "/api/v4/projects/10/issues", "create_issue"},
		{"DELETE", "/api/v4/projects/10", "remove_project"},
	} {
		response := check(t, c.method, c.path, map[string]string{"authorization": "Bearer " + token}, "")
		want := inProcess(t, nil, token, c.action, "10")
		sameAsInProcess(t, response, want)
		if want.Decision == "allow" {
			headers, _ := allowed(t, response)
			if headers["x-arbiter-principal"] != `Gitlab::CiJob::"77"` {
				t.Errorf("%s: principal header %q", c.path, headers["x-arbiter-principal"])
			}
		}
	}
	if inProcess(t, nil, token, "download_code", "10").Decision != "allow" {
		t.Error("the job's own project's code should be readable: the test would prove nothing")
	}
}

func TestTokensThatFailAreDeniedWithTheirKind(t *testing.T) {
	for _, c := range []struct {
		name, header, value, kind string
	}{
		{"expired", "authorization", "Bearer " + jobToken(key, time.Now().Add(-time.Hour)), "expired"},
		{"another key", "authorization", "Bearer " + jobToken(otherKey, time.Now().Add(time.Hour)), "bad_signature"},
		{"an opaque token", "authorization", "Bearer not-a-token", "unknown_issuer"},
		{"basic credentials", "authorization", "Basic dXNlcjpwYXNz", "no_principal"},
		{"an empty bearer", "authorization", "Bearer ", "no_principal"},
	} {
		response := check(t, "GET", "/api/v4/projects/1", map[string]string{c.header: c.value}, "")
		got := denied(t, response)
		if kinds := got.kinds(); len(kinds) != 1 || kinds[0] != c.kind {
			t.Errorf("%s: error kinds %v, want [%s]", c.name, kinds, c.kind)
		}
		if c.kind != "no_principal" {
			token := strings.TrimPrefix(c.value, "Bearer ")
			sameAsInProcess(t, response, inProcess(t, nil, token, "read_project", "1"))
		}
	}
}

func TestTheMTLSPeersSPIFFEIDIsThePrincipal(t *testing.T) {
	peer := "spiffe://gitlab.example.com/gitaly-client"
	service := map[string]string{"type": "Gitlab::Service", "id": "gitaly-client"}
	response := check(t, "GET", "/api/v4/projects/10/repository/archive", nil, peer)
	want := inProcess(t, service, "", "download_code", "10")
	if want.Decision != "allow" {
		t.Fatalf("in-process: %+v", want)
	}
	sameAsInProcess(t, response, want)
	headers, _ := allowed(t, response)
	if headers["x-arbiter-principal"] != `Gitlab::Service::"gitaly-client"` || headers["x-arbiter-decision-id"] != "envoy-id-1" {
		t.Errorf("headers %v", headers)
	}
	response = check(t, "GET", "/api/v4/projects/10", nil, peer)
	sameAsInProcess(t, response, inProcess(t, service, "", "read_project", "10"))
	denied(t, response)
	got := denied(t, check(t, "GET", "/api/v4/projects/10/repository/archive", nil, "spiffe://evil.example.com/gitaly-client"))
	if !slices.Equal(got.kinds(), []string{"no_principal"}) {
		t.Errorf("a peer of another trust domain: %+v", got)
	}
}

func TestRequestsNoRouteTakesAreDenied(t *testing.T) {
	for _, c := range []struct{ method, path, kind string }{
		{"GET", "/api/v4/users", "no_route"},
		{"PATCH", "/api/v4/projects/1", "no_route"},
		{"GET", "/api/v4/projects/1/../3", "bad_request"},
		{"GET", "/api/v4/projects/1/%2e%2e/3", "bad_request"},
		{"GET", "//api/v4/projects/1", "bad_request"},
	} {
		got := denied(t, check(t, c.method, c.path, nil, ""))
		if !slices.Equal(got.kinds(), []string{c.kind}) {
			t.Errorf("%s %s: %+v, want %s", c.method, c.path, got, c.kind)
		}
	}
}

func TestMalformedAndOversizeRequestsAreDeniedNotErrors(t *testing.T) {
	for name, request := range map[string]*authv3.CheckRequest{
		"empty":           {},
		"no HTTP request": {Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}},
	} {
		got := denied(t, send(t, request))
		if !slices.Equal(got.kinds(), []string{"bad_request"}) {
			t.Errorf("%s: %+v", name, got)
		}
	}
	big := map[string]string{"x-padding": strings.Repeat("x", 100_000)}
	got := denied(t, check(t, "GET", "/api/v4/projects/1", big, ""))
	if !slices.Equal(got.kinds(), []string{"too_large"}) {
		t.Errorf("oversize: %+v", got)
	}
}

func TestAClientCannotSetTheHeadersTheServerVouchesFor(t *testing.T) {
	spoofed := map[string]string{"x-arbiter-principal": `Gitlab::User::"root"`, "x-arbiter-decision-id": "mine"}
	request := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/api/v4/projects/1", Headers: spoofed,
		}},
	}}
	headers, removed := allowed(t, send(t, request))
	if headers["x-arbiter-principal"] != `Gitlab::User::"anonymous"` {
		t.Errorf("principal header %q", headers["x-arbiter-principal"])
	}
	// Without a request id of Envoy's, the one the client sent is the decision id it gets back;
	// a header the server has no value for would be removed instead.
	if headers["x-arbiter-decision-id"] != "mine" && !slices.Contains(removed, "x-arbiter-decision-id") {
		t.Errorf("decision id header neither set nor removed: %v %v", headers, removed)
	}
}

func TestConcurrentChecksAgreeWithInProcessDecisions(t *testing.T) {
	token := jobToken(key, time.Now().Add(time.Hour))
	want := inProcess(t, nil, token, "download_code", "10")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				response := check(t, "GET", "/api/v4/projects/10/repository/archive",
					map[string]string{"authorization": "Bearer " + token}, "")
				sameAsInProcess(t, response, want)
			}
		}()
	}
	wg.Wait()
}

func TestHealthSaysServing(t *testing.T) {
	for _, service := range []string{"", "envoy.service.auth.v3.Authorization"} {
		status, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
		if err != nil || status.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %q: %v %v", service, status, err)
		}
	}
}
