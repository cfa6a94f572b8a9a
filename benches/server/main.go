// Command server-bench measures `arbiter serve` over loopback against OPA's server deciding the
// equivalent Rego (authz.rego) with the same load generator: Envoy ext_authz Check over gRPC
// and AuthZEN evaluation over HTTP/1.1 keep-alive for Arbiter; OPA's REST API over HTTP/1.1
// keep-alive with the CheckRequest as input, as opa-envoy-plugin would hand it to the policy
// (the plugin itself is not served by the Go module proxy here). A Go ext_authz server that
// answers OK at once shows the floor: what the generator and gRPC over loopback cost alone.
//
// The servers are pinned to CPU 0 and the generator should run on CPU 1
// (`taskset -c 1 server-bench`), so each side has one core of this 2-core machine. Each
// scenario runs at saturation (closed loop, -workers concurrent callers) and at a fixed rate
// (open loop: each request's latency counts from when it was due, so a stall is not hidden).
// Before measuring, every request is decided by both Arbiter and OPA, and they must agree.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

var (
	root     = flag.String("root", "../..", "the repository")
	opaBin   = flag.String("opa", "target/tools/bin/opa", "the opa binary, under -root")
	out      = flag.String("out", "target/server-bench.json", "results, under -root")
	duration = flag.Duration("duration", 5*time.Second, "time per scenario")
	rate     = flag.Int("rate", 5000, "requests a second in the fixed-rate runs")
	workers  = flag.Int("workers", 32, "concurrent callers at saturation")
	nullMode = flag.String("null-server", "", "serve the no-op ext_authz server on this address (internal)")
)

// The requests: an anonymous download of each project's archive, allowed or denied by the
// default bundle's visibility and feature rules; 99 is no project at all.
var projects = []string{"1", "2", "3", "4", "5", "6", "7", "8", "10", "99"}

func path(id string) string { return "/api/v4/projects/" + id + "/repository/archive" }

func checkRequest(id string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "bench", Method: "GET", Path: path(id), Host: "gitlab.example.com", Scheme: "https",
			Protocol: "HTTP/1.1", Headers: map[string]string{"user-agent": "bench", "accept": "*/*"},
		}},
	}}
}

func authzenBody(id string) []byte {
	body, _ := json.Marshal(map[string]any{
		"subject":  map[string]string{"type": "Gitlab::User", "id": "anonymous"},
		"action":   map[string]string{"name": "download_code"},
		"resource": map[string]string{"type": "Gitlab::Project", "id": id},
		"context":  map[string]any{"admin_mode": false},
	})
	return body
}

func opaBody(id string) []byte {
	body, _ := json.Marshal(map[string]any{"input": map[string]any{"attributes": map[string]any{
		"request": map[string]any{"http": map[string]any{
			"id": "bench", "method": "GET", "path": path(id), "host": "gitlab.example.com",
			"headers": map[string]string{"user-agent": "bench", "accept": "*/*"},
		}}}}})
	return body
}

// cpuTicks is a process's user + system time so far, in clock ticks (1/100 s here).
func cpuTicks(pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		fail(err)
	}
	// The fields after the command name, which is in parentheses and may hold spaces.
	fields := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
	var user, system int64
	fmt.Sscan(fields[11], &user)
	fmt.Sscan(fields[12], &system)
	return user + system
}

const ticksPerSecond = 100

// A caller makes request number i and says whether it was allowed.
type caller func(i int) (bool, error)

// Result is one scenario's figures.
type Result struct {
	Name      string  `json:"name"`
	Mode      string  `json:"mode"`
	Requests  int     `json:"requests"`
	Errors    int64   `json:"errors"`
	PerSecond float64 `json:"per_second"`
	P50Micros float64 `json:"p50_us"`
	P99Micros float64 `json:"p99_us"`
	MaxMicros float64 `json:"max_us"`
	// At a fixed rate, the same from when each request was sent (the generator's own lateness
	// left out).
	SentP50Micros float64 `json:"sent_p50_us,omitempty"`
	SentP99Micros float64 `json:"sent_p99_us,omitempty"`
	TargetRate    int     `json:"target_rate,omitempty"`
	// The server's CPU time per request answered (user + system, from /proc), and so how many
	// requests a second one core of it would answer.
	ServerCPUMicros float64 `json:"server_cpu_us"`
	PerCoreSecond   float64 `json:"per_core_second"`
}

func summarize(name, mode string, latencies []time.Duration, errors int64, elapsed time.Duration, target int) Result {
	slices.Sort(latencies)
	at := func(q float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return float64(latencies[int(q*float64(len(latencies)-1))]) / 1e3
	}
	return Result{Name: name, Mode: mode, Requests: len(latencies), Errors: errors,
		PerSecond: float64(len(latencies)) / elapsed.Seconds(), P50Micros: at(0.5), P99Micros: at(0.99),
		MaxMicros: at(1), TargetRate: target}
}

