// Package arbiter decides authorization requests in-process with Arbiter's Rust core, through
// its C ABI (cgo). An Engine is safe for concurrent use by many goroutines, reloads included.
//
// Linking: the package links libarbiter.a statically, so a Go binary built with it needs no
// Arbiter library at run time. Inside this repository `make build` produces
// target/release/libarbiter.a and the package finds it and ffi-c/include/arbiter.h by itself.
// Elsewhere, point cgo at a copy of both:
//
//	CGO_CFLAGS="-I/opt/arbiter/include" CGO_LDFLAGS="-L/opt/arbiter/lib" go build ./...
package arbiter

/*
#cgo CFLAGS: -I${SRCDIR}/../ffi-c/include
#cgo LDFLAGS: -L${SRCDIR}/../target/release -l:libarbiter.a -lgcc_s -lutil -lrt -lpthread -lm -ldl
#include <stdlib.h>
#include "arbiter.h"
*/
import "C"

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"unsafe"
)

// Error is an error of an Arbiter call: a stable numeric code, a snake_case kind and a
// one-line message. Compare with the sentinels using errors.Is, which matches codes.
type Error struct {
	Code    uint32
	Kind    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("arbiter: %s (%s)", e.Message, e.Kind) }

// with is the sentinel e's code and kind with a message: an error found on the Go side.
func (e *Error) with(message string) *Error {
	return &Error{Code: e.Code, Kind: e.Kind, Message: message}
}

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Sentinel errors, one per kind of core's error table, named after it (kind policy_parse is
// ErrPolicyParse, code C.ARBITER_RESULT_POLICY_PARSE); a test walks the table.
var (
	ErrNullArgument     = &Error{Code: C.ARBITER_RESULT_NULL_ARGUMENT, Kind: "null_argument"}
	ErrInvalidUtf8      = &Error{Code: C.ARBITER_RESULT_INVALID_UTF8, Kind: "invalid_utf8"}
	ErrInvalidArgument  = &Error{Code: C.ARBITER_RESULT_INVALID_ARGUMENT, Kind: "invalid_argument"}
	ErrIo               = &Error{Code: C.ARBITER_RESULT_IO, Kind: "io"}
	ErrManifest         = &Error{Code: C.ARBITER_RESULT_MANIFEST, Kind: "manifest"}
	ErrPolicyParse      = &Error{Code: C.ARBITER_RESULT_POLICY_PARSE, Kind: "policy_parse"}
	ErrPolicyValidation = &Error{Code: C.ARBITER_RESULT_POLICY_VALIDATION, Kind: "policy_validation"}
	ErrSchema           = &Error{Code: C.ARBITER_RESULT_SCHEMA, Kind: "schema"}
	ErrEntities         = &Error{Code: C.ARBITER_RESULT_ENTITIES, Kind: "entities"}
	ErrLinks            = &Error{Code: C.ARBITER_RESULT_LINKS, Kind: "links"}
	ErrTokens           = &Error{Code: C.ARBITER_RESULT_TOKENS, Kind: "tokens"}
	ErrSignature        = &Error{Code: C.ARBITER_RESULT_SIGNATURE, Kind: "signature"}
	ErrSqlMapping       = &Error{Code: C.ARBITER_RESULT_SQL_MAPPING, Kind: "sql_mapping"}
	ErrAbilities        = &Error{Code: C.ARBITER_RESULT_ABILITIES, Kind: "abilities"}
	ErrHttp             = &Error{Code: C.ARBITER_RESULT_HTTP, Kind: "http"}
	ErrMalformedRequest = &Error{Code: C.ARBITER_RESULT_MALFORMED_REQUEST, Kind: "malformed_request"}
	ErrInvalidRequest   = &Error{Code: C.ARBITER_RESULT_INVALID_REQUEST, Kind: "invalid_request"}
	ErrInvalidContext   = &Error{Code: C.ARBITER_RESULT_INVALID_CONTEXT, Kind: "invalid_context"}
	ErrInvalidEntities  = &Error{Code: C.ARBITER_RESULT_INVALID_ENTITIES, Kind: "invalid_entities"}
	ErrUntranslatable   = &Error{Code: C.ARBITER_RESULT_UNTRANSLATABLE, Kind: "untranslatable"}
	ErrInternal         = &Error{Code: C.ARBITER_RESULT_INTERNAL, Kind: "internal"}
	ErrClosed           = errors.New("arbiter: the engine is closed")
)

