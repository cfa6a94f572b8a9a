package arbiter

/*
#include <stdint.h>
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

import "runtime/cgo"

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