// saturate runs -workers callers back to back for -duration.
func saturate(name string, call caller) Result {
	var (
		mu        sync.Mutex
		all       []time.Duration
		errors    atomic.Int64
		next      atomic.Int64
		wg        sync.WaitGroup
		deadline  = time.Now().Add(*duration)
		startedAt = time.Now()
	)
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(deadline) {
				i := int(next.Add(1))
				t := time.Now()
				if _, err := call(i); err != nil {
					errors.Add(1)
					continue
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return summarize(name, "saturation", all, errors.Load(), time.Since(startedAt), 0)
}

// atRate issues -rate requests a second for -duration; a request's latency counts from when
// it was due.
func atRate(name string, call caller) Result {
	total := int(duration.Seconds() * float64(*rate))
	interval := time.Second / time.Duration(*rate)
	latencies := make([]time.Duration, total)
	sent := make([]time.Duration, total)
	var errors atomic.Int64
	jobs := make(chan int, total)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				t := time.Now()
				if _, err := call(i); err != nil {
					errors.Add(1)
				}
				sent[i] = time.Since(t)
				latencies[i] = time.Since(start.Add(time.Duration(i) * interval))
			}
		}()
	}
	for i := 0; i < total; i++ {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	result := summarize(name, "fixed_rate", latencies, errors.Load(), time.Since(start), *rate)
	fromSend := summarize(name, "", sent, 0, time.Second, 0)
	result.SentP50Micros, result.SentP99Micros = fromSend.P50Micros, fromSend.P99Micros
	return result
}

func grpcCaller(address string) (caller, func()) {
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail(err)
	}
	client := authv3.NewAuthorizationClient(conn)
	requests := make([]*authv3.CheckRequest, len(projects))
	for i, id := range projects {
		requests[i] = checkRequest(id)
	}
	return func(i int) (bool, error) {
		response, err := client.Check(context.Background(), requests[i%len(requests)])
		if err != nil {
			return false, err
		}
		return response.GetStatus().GetCode() == int32(code.Code_OK), nil
	}, func() { conn.Close() }
}

func httpCaller(url string, bodies [][]byte, allowed func([]byte) bool) caller {
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, DisableCompression: true,
	}}
	return func(i int) (bool, error) {
		response, err := client.Post(url, "application/json", bytes.NewReader(bodies[i%len(bodies)]))
		if err != nil {
			return false, err
		}
		body, err := io.ReadAll(response.Body)
		response.Body.Close()
		if err != nil || response.StatusCode != 200 {
			return false, fmt.Errorf("status %d: %s %v", response.StatusCode, body, err)
		}
		return allowed(body), nil
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "server-bench:", err)
	os.Exit(1)
}