// takeError turns a C error into a Go error at once, freeing the C object.
func takeError(code C.uint32_t, cerr *C.arbiter_error) error {
	if cerr == nil {
		kind := resultKind(uint32(code))
		if kind == "" {
			kind = "unknown"
		}
		return &Error{Code: uint32(code), Kind: kind, Message: "no error details"}
	}
	defer C.arbiter_error_free(cerr)
	return &Error{
		Code:    uint32(C.arbiter_error_code(cerr)),
		Kind:    C.GoString(C.arbiter_error_kind(cerr)),
		Message: C.GoString(C.arbiter_error_message(cerr)),
	}
}

// takeString copies a string Arbiter handed out and frees it.
func takeString(s *C.char) []byte {
	defer C.arbiter_string_free(s)
	return []byte(C.GoString(s))
}

// resultKind is the kind the C library gives a result code (core's error table), or "" for none.
func resultKind(code uint32) string {
	if kind := C.arbiter_result_kind(C.uint32_t(code)); kind != nil {
		return C.GoString(kind)
	}
	return ""
}

// Version is the version of the Arbiter library linked in.
func Version() string { return C.GoString(C.arbiter_version()) }

// Engine decides requests against one bundle at a time. Create one with NewEngineFromBundleDir,
// NewGitLabDefault or NewEngineFromFiles; Close frees it (a finalizer does too, eventually).
type Engine struct {
	mu  sync.RWMutex // held for reading by every call, for writing by Close
	ptr *C.arbiter_engine
}

func newEngine(create func(**C.arbiter_engine, **C.arbiter_error) C.uint32_t) (*Engine, error) {
	var ptr *C.arbiter_engine
	var cerr *C.arbiter_error
	if code := create(&ptr, &cerr); code != C.ARBITER_RESULT_OK {
		return nil, takeError(code, cerr)
	}
	e := &Engine{ptr: ptr}
	runtime.SetFinalizer(e, (*Engine).Close)
	return e, nil
}

// cPath copies a directory path into C memory for the caller to free. A NUL byte, where C would
// see the path end, is refused rather than cutting the path short.
func cPath(dir string) (*C.char, error) {
	if strings.IndexByte(dir, 0) >= 0 {
		return nil, ErrInvalidArgument.with(fmt.Sprintf("the path %q contains a NUL byte", dir))
	}
	return C.CString(dir), nil
}

// NewEngineFromBundleDir loads the bundle in dir.
func NewEngineFromBundleDir(dir string) (*Engine, error) {
	cdir, err := cPath(dir)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cdir))
	return newEngine(func(out **C.arbiter_engine, err **C.arbiter_error) C.uint32_t {
		return C.arbiter_engine_new_from_bundle_dir(cdir, out, err)
	})
}

// NewEngineFromSignedBundleDir loads the signed bundle in dir: it must carry a valid
// signature.json by one of the trusted public keys (SPKI PEM) and be exactly the files signed.
// The engine then loads only bundles so signed, on every reload too.
func NewEngineFromSignedBundleDir(dir string, publicKeysPEM ...string) (*Engine, error) {
	cdir, err := cPath(dir)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cdir))
	keys, count, free := cStrs(publicKeysPEM)
	defer free()
	return newEngine(func(out **C.arbiter_engine, err **C.arbiter_error) C.uint32_t {
		return C.arbiter_engine_new_from_signed_bundle_dir(cdir, keys, count, out, err)
	})
}

