package arbiter

/*
#include "arbiter.h"
*/
import "C"

import "encoding/json"

// Explanation is a decision and the policies behind it.
type Explanation struct {
	Allowed  bool
	Reasons  []string
	Errors   []DecisionError
	Policies []PolicyExplanation
}

// PolicyExplanation says how one policy whose scope matched the request fared.
type PolicyExplanation struct {
	ID     string `json:"id"`
	Effect string `json:"effect"` // "permit" or "forbid"
	// "satisfied", "not_satisfied" or "errored".
	Outcome string `json:"outcome"`
	// The condition that was false or errored, in Cedar syntax ("" when satisfied).
	Condition string `json:"condition"`
	// The evaluation error, when it errored.
	Error string `json:"error"`
}

// Explain decides one request given as contract JSON and explains it: every policy whose
// scope matched, and whether its conditions were satisfied, not satisfied or errored.
func (e *Engine) Explain(request []byte) (Explanation, error) {
	out, err := e.jsonCall(request, func(ptr *C.arbiter_engine, in *C.char, n C.size_t, out **C.char, err **C.arbiter_error) C.uint32_t {
		return C.arbiter_engine_explain_json(ptr, in, n, out, err)
	})
	if err != nil {
		return Explanation{}, err
	}
	var wire struct {
		Decision string              `json:"decision"`
		Reasons  []string            `json:"reasons"`
		Errors   []DecisionError     `json:"errors"`
		Policies []PolicyExplanation `json:"policies"`
	}
	if err := json.Unmarshal(out, &wire); err != nil {
		return Explanation{}, err
	}
	return Explanation{Allowed: wire.Decision == "allow", Reasons: wire.Reasons, Errors: wire.Errors, Policies: wire.Policies}, nil
}

// ExplainText is the same explanation as text for a person.
func (e *Engine) ExplainText(request []byte) (string, error) {
	out, err := e.jsonCall(request, func(ptr *C.arbiter_engine, in *C.char, n C.size_t, out **C.char, err **C.arbiter_error) C.uint32_t {
		return C.arbiter_engine_explain_text(ptr, in, n, out, err)
	})
	return string(out), err
}