// pinned starts a command on CPU 0.
func pinned(name string, args ...string) *exec.Cmd {
	cmd := exec.Command("taskset", append([]string{"-c", "0", name}, args...)...)
	cmd.Stderr = os.Stderr
	return cmd
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitFor(what string, ready func() bool) {
	deadline := time.Now().Add(60 * time.Second)
	for !ready() {
		if time.Now().After(deadline) {
			fail(fmt.Errorf("%s never became ready", what))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// opaData is the default bundle's users and projects as OPA data.
func opaData(dir string) string {
	raw, err := os.ReadFile(filepath.Join(*root, "policies", "gitlab", "entities.json"))
	if err != nil {
		fail(err)
	}
	var entities []struct {
		UID   struct{ Type, ID string } `json:"uid"`
		Attrs map[string]any            `json:"attrs"`
	}
	if err := json.Unmarshal(raw, &entities); err != nil {
		fail(err)
	}
	data := map[string]map[string]any{"users": {}, "projects": {}}
	for _, e := range entities {
		switch e.UID.Type {
		case "Gitlab::User":
			data["users"][e.UID.ID] = e.Attrs
		case "Gitlab::Project":
			data["projects"][e.UID.ID] = e.Attrs
		}
	}
	path := filepath.Join(dir, "data.json")
	text, _ := json.Marshal(data)
	if err := os.WriteFile(path, text, 0o644); err != nil {
		fail(err)
	}
	return path
}

// nullServer answers every Check with OK at once.
type nullServer struct {
	authv3.UnimplementedAuthorizationServer
}

func (nullServer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{Status: &status.Status{Code: int32(code.Code_OK)}}, nil
}

func serveNull(address string) {
	listener, err := net.Listen("tcp", address)
	if err != nil {
		fail(err)
	}
	server := grpc.NewServer()
	authv3.RegisterAuthorizationServer(server, nullServer{})
	fail(server.Serve(listener))
}

func main() {
	flag.Parse()
	// The generator's own pauses count against every server alike; keep them few.
	debug.SetGCPercent(400)
	if *nullMode != "" {
		serveNull(*nullMode)
		return
	}
	tmp, err := os.MkdirTemp("", "server-bench")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(tmp)

	arbiter := pinned(filepath.Join(*root, "target", "release", "arbiter-server"),
		"--bundle", filepath.Join(*root, "policies", "gitlab"), "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0")
	stdout, _ := arbiter.StdoutPipe()
	if err := arbiter.Start(); err != nil {
		fail(err)
	}
	defer arbiter.Process.Kill()
	var listening struct{ HTTP, GRPC string }
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if err := json.Unmarshal([]byte(line), &listening); err != nil {
		fail(fmt.Errorf("arbiter-server: %q", line))
	}
	waitFor("arbiter-server", func() bool {
		r, err := http.Get("http://" + listening.HTTP + "/readyz")
		if err == nil {
			r.Body.Close()
		}
		return err == nil && r.StatusCode == 200
	})

	opaAddress := freePort()
	opa := pinned(filepath.Join(*root, *opaBin), "run", "--server", "--addr", opaAddress, "--log-level", "error",
		"--disable-telemetry", filepath.Join(*root, "benches", "server", "authz.rego"), opaData(tmp))
	if err := opa.Start(); err != nil {
		fail(err)
	}
	defer opa.Process.Kill()
	waitFor("opa", func() bool {
		r, err := http.Get("http://" + opaAddress + "/health")
		if err == nil {
			r.Body.Close()
		}
		return err == nil && r.StatusCode == 200
	})

	nullAddress := freePort()
	self, _ := os.Executable()
	null := pinned(self, "-null-server", nullAddress)
	if err := null.Start(); err != nil {
		fail(err)
	}
	defer null.Process.Kill()

	extAuthz, closeExtAuthz := grpcCaller(listening.GRPC)
	defer closeExtAuthz()
	floor, closeFloor := grpcCaller(nullAddress)
	defer closeFloor()
	waitFor("the no-op server", func() bool { _, err := floor(0); return err == nil })
	var authzenBodies, opaBodies [][]byte
	for _, id := range projects {
		authzenBodies = append(authzenBodies, authzenBody(id))
		opaBodies = append(opaBodies, opaBody(id))
	}
	authzen := httpCaller("http://"+listening.HTTP+"/access/v1/evaluation", authzenBodies,
		func(b []byte) bool { return bytes.HasPrefix(b, []byte(`{"decision":true`)) })
	opaREST := httpCaller("http://"+opaAddress+"/v1/data/envoy/authz/allow", opaBodies,
		func(b []byte) bool { return strings.Contains(string(b), `"result":true`) })

	// The same answers from each, or the comparison means nothing.
	allowedCount := 0
	for i, id := range projects {
		a, errA := extAuthz(i)
		z, errZ := authzen(i)
		o, errO := opaREST(i)
		if errA != nil || errZ != nil || errO != nil || a != z || a != o {
			fail(fmt.Errorf("project %s: ext_authz %v %v, AuthZEN %v %v, OPA %v %v", id, a, errA, z, errZ, o, errO))
		}
		if a {
			allowedCount++
		}
	}
	if allowedCount == 0 || allowedCount == len(projects) {
		fail(fmt.Errorf("%d of %d requests allowed: the mix proves nothing", allowedCount, len(projects)))
	}

	scenarios := []struct {
		name string
		call caller
		pid  int
	}{
		{"arbiter_ext_authz", extAuthz, arbiter.Process.Pid},
		{"noop_ext_authz", floor, null.Process.Pid},
		{"arbiter_authzen", authzen, arbiter.Process.Pid},
		{"opa_rest", opaREST, opa.Process.Pid},
	}
	var results []Result
	for _, s := range scenarios {
		for i := 0; i < 2000; i++ { // warm up connections and caches
			s.call(i)
		}
		for _, run := range []func(string, caller) Result{saturate, atRate} {
			before := cpuTicks(s.pid)
			r := run(s.name, s.call)
			seconds := float64(cpuTicks(s.pid)-before) / ticksPerSecond
			r.ServerCPUMicros = seconds / float64(r.Requests) * 1e6
			r.PerCoreSecond = 1e6 / r.ServerCPUMicros
			fmt.Fprintf(os.Stderr, "%-18s %-10s %9.0f/s  p50 %7.1f us  p99 %8.1f us  (from sending: %6.1f %7.1f)  server CPU %5.1f us/request  errors %d\n",
				r.Name, r.Mode, r.PerSecond, r.P50Micros, r.P99Micros, r.SentP50Micros, r.SentP99Micros, r.ServerCPUMicros, r.Errors)
			results = append(results, r)
		}
	}
	text, _ := json.MarshalIndent(map[string]any{
		"generator_cpus": runtime.GOMAXPROCS(0), "duration_seconds": duration.Seconds(),
		"workers": *workers, "allowed_of": []int{allowedCount, len(projects)}, "results": results,
	}, "", "  ")
	if err := os.WriteFile(filepath.Join(*root, *out), append(text, '\n'), 0o644); err != nil {
		fail(err)
	}
}
