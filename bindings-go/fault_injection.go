//go:build arbiter_fault_injection

// Test builds only: linked against a library built with the `fault-injection` feature
// (`make fault-test` runs `go test -tags arbiter_fault_injection` against target/fault).

package arbiter

/*
#define ARBITER_FAULT_INJECTION
#include "arbiter.h"
*/
import "C"

// injectPanics makes every decision and reload of the engine panic inside Arbiter while on.
func (e *Engine) injectPanics(on bool) {
	_ = e.use(func(ptr *C.arbiter_engine) error {
		C.arbiter_engine_inject_panics(ptr, C.bool(on))
		return nil
	})
}
