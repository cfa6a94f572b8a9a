package arbiter

/*
#include "arbiter.h"
*/
import "C"

import "encoding/json"

// Metrics is what an engine has counted since it was created, reloads included.
type Metrics struct {
	// Decisions by action ("Type::id", or "other" for actions the bundle does not know).
	Decisions []ActionDecisions `json:"decisions"`
	// Requests that could not be decided, by error kind ("malformed_request", ...).
	RequestErrors map[string]uint64 `json:"request_errors"`
	// Tokens refused, by kind ("expired", "bad_signature", ...).
	TokenFailures map[string]uint64 `json:"token_failures"`
	// Evaluation errors, by policy id.
	PolicyErrors map[string]uint64 `json:"policy_errors"`
	// Panics contained inside Arbiter (each answered with a deny).
	InternalErrors uint64 `json:"internal_errors"`
	// Time to decide one request, reading it included.
	Latency Latency `json:"latency"`
	// The bundle serving decisions.
	Bundle BundleMetrics `json:"bundle"`
	// Requests a candidate bundle decided as the live one did, and otherwise (shadow evaluation).
	ShadowAgreements    uint64 `json:"shadow_agreements"`
	ShadowDisagreements uint64 `json:"shadow_disagreements"`
	// Decisions offered to the decision log, by what became of them: "logged", "sampled_out",
	// "rate_limited", "sink_panicked".
	DecisionLog map[string]uint64 `json:"decision_log"`
	// Where the bundle comes from and how refreshing it goes, for an engine a Refresher
	// started; nil otherwise.
	Source *SourceStatus `json:"source"`
}

// SourceStatus is a bundle source's state after the last refresh attempt.
type SourceStatus struct {
	// The source: a directory, an HTTP(S) URL or an oci:// reference.
	Source string `json:"source"`
	// The serving bundle's manifest version, its digest (sha256:...) and signing time.
	Revision string `json:"revision"`
	Digest   string `json:"digest"`
	SignedAt int64  `json:"signed_at"`
	// "source", or "cache" after a start with the source down.
	ServedFrom string `json:"served_from"`
	// Unix seconds of the last success and the last attempt (0 for never).
	LastSuccess int64 `json:"last_success"`
	LastAttempt int64 `json:"last_attempt"`
	// Why the last attempt failed ("" when it did not); the serving bundle stayed.
	LastError           string `json:"last_error"`
	ConsecutiveFailures uint64 `json:"consecutive_failures"`
}

// ActionDecisions counts the decisions of one action.
type ActionDecisions struct {
	Action string `json:"action"`
	Allow  uint64 `json:"allow"`
	Deny   uint64 `json:"deny"`
}

// Latency is a histogram with cumulative buckets.
type Latency struct {
	Count      uint64          `json:"count"`
	SumSeconds float64         `json:"sum_seconds"`
	Buckets    []LatencyBucket `json:"buckets"`
}

// LatencyBucket counts the calls that took at most LeSeconds (nil for the +Inf bucket).
type LatencyBucket struct {
	LeSeconds *float64 `json:"le_seconds"`
	Count     uint64   `json:"count"`
}

// BundleMetrics describes the serving bundle and its loads.
type BundleMetrics struct {
	Name                string  `json:"name"`
	Version             string  `json:"version"`
	LoadedAtUnixSeconds float64 `json:"loaded_at_unix_seconds"`
	LoadSeconds         float64 `json:"load_seconds"`
	Reloads             uint64  `json:"reloads"`
	ReloadFailures      uint64  `json:"reload_failures"`
}

// Metrics takes a snapshot of the engine's counters.
func (e *Engine) Metrics() (Metrics, error) {
	var m Metrics
	out, err := e.outputCall(func(ptr *C.arbiter_engine, out **C.char, cerr **C.arbiter_error) C.uint32_t {
		return C.arbiter_engine_metrics_json(ptr, out, cerr)
	})
	if err == nil {
		err = json.Unmarshal(out, &m)
	}
	return m, err
}

// MetricsPrometheus is the snapshot in the Prometheus text exposition format, ready to serve
// on /metrics.
func (e *Engine) MetricsPrometheus() (string, error) {
	out, err := e.outputCall(func(ptr *C.arbiter_engine, out **C.char, cerr **C.arbiter_error) C.uint32_t {
		return C.arbiter_engine_metrics_prometheus(ptr, out, cerr)
	})
	return string(out), err
}

// outputCall runs a call that takes no input and hands out a string.
func (e *Engine) outputCall(call func(*C.arbiter_engine, **C.char, **C.arbiter_error) C.uint32_t) ([]byte, error) {
	var result []byte
	err := e.use(func(ptr *C.arbiter_engine) error {
		var out *C.char
		var cerr *C.arbiter_error
		if code := call(ptr, &out, &cerr); code != C.ARBITER_RESULT_OK {
			return takeError(code, cerr)
		}
		result = takeString(out)
		return nil
	})
	return result, err
}
