package arbiter

/*
#include "arbiter.h"
*/
import "C"

import "encoding/json"

// ShadowReport is what shadow evaluation has seen since the candidate bundle was set.
type ShadowReport struct {
	// The candidate's manifest name and version; nil without a candidate.
	Candidate *struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"candidate"`
	Agreements    uint64         `json:"agreements"`
	Disagreements uint64         `json:"disagreements"`
	Recent        []Disagreement `json:"recent"`
}

// Disagreement is one request the candidate decided otherwise: the live and the candidate
// decision JSON (or {"error": ...}).
type Disagreement struct {
	Principal string          `json:"principal"`
	Action    string          `json:"action"`
	Resource  string          `json:"resource"`
	Live      json.RawMessage `json:"live"`
	Candidate json.RawMessage `json:"candidate"`
}

// SetCandidateFromDir sets a candidate bundle beside the live one: decisions are still taken
// from the live bundle, and the candidate decides each request too, for comparison
// (ShadowReport). It replaces any earlier candidate; on error nothing changes.
func (e *Engine) SetCandidateFromDir(dir string) error {
	return e.dirCall(dir, func(ptr *C.arbiter_engine, cdir *C.char, cerr **C.arbiter_error) C.uint32_t {
		return C.arbiter_engine_set_candidate_from_dir(ptr, cdir, cerr)
	})
}

// SetCandidateFromFiles sets a candidate bundle held in memory (see SetCandidateFromDir).
func (e *Engine) SetCandidateFromFiles(files map[string]string) error {
	return e.filesCall(files, func(ptr *C.arbiter_engine, list *C.arbiter_bundle_file, count C.size_t, cerr **C.arbiter_error) C.uint32_t {
		return C.arbiter_engine_set_candidate_from_files(ptr, list, count, cerr)
	})
}

// ClearCandidate drops the candidate bundle.
func (e *Engine) ClearCandidate() {
	_ = e.use(func(ptr *C.arbiter_engine) error {
		C.arbiter_engine_clear_candidate(ptr)
		return nil
	})
}

// ShadowReport says how the candidate's decisions compared with the live bundle's.
func (e *Engine) ShadowReport() (ShadowReport, error) {
	var r ShadowReport
	out, err := e.outputCall(func(ptr *C.arbiter_engine, out **C.char, cerr **C.arbiter_error) C.uint32_t {
		return C.arbiter_engine_shadow_report_json(ptr, out, cerr)
	})
	if err == nil {
		err = json.Unmarshal(out, &r)
	}
	return r, err
}