// cStrs copies strings into C memory as an arbiter_str array (nil for none); free releases it.
func cStrs(strs []string) (first *C.arbiter_str, count C.size_t, free func()) {
	if len(strs) == 0 {
		return nil, 0, func() {}
	}
	list := (*C.arbiter_str)(C.malloc(C.size_t(unsafe.Sizeof(C.arbiter_str{})) * C.size_t(len(strs))))
	entries := unsafe.Slice(list, len(strs))
	for i, s := range strs {
		entries[i] = C.arbiter_str{ptr: C.CString(s), len: C.size_t(len(s))}
	}
	return list, C.size_t(len(strs)), func() {
		for _, e := range entries {
			C.free(unsafe.Pointer(e.ptr))
		}
		C.free(unsafe.Pointer(list))
	}
}

// NewGitLabDefault loads the default GitLab bundle embedded in the library.
func NewGitLabDefault() (*Engine, error) {
	return newEngine(func(out **C.arbiter_engine, err **C.arbiter_error) C.uint32_t {
		return C.arbiter_engine_new_gitlab_default(out, err)
	})
}

// cFiles copies an in-memory bundle (relative path to contents) into C memory; free releases it.
func cFiles(files map[string]string) (list *C.arbiter_bundle_file, count C.size_t, free func()) {
	if len(files) == 0 {
		return nil, 0, func() {}
	}
	size := C.size_t(unsafe.Sizeof(C.arbiter_bundle_file{})) * C.size_t(len(files))
	list = (*C.arbiter_bundle_file)(C.malloc(size))
	entries := unsafe.Slice(list, len(files))
	var owned []*C.char
	i := 0
	for path, contents := range files {
		p, c := C.CString(path), C.CString(contents)
		owned = append(owned, p, c)
		entries[i] = C.arbiter_bundle_file{
			path:     C.arbiter_str{ptr: p, len: C.size_t(len(path))},
			contents: C.arbiter_str{ptr: c, len: C.size_t(len(contents))},
		}
		i++
	}
	return list, C.size_t(len(files)), func() {
		for _, s := range owned {
			C.free(unsafe.Pointer(s))
		}
		C.free(unsafe.Pointer(list))
	}
}

// NewEngineFromFiles loads a bundle held in memory: relative path (e.g. "schema.cedarschema",
// "policies/roles.cedar") to contents.
func NewEngineFromFiles(files map[string]string) (*Engine, error) {
	list, count, free := cFiles(files)
	defer free()
	return newEngine(func(out **C.arbiter_engine, err **C.arbiter_error) C.uint32_t {
		return C.arbiter_engine_new_from_files(list, count, out, err)
	})
}

// use runs f with the live engine pointer, or returns ErrClosed.
func (e *Engine) use(f func(*C.arbiter_engine) error) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr == nil {
		return ErrClosed
	}
	err := f(e.ptr)
	runtime.KeepAlive(e)
	return err
}

// Close frees the engine. It waits for calls in progress; later calls return ErrClosed.
// Closing twice is harmless.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ptr != nil {
		C.arbiter_engine_free(e.ptr)
		e.ptr = nil
		runtime.SetFinalizer(e, nil)
	}
	return nil
}

// ReloadFromDir replaces the bundle with the one in dir. Decisions in progress finish with the
// old bundle; if the new one fails to load, the old one keeps serving.
func (e *Engine) ReloadFromDir(dir string) error {
	return e.dirCall(dir, func(ptr *C.arbiter_engine, cdir *C.char, cerr **C.arbiter_error) C.uint32_t {
		return C.arbiter_engine_reload_from_dir(ptr, cdir, cerr)
	})
}

