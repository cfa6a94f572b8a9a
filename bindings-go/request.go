package arbiter

/*
#include <stdlib.h>
#include "arbiter.h"
*/
import "C"

import (
	"encoding/json"
	"runtime"
	"sync"
	"unsafe"
)

// EntityRef names an entity: {"type": "Gitlab::User", "id": "42"}.
type EntityRef struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// Entity is a per-request entity in Cedar's entity JSON format.
type Entity struct {
	UID     EntityRef      `json:"uid"`
	Attrs   map[string]any `json:"attrs"`
	Parents []EntityRef    `json:"parents"`
}

// Request asks for a decision. Principal may be nil when Token is given. The context and the
// per-request entities may be given as Go values (Context, Entities) or, to skip encoding them
// on every call, as JSON (ContextJSON, EntitiesJSON), which then wins. RequestID, the host's id
// for the request (a correlation id), is carried into the decision log.
type Request struct {
	Principal    *EntityRef      `json:"principal,omitempty"`
	Action       EntityRef       `json:"action"`
	Resource     EntityRef       `json:"resource"`
	Context      map[string]any  `json:"context,omitempty"`
	Entities     []Entity        `json:"entities,omitempty"`
	Token        string          `json:"token,omitempty"`
	RequestID    string          `json:"request_id,omitempty"`
	ContextJSON  json.RawMessage `json:"-"`
	EntitiesJSON json.RawMessage `json:"-"`
}

// DecisionError is an error met while deciding: a policy that failed to evaluate (Policy set),
// or a token that was refused (Kind is one of the contract's token error kinds).
type DecisionError struct {
	Kind    string `json:"kind"`
	Policy  string `json:"policy,omitempty"`
	Message string `json:"message"`
}

// Decision is the answer to a request.
type Decision struct {
	Allowed bool
	// Reasons are the ids of the determining policies.
	Reasons []string
	Errors  []DecisionError
}

// TokenInfo is what VerifyToken reports.
type TokenInfo struct {
	Valid     bool            `json:"valid"`
	Kind      string          `json:"kind,omitempty"`
	Principal *EntityRef      `json:"principal,omitempty"`
	Claims    json.RawMessage `json:"claims,omitempty"`
	Error     *DecisionError  `json:"error,omitempty"`
}

// cArena is C memory that a request's strings are copied into for one call, so that the
// request handed to C holds no Go pointers. Copying a few hundred bytes costs less than pinning
// each string. Arenas are reused through a pool and freed by a finalizer when the pool drops
// them.
type cArena struct {
	base unsafe.Pointer
	size int
	used int
}

// Arenas that grew past this size for a large request are freed at once, not pooled.
const maxPooledArena = 64 << 10

var arenas = sync.Pool{New: func() any {
	a := new(cArena)
	runtime.SetFinalizer(a, (*cArena).free)
	return a
}}

func (a *cArena) free() {
	C.free(a.base)
	a.base, a.size = nil, 0
}

// reset makes room for n bytes (at least one, so an empty string has a non-NULL pointer).
func (a *cArena) reset(n int) {
	if n+1 > a.size {
		C.free(a.base)
		a.base = C.malloc(C.size_t(n + 1))
		a.size = n + 1
	}
	a.used = 0
}

func (a *cArena) release() {
	if a.size > maxPooledArena {
		a.free()
	}
	arenas.Put(a)
}

// str copies s into the arena. An empty string is absent when optional is set.
func (a *cArena) str(s string, optional bool) C.arbiter_str {
	if s == "" && optional {
		return C.arbiter_str{}
	}
	dst := unsafe.Add(a.base, a.used)
	copy(unsafe.Slice((*byte)(dst), len(s)), s)
	a.used += len(s)
	return C.arbiter_str{ptr: (*C.char)(dst), len: C.size_t(len(s))}
}

// authorizeFrame is what arbiter_engine_authorize_view reads and writes, placed in an arena.
type authorizeFrame struct {
	req  C.arbiter_request
	out  *C.arbiter_decision
	view C.arbiter_decision_view
	err  *C.arbiter_error
}

func (a *cArena) ref(r EntityRef) C.arbiter_entity_ref {
	return C.arbiter_entity_ref{type_name: a.str(r.Type, false), id: a.str(r.ID, false)}
}

// Authorize decides a typed request through the C ABI's fast path: no request JSON; the
// context and entities, when present, are encoded as JSON.
func (e *Engine) Authorize(r Request) (Decision, error) {
	context, entities := string(r.ContextJSON), string(r.EntitiesJSON)
	if context == "" && r.Context != nil {
		b, err := json.Marshal(r.Context)
		if err != nil {
			return Decision{}, &Error{Code: ErrMalformedRequest.Code, Kind: ErrMalformedRequest.Kind, Message: "context: " + err.Error()}
		}
		context = string(b)
	}
	if entities == "" && len(r.Entities) > 0 {
		b, err := json.Marshal(r.Entities)
		if err != nil {
			return Decision{}, &Error{Code: ErrInvalidEntities.Code, Kind: ErrInvalidEntities.Kind, Message: "entities: " + err.Error()}
		}
		entities = string(b)
	}
	var decision Decision
	err := e.use(func(ptr *C.arbiter_engine) error {
		size := len(r.Action.Type) + len(r.Action.ID) + len(r.Resource.Type) + len(r.Resource.ID) +
			len(context) + len(entities) + len(r.Token) + len(r.RequestID)
		if r.Principal != nil {
			size += len(r.Principal.Type) + len(r.Principal.ID)
		}
		arena := arenas.Get().(*cArena)
		defer arena.release()
		// The request and the out-parameters live in the arena too: the call passes C
		// memory only, which cgo need not check and Go need not move to the heap.
		arena.reset(int(unsafe.Sizeof(authorizeFrame{})) + size)
		frame := (*authorizeFrame)(arena.base)
		arena.used = int(unsafe.Sizeof(authorizeFrame{}))
		*frame = authorizeFrame{}
		if r.Principal != nil {
			frame.req.principal = arena.ref(*r.Principal)
		}
		frame.req.action = arena.ref(r.Action)
		frame.req.resource = arena.ref(r.Resource)
		frame.req.context_json = arena.str(context, true)
		frame.req.entities_json = arena.str(entities, true)
		frame.req.token = arena.str(r.Token, true)
		frame.req.request_id = arena.str(r.RequestID, true)
		// One call decides and describes the decision; one more frees it.
		code := C.arbiter_engine_authorize_view(ptr, &frame.req, &frame.out, &frame.view, &frame.err)
		if code != C.ARBITER_RESULT_OK {
			return takeError(code, frame.err)
		}
		decision = copyDecision(&frame.view)
		C.arbiter_decision_free(frame.out)
		return nil
	})
	return decision, err
}

// copyDecision copies what a decision's view shows into Go; Go reads the C memory directly.
func copyDecision(view *C.arbiter_decision_view) Decision {
	out := Decision{Allowed: bool(view.allowed)}
	if view.reason_count > 0 {
		out.Reasons = make([]string, view.reason_count)
		for i, r := range unsafe.Slice(view.reasons, view.reason_count) {
			out.Reasons[i] = C.GoString(r)
		}
	}
	if view.error_count > 0 {
		out.Errors = make([]DecisionError, view.error_count)
		for i, e := range unsafe.Slice(view.errors, view.error_count) {
			out.Errors[i] = DecisionError{Kind: C.GoString(e.kind), Message: C.GoString(e.message)}
			if e.policy != nil {
				out.Errors[i].Policy = C.GoString(e.policy)
			}
		}
	}
	return out
}
