package arbiter

/*
#include <stdint.h>
#include <stdlib.h>
#include "arbiter.h"

// Defined in decision_log_export.go; they take the cgo.Handle as the integer it is.
extern void arbiterGoDecisionLog(uintptr_t handle, char *event, size_t event_len);
extern void arbiterGoDecisionLogRelease(uintptr_t handle);

// The callbacks Arbiter calls, with its exact types, passing the handle on.
static void arbiter_go_decision_log(void *user_data, const char *event, size_t event_len) {
	arbiterGoDecisionLog((uintptr_t)user_data, (char *)event, event_len);
}

static void arbiter_go_decision_log_release(void *user_data) {
	arbiterGoDecisionLogRelease((uintptr_t)user_data);
}

static uint32_t arbiter_go_set_decision_log(const arbiter_engine *engine, double sample_rate,
		uint32_t max_events_per_second, uintptr_t handle, arbiter_error **err_out) {
	return arbiter_engine_set_decision_log(engine, sample_rate, max_events_per_second,
		arbiter_go_decision_log, arbiter_go_decision_log_release, (void *)handle, err_out);
}
*/
import "C"

import (
	"encoding/json"
	"runtime/cgo"
	"unsafe"
)

// DecisionLogOption tunes a decision log (see SetDecisionLog).
type DecisionLogOption func(*decisionLogOptions)

type decisionLogOptions struct {
	sampleRate         float64
	maxEventsPerSecond uint32
}

// SampleRate logs this fraction of decisions, from 0 to 1 (default 1: every one). Decisions
// with the same RequestID are sampled alike, so all the checks of one request are logged or
// none.
func SampleRate(rate float64) DecisionLogOption {
	return func(o *decisionLogOptions) { o.sampleRate = rate }
}

// MaxEventsPerSecond logs at most n events a second, in bursts of up to n (default, or 0: no
// limit). What sampling and the limit leave out is counted in Metrics().DecisionLog.
func MaxEventsPerSecond(n uint32) DecisionLogOption {
	return func(o *decisionLogOptions) { o.maxEventsPerSecond = n }
}

// SetDecisionLog logs the engine's decisions from now on: every decision (of every call but
// Explain) is offered to sink as one JSON event, a line an operator can ship as is:
//
//	{"time":"...","request_id":"req-1","bundle":{"name":"gitlab","version":"1.0.0"},
//	 "principal":{...},"action":{...},"resource":{...},"decision":"allow","reasons":[...],
//	 "errors":[{"kind":...,"policy":...}],"token_id":null,"latency_us":2.4,"context":{...}}
//
// Tokens and secrets never appear; context attributes the bundle's manifest lists as
// sensitive_attributes are masked. sink runs on the deciding goroutine, inside the call, from
// many goroutines at once; the event is the sink's to keep. sink must not call this Engine's
// methods (the call it runs in holds the engine, and a concurrent Close would wait for both).
// A sink that panics loses its event, never the decision: the panic is recovered and reported
// with log.Printf (Arbiter counts the event as logged). SetDecisionLog replaces any earlier
// sink; a nil sink fails with ErrNullArgument, an option out of range with ErrInvalidArgument,
// and either changes nothing.
func (e *Engine) SetDecisionLog(sink func(event []byte), options ...DecisionLogOption) error {
	if sink == nil {
		return ErrNullArgument.with("SetDecisionLog needs a sink (ClearDecisionLog stops logging)")
	}
	o := decisionLogOptions{sampleRate: 1}
	for _, option := range options {
		option(&o)
	}
	// Arbiter releases the handle (arbiterGoDecisionLogRelease) once it is done with the sink,
	// on failure too.
	handle := cgo.NewHandle(sink)
	err := e.use(func(ptr *C.arbiter_engine) error {
		var cerr *C.arbiter_error
		code := C.arbiter_go_set_decision_log(ptr, C.double(o.sampleRate), C.uint32_t(o.maxEventsPerSecond), C.uintptr_t(handle), &cerr)
		if code != C.ARBITER_RESULT_OK {
			return takeError(code, cerr)
		}
		return nil
	})
	if err == ErrClosed {
		handle.Delete()
	}
	return err
}

// ClearDecisionLog stops logging decisions.
func (e *Engine) ClearDecisionLog() {
	_ = e.use(func(ptr *C.arbiter_engine) error {
		C.arbiter_engine_clear_decision_log(ptr)
		return nil
	})
}

// OTLPOptions say where and how ExportDecisionLogOTLP sends; zero values take the defaults.
type OTLPOptions struct {
	// The OTLP/HTTP logs endpoint, e.g. "http://127.0.0.1:4318/v1/logs" (required).
	Endpoint string `json:"endpoint"`
	// "protobuf" (the default) or "json".
	Encoding string `json:"encoding,omitempty"`
	// Records waiting for the receiver (default 8192; past it new ones are dropped and
	// counted) and records per request (default 512).
	MaxQueue int `json:"max_queue,omitempty"`
	MaxBatch int `json:"max_batch,omitempty"`
	// The longest a record waits for its batch (default 1 s) and one request's timeout
	// (default 5 s), in seconds.
	FlushIntervalSeconds float64 `json:"flush_interval_seconds,omitempty"`
	TimeoutSeconds       float64 `json:"timeout_seconds,omitempty"`
	// The resource's service.name (default "arbiter").
	ServiceName string `json:"service_name,omitempty"`
	// Trust only the CA certificates in this PEM file for HTTPS (default: the platform's roots).
	CAFile string `json:"ca_file,omitempty"`
	// As for SetDecisionLog: the fraction logged (0 means every decision) and a rate cap.
	SampleRate         float64 `json:"sample_rate,omitempty"`
	MaxEventsPerSecond uint32  `json:"max_events_per_second,omitempty"`
}

// OTLPStats count what the engine's OpenTelemetry exporter has done.
type OTLPStats struct {
	Exported      uint64 `json:"exported"`
	Dropped       uint64 `json:"dropped"`
	FailedExports uint64 `json:"failed_exports"`
}

// ExportDecisionLogOTLP sends every decision as an OpenTelemetry log record to an OTLP/HTTP
// receiver, from a bounded queue on an exporter thread of its own, replacing any other decision
// log. A decision never waits for the receiver; OTLPStats counts what was exported and lost.
func (e *Engine) ExportDecisionLogOTLP(options OTLPOptions) error {
	opts, err := json.Marshal(options)
	if err != nil {
		return ErrInvalidArgument.with(err.Error())
	}
	copts := C.CString(string(opts))
	defer C.free(unsafe.Pointer(copts))
	return e.use(func(ptr *C.arbiter_engine) error {
		var cerr *C.arbiter_error
		if code := C.arbiter_engine_export_decision_log_otlp(ptr, copts, &cerr); code != C.ARBITER_RESULT_OK {
			return takeError(code, cerr)
		}
		return nil
	})
}

// OTLPStats reports the engine's OpenTelemetry exporter, or nil when its decision log is not one.
func (e *Engine) OTLPStats() (*OTLPStats, error) {
	out, err := e.outputCall(func(ptr *C.arbiter_engine, out **C.char, cerr **C.arbiter_error) C.uint32_t {
		return C.arbiter_engine_otlp_stats_json(ptr, out, cerr)
	})
	if err != nil {
		return nil, err
	}
	var stats *OTLPStats
	return stats, json.Unmarshal(out, &stats)
}
