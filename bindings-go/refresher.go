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
	"time"
	"unsafe"
)

// RefreshOptions say how a Refresher fetches and schedules; zero values take the defaults
// (docs/fleet.md).
type RefreshOptions struct {
	// Where the last good bundle archive is kept, so that a restart with the source down still
	// serves policy ("" for no cache).
	CacheDir string
	// Time between refreshes while they succeed (default 60 s; jittered), the longest wait after
	// failures (default 15 min) and the timeout of one fetch (default 10 s).
	Interval, MaxBackoff, Timeout time.Duration
	// The largest archive and bundle accepted, in bytes (default 64 MiB).
	MaxBytes int
	// Speak plain HTTP to an OCI registry (one on loopback).
	PlainHTTP bool
	// Trust only the CA certificates in this PEM file for HTTPS.
	CAFile string
	// Accept a signed bundle older than the serving one: a deliberate rollback.
	AllowRollback bool
	// Trusted bundle signing keys (SPKI PEM); a remote source needs at least one.
	PublicKeysPEM []string
}

func (o RefreshOptions) json() ([]byte, error) {
	m := map[string]any{}
	if o.CacheDir != "" {
		m["cache_dir"] = o.CacheDir
	}
	for name, d := range map[string]time.Duration{"interval_seconds": o.Interval, "max_backoff_seconds": o.MaxBackoff, "timeout_seconds": o.Timeout} {
		if d != 0 {
			m[name] = d.Seconds()
		}
	}
	if o.MaxBytes != 0 {
		m["max_bytes"] = o.MaxBytes
	}
	if o.CAFile != "" {
		m["ca_file"] = o.CAFile
	}
	m["plain_http"] = o.PlainHTTP
	m["allow_rollback"] = o.AllowRollback
	return json.Marshal(m)
}

// RefreshOutcome is what one refresh did: Refreshed is "updated" (Digest names the new
// bundle), "unchanged" or "not_due".
type RefreshOutcome struct {
	Refreshed string `json:"refreshed"`
	Digest    string `json:"digest"`
}

// Refresher fetches a bundle from its source (a directory, an https:// URL serving an archive,
// or an oci:// reference) and refreshes an engine from it when asked: there is no background
// goroutine. Its methods are safe to call from many goroutines (they take turns).
type Refresher struct {
	mu  sync.Mutex
	ptr *C.arbiter_refresher
}

// NewRefresher makes a refresher for source; nothing is fetched yet.
func NewRefresher(source string, options RefreshOptions) (*Refresher, error) {
	csource, err := cPath(source)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(csource))
	opts, err := options.json()
	if err != nil {
		return nil, ErrInvalidArgument.with(err.Error())
	}
	copts := C.CString(string(opts))
	defer C.free(unsafe.Pointer(copts))
	keys, count, free := cStrs(options.PublicKeysPEM)
	defer free()
	var ptr *C.arbiter_refresher
	var cerr *C.arbiter_error
	if code := C.arbiter_refresher_new(csource, copts, keys, count, &ptr, &cerr); code != C.ARBITER_RESULT_OK {
		return nil, takeError(code, cerr)
	}
	r := &Refresher{ptr: ptr}
	runtime.SetFinalizer(r, (*Refresher).Close)
	return r, nil
}

// use runs f with the live refresher pointer, one call at a time, or returns ErrClosed.
func (r *Refresher) use(f func(*C.arbiter_refresher) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ptr == nil {
		return ErrClosed
	}
	err := f(r.ptr)
	runtime.KeepAlive(r)
	return err
}

// Start fetches the bundle and builds an engine from it, or from the cache when the source
// fails. The engine's Metrics().Source reports the source's status from then on.
func (r *Refresher) Start() (*Engine, error) {
	var engine *Engine
	err := r.use(func(ptr *C.arbiter_refresher) error {
		var err error
		engine, err = newEngine(func(out **C.arbiter_engine, cerr **C.arbiter_error) C.uint32_t {
			return C.arbiter_refresher_start(ptr, out, cerr)
		})
		return err
	})
	return engine, err
}

// Refresh fetches now and swaps a new bundle into e. On error e keeps its bundle.
func (r *Refresher) Refresh(e *Engine) (RefreshOutcome, error) { return r.refresh(e, false) }

// RefreshIfDue refreshes when the schedule says a refresh is due ("not_due" otherwise): cheap
// enough to call on every request.
func (r *Refresher) RefreshIfDue(e *Engine) (RefreshOutcome, error) { return r.refresh(e, true) }

func (r *Refresher) refresh(e *Engine, onlyIfDue bool) (RefreshOutcome, error) {
	var outcome RefreshOutcome
	err := r.use(func(ptr *C.arbiter_refresher) error {
		out, err := e.outputCall(func(eptr *C.arbiter_engine, out **C.char, cerr **C.arbiter_error) C.uint32_t {
			return C.arbiter_refresher_refresh(ptr, eptr, C.bool(onlyIfDue), out, cerr)
		})
		if err != nil {
			return err
		}
		return json.Unmarshal(out, &outcome)
	})
	return outcome, err
}

// Close frees the refresher; engines it started live on. Closing twice is harmless.
func (r *Refresher) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ptr != nil {
		C.arbiter_refresher_free(r.ptr)
		r.ptr = nil
		runtime.SetFinalizer(r, nil)
	}
	return nil
}
