package arbiter

/*
#include <stdlib.h>
#include "arbiter.h"
*/
import "C"

import (
	"encoding/json"
	"runtime"
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
// on every call, as JSON (ContextJSON, EntitiesJSON), which then wins.
type Request struct {
	Principal    *EntityRef      `json:"principal,omitempty"`
	Action       EntityRef       `json:"action"`
	Resource     EntityRef       `json:"resource"`
	Context      map[string]any  `json:"context,omitempty"`
	Entities     []Entity        `json:"entities,omitempty"`
	Token        string          `json:"token,omitempty"`
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

// cstr points C at a Go string's bytes, pinned for the call (cgo forbids passing unpinned Go
// pointers inside Go memory). An empty string is absent when optional is set.
func cstr(pinner *runtime.Pinner, s string, optional bool) C.arbiter_str {
	if s == "" {
		if optional {
			return C.arbiter_str{}
		}
		return C.arbiter_str{ptr: (*C.char)(unsafe.Pointer(&zeroByte)), len: 0}
	}
	data := unsafe.StringData(s)
	pinner.Pin(data)
	return C.arbiter_str{ptr: (*C.char)(unsafe.Pointer(data)), len: C.size_t(len(s))}
}

func cref(pinner *runtime.Pinner, r EntityRef) C.arbiter_entity_ref {
	return C.arbiter_entity_ref{type_name: cstr(pinner, r.Type, false), id: cstr(pinner, r.ID, false)}
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
		var pinner runtime.Pinner
		defer pinner.Unpin()
		var req C.arbiter_request
		if r.Principal != nil {
			req.principal = cref(&pinner, *r.Principal)
		}
		req.action = cref(&pinner, r.Action)
		req.resource = cref(&pinner, r.Resource)
		req.context_json = cstr(&pinner, context, true)
		req.entities_json = cstr(&pinner, entities, true)
		req.token = cstr(&pinner, r.Token, true)
		var out *C.arbiter_decision
		var cerr *C.arbiter_error
		code := C.arbiter_engine_authorize(ptr, &req, &out, &cerr)
		if code != C.ARBITER_RESULT_OK {
			return takeError(code, cerr)
		}
		decision = takeDecision(out)
		return nil
	})
	return decision, err
}

// takeDecision copies a C decision into Go and frees it: one call for everything, then Go
// reads the C memory directly.
func takeDecision(d *C.arbiter_decision) Decision {
	defer C.arbiter_decision_free(d)
	view := C.arbiter_decision_get_view(d)
	out := Decision{Allowed: bool(view.allowed)}
	if view.reason_count > 0 {
		for _, r := range unsafe.Slice(view.reasons, view.reason_count) {
			out.Reasons = append(out.Reasons, C.GoString(r))
		}
	}
	if view.error_count > 0 {
		for _, e := range unsafe.Slice(view.errors, view.error_count) {
			de := DecisionError{Kind: C.GoString(e.kind), Message: C.GoString(e.message)}
			if e.policy != nil {
				de.Policy = C.GoString(e.policy)
			}
			out.Errors = append(out.Errors, de)
		}
	}
	return out
}
