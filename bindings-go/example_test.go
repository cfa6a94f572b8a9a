package arbiter_test

import (
	"errors"
	"fmt"

	arbiter "github.com/arbiter-authz/arbiter/bindings-go"
)

// Decide one request against the default GitLab bundle that ships inside the library (in its
// example data, alice is a Developer of project 10).
func Example() {
	engine, err := arbiter.NewGitLabDefault()
	if err != nil {
		panic(err)
	}
	defer engine.Close()
	d, err := engine.Authorize(arbiter.Request{
		Principal: &arbiter.EntityRef{Type: "Gitlab::User", ID: "alice"},
		Action:    arbiter.EntityRef{Type: "Gitlab::Action", ID: "push_code"},
		Resource:  arbiter.EntityRef{Type: "Gitlab::Project", ID: "10"},
		Context:   map[string]any{"admin_mode": false},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(d.Allowed, d.Reasons)
	// Output: true [role-developer]
}

// A request the bundle cannot decide is an error that matches its sentinel.
func ExampleEngine_Authorize_errors() {
	engine, err := arbiter.NewGitLabDefault()
	if err != nil {
		panic(err)
	}
	defer engine.Close()
	_, err = engine.Authorize(arbiter.Request{
		Principal: &arbiter.EntityRef{Type: "Gitlab::User", ID: "alice"},
		Action:    arbiter.EntityRef{Type: "Gitlab::Action", ID: "fly"},
		Resource:  arbiter.EntityRef{Type: "Gitlab::Project", ID: "10"},
		Context:   map[string]any{"admin_mode": false},
	})
	fmt.Println(errors.Is(err, arbiter.ErrInvalidRequest))
	// Output: true
}

// The same question as contract JSON, answered as decision JSON.
func ExampleEngine_AuthorizeJSON() {
	engine, err := arbiter.NewGitLabDefault()
	if err != nil {
		panic(err)
	}
	defer engine.Close()
	out, err := engine.AuthorizeJSON([]byte(`{"principal": {"type": "Gitlab::User", "id": "alice"},
		"action": {"type": "Gitlab::Action", "id": "push_code"},
		"resource": {"type": "Gitlab::Project", "id": "10"},
		"context": {"admin_mode": false}}`))
	if err != nil {
		panic(err)
	}
	fmt.Println(string(out))
	// Output: {"decision":"allow","reasons":["role-developer"],"errors":[]}
}
