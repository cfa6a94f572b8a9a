package arbiter

// The callbacks Arbiter calls for a decision log (see SetDecisionLog). A file with //export may
// only declare in its preamble, so the C side that passes them lives in decision_log.go.

/*
#include <stddef.h>
#include <stdint.h>
*/
import "C"

import (
	"log"
	"runtime/cgo"
	"unsafe"
)

//export arbiterGoDecisionLog
func arbiterGoDecisionLog(handle C.uintptr_t, event *C.char, n C.size_t) {
	sink := cgo.Handle(handle).Value().(func([]byte))
	// A panic must not unwind through Arbiter's frames: the event is lost, the decision stands.
	defer func() {
		if r := recover(); r != nil {
			log.Printf("arbiter: the decision log sink panicked (the event is dropped): %v", r)
		}
	}()
	sink(C.GoBytes(unsafe.Pointer(event), C.int(n)))
}

//export arbiterGoDecisionLogRelease
func arbiterGoDecisionLogRelease(handle C.uintptr_t) {
	cgo.Handle(handle).Delete()
}