// ReloadFromFiles replaces the bundle with one held in memory (see NewEngineFromFiles).
func (e *Engine) ReloadFromFiles(files map[string]string) error {
	return e.filesCall(files, func(ptr *C.arbiter_engine, list *C.arbiter_bundle_file, count C.size_t, cerr **C.arbiter_error) C.uint32_t {
		return C.arbiter_engine_reload_from_files(ptr, list, count, cerr)
	})
}

// dirCall runs a call that takes a bundle directory.
func (e *Engine) dirCall(dir string, call func(*C.arbiter_engine, *C.char, **C.arbiter_error) C.uint32_t) error {
	cdir, err := cPath(dir)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cdir))
	return e.use(func(ptr *C.arbiter_engine) error {
		var cerr *C.arbiter_error
		if code := call(ptr, cdir, &cerr); code != C.ARBITER_RESULT_OK {
			return takeError(code, cerr)
		}
		return nil
	})
}

// filesCall runs a call that takes an in-memory bundle.
func (e *Engine) filesCall(files map[string]string, call func(*C.arbiter_engine, *C.arbiter_bundle_file, C.size_t, **C.arbiter_error) C.uint32_t) error {
	list, count, free := cFiles(files)
	defer free()
	return e.use(func(ptr *C.arbiter_engine) error {
		var cerr *C.arbiter_error
		if code := call(ptr, list, count, &cerr); code != C.ARBITER_RESULT_OK {
			return takeError(code, cerr)
		}
		return nil
	})
}

// bytesPtr is the address of b's first byte (nil for an empty slice).
func bytesPtr(b []byte) *C.char {
	if len(b) == 0 {
		return nil
	}
	return (*C.char)(unsafe.Pointer(&b[0]))
}

// AuthorizeJSON decides one request given as contract JSON and returns the decision JSON.
func (e *Engine) AuthorizeJSON(request []byte) ([]byte, error) {
	return e.jsonCall(request, func(ptr *C.arbiter_engine, in *C.char, n C.size_t, out **C.char, err **C.arbiter_error) C.uint32_t {
		return C.arbiter_engine_authorize_json(ptr, in, n, out, err)
	})
}

// AuthorizeJSONBatch decides a JSON array of requests against one bundle version and returns a
// JSON array of the same length: each decision, or {"error": {...}} for a request that could
// not be decided.
func (e *Engine) AuthorizeJSONBatch(requests []byte) ([]byte, error) {
	return e.jsonCall(requests, func(ptr *C.arbiter_engine, in *C.char, n C.size_t, out **C.char, err **C.arbiter_error) C.uint32_t {
		return C.arbiter_engine_authorize_json_batch(ptr, in, n, out, err)
	})
}

// VerifyToken verifies a token against the bundle's tokens.json without deciding anything.
func (e *Engine) VerifyToken(token string) (TokenInfo, error) {
	var info TokenInfo
	out, err := e.jsonCall([]byte(token), func(ptr *C.arbiter_engine, in *C.char, n C.size_t, out **C.char, err **C.arbiter_error) C.uint32_t {
		return C.arbiter_engine_verify_token(ptr, in, n, out, err)
	})
	if err == nil {
		err = json.Unmarshal(out, &info)
	}
	return info, err
}

func (e *Engine) jsonCall(input []byte, call func(*C.arbiter_engine, *C.char, C.size_t, **C.char, **C.arbiter_error) C.uint32_t) ([]byte, error) {
	if input == nil {
		input = []byte{}
	}
	var result []byte
	err := e.use(func(ptr *C.arbiter_engine) error {
		var out *C.char
		var cerr *C.arbiter_error
		// A zero-length input still needs a non-NULL pointer.
		in := bytesPtr(input)
		if in == nil {
			in = (*C.char)(unsafe.Pointer(&zeroByte))
		}
		code := call(ptr, in, C.size_t(len(input)), &out, &cerr)
		runtime.KeepAlive(input)
		if code != C.ARBITER_RESULT_OK {
			return takeError(code, cerr)
		}
		result = takeString(out)
		return nil
	})
	return result, err
}

var zeroByte byte
