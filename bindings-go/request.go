package arbiter

/*
#include <stdlib.h>
#include "arbiter.h"
*/
import "C"

import (
	"encoding/binary"
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
	// Tags, when the entity type has them (the default bundle's project authorizations).
	Tags map[string]any `json:"tags,omitempty"`
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

// authorizeFrame is what arbiter_engine_authorize_packed reads and writes, placed in an arena.
type authorizeFrame struct {
	req    C.arbiter_request
	packed C.arbiter_packed_decision
	err    *C.arbiter_error
}

// packedRoom is the room left in the arena for the packed decision; a decision that needs more
// (many errors with long messages) comes back in memory Arbiter allocates.
const packedRoom = 512

// bytes copies b into the arena, absent when empty.
func (a *cArena) bytes(b []byte) C.arbiter_str {
	// A view of b for the copy, not kept: no string copy of the caller's JSON on the heap.
	return a.str(unsafe.String(unsafe.SliceData(b), len(b)), true)
}

func (a *cArena) ref(r EntityRef) C.arbiter_entity_ref {
	return C.arbiter_entity_ref{type_name: a.str(r.Type, false), id: a.str(r.ID, false)}
}

// Authorize decides a typed request through the C ABI's fast path: no request JSON; the
// context and entities, when present, are encoded as JSON.
func (e *Engine) Authorize(r Request) (Decision, error) {
	context, entities := r.ContextJSON, r.EntitiesJSON
	if len(context) == 0 && r.Context != nil {
		b, err := json.Marshal(r.Context)
		if err != nil {
			return Decision{}, ErrMalformedRequest.with("context: " + err.Error())
		}
		context = b
	}
	if len(entities) == 0 && len(r.Entities) > 0 {
		b, err := json.Marshal(r.Entities)
		if err != nil {
			return Decision{}, ErrInvalidEntities.with("entities: " + err.Error())
		}
		entities = b
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
		// The request, the out-parameters and the room for the answer live in the arena
		// too: the call passes C memory only, which cgo need not check and Go need not move
		// to the heap.
		arena.reset(int(unsafe.Sizeof(authorizeFrame{})) + size + packedRoom)
		frame := (*authorizeFrame)(arena.base)
		arena.used = int(unsafe.Sizeof(authorizeFrame{}))
		*frame = authorizeFrame{}
		if r.Principal != nil {
			frame.req.principal = arena.ref(*r.Principal)
		}
		frame.req.action = arena.ref(r.Action)
		frame.req.resource = arena.ref(r.Resource)
		frame.req.context_json = arena.bytes(context)
		frame.req.entities_json = arena.bytes(entities)
		frame.req.token = arena.str(r.Token, true)
		frame.req.request_id = arena.str(r.RequestID, true)
		room := unsafe.Add(arena.base, arena.used)
		// One call decides and writes the decision into the arena.
		code := C.arbiter_engine_authorize_packed(ptr, &frame.req, (*C.uint8_t)(room), packedRoom, &frame.packed, &frame.err)
		if code != C.ARBITER_RESULT_OK {
			return takeError(code, frame.err)
		}
		data := unsafe.Pointer(frame.packed.data)
		decision = unpackDecision(unsafe.Slice((*byte)(data), frame.packed.len))
		if data != room {
			C.arbiter_packed_decision_free(frame.packed)
		}
		return nil
	})
	return decision, err
}

// unpackDecision copies a packed decision into Go (the layout is arbiter_packed_decision's in arbiter.h).
func unpackDecision(b []byte) Decision {
	number := func() uint32 {
		n := binary.NativeEndian.Uint32(b)
		b = b[4:]
		return n
	}
	str := func() string {
		n := number()
		if n == C.ARBITER_PACKED_ABSENT {
			return ""
		}
		s := string(b[:n])
		b = b[n:]
		return s
	}
	out := Decision{Allowed: number() == 1}
	reasons, errs := number(), number()
	if reasons > 0 {
		out.Reasons = make([]string, reasons)
		for i := range out.Reasons {
			out.Reasons[i] = str()
		}
	}
	if errs > 0 {
		out.Errors = make([]DecisionError, errs)
		for i := range out.Errors {
			e := &out.Errors[i]
			e.Kind = str()
			e.Policy = str()
			e.Message = str()
		}
	}
	return out
}
