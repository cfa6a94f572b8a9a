package arbiter

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
)

// The shared spec (tests/spec/errors.json) and the default bundle's decision tests, through the
// package's own code: typed Authorize and AuthorizeJSON. (Cedar's corpus runs once, in core.)

type specCase struct {
	Name        string            `json:"name"`
	Request     json.RawMessage   `json:"request"`
	RequestText string            `json:"request_text"`
	Files       map[string]string `json:"files"`
	Kind        string            `json:"kind"`
	Code        uint32            `json:"code"`
}

func readSpec(t *testing.T) (requests, bundles []specCase) {
	data, err := os.ReadFile(filepath.Join("..", "tests", "spec", "errors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Requests []specCase `json:"requests"`
		Bundles  []specCase `json:"bundles"`
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	return spec.Requests, spec.Bundles
}

func checkSpecError(t *testing.T, c specCase, how string, err error) {
	t.Helper()
	var got *Error
	if !errors.As(err, &got) || got.Kind != c.Kind || got.Code != c.Code {
		t.Errorf("%s (%s): want %s %d, got %v", c.Name, how, c.Kind, c.Code, err)
	}
}

func TestErrorSpec(t *testing.T) {
	e := gitlab(t)
	requests, bundles := readSpec(t)
	for _, c := range requests {
		text := []byte(c.RequestText)
		if c.Request != nil {
			text = c.Request
		}
		_, err := e.AuthorizeJSON(text)
		checkSpecError(t, c, "AuthorizeJSON", err)
		if c.Request == nil {
			continue
		}
		var r Request
		if err := json.Unmarshal(c.Request, &r); err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		_, err = e.Authorize(r)
		checkSpecError(t, c, "Authorize", err)
	}
	for _, c := range bundles {
		_, err := NewEngineFromFiles(c.Files)
		checkSpecError(t, c, "NewEngineFromFiles", err)
	}
}

// The default bundle's decision tests (policies/gitlab/tests), through typed Authorize and
// through AuthorizeJSON, with the semantics of `arbiter test`.
func TestDefaultBundleDecisionTests(t *testing.T) {
	e := gitlab(t)
	files, _ := filepath.Glob(filepath.Join(bundleDir, "tests", "*.json"))
	cases := 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var suite struct {
			Cases []struct {
				Name     string          `json:"name"`
				Request  json.RawMessage `json:"request"`
				Decision string          `json:"decision"`
				Reasons  *[]string       `json:"reasons"`
				Errors   *[]struct {
					Kind   string `json:"kind"`
					Policy string `json:"policy"`
				} `json:"errors"`
				Error string `json:"error"`
			} `json:"cases"`
		}
		if err := json.Unmarshal(data, &suite); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, c := range suite.Cases {
			cases++
			var typed Request
			if err := json.Unmarshal(c.Request, &typed); err != nil {
				t.Fatalf("%s: %s: %v", file, c.Name, err)
			}
			fromTyped, typedErr := e.Authorize(typed)
			out, jsonErr := e.AuthorizeJSON(c.Request)
			if c.Error != "" {
				for _, err := range []error{typedErr, jsonErr} {
					var arbiterErr *Error
					if !errors.As(err, &arbiterErr) || arbiterErr.Kind != c.Error {
						t.Errorf("%s: %s: expected a %s error, got %v", file, c.Name, c.Error, err)
					}
				}
				continue
			}
			if typedErr != nil || jsonErr != nil {
				t.Errorf("%s: %s: %v %v", file, c.Name, typedErr, jsonErr)
				continue
			}
			var fromJSON struct {
				Decision string          `json:"decision"`
				Reasons  []string        `json:"reasons"`
				Errors   []DecisionError `json:"errors"`
			}
			if err := json.Unmarshal(out, &fromJSON); err != nil {
				t.Fatal(err)
			}
			for _, d := range []Decision{fromTyped, {Allowed: fromJSON.Decision == "allow", Reasons: fromJSON.Reasons, Errors: fromJSON.Errors}} {
				ok := d.Allowed == (c.Decision == "allow")
				if c.Reasons != nil {
					ok = ok && sameSet(d.Reasons, *c.Reasons)
				}
				if c.Errors != nil {
					var got, want []string
					for _, e := range d.Errors {
						got = append(got, e.Kind+"/"+e.Policy)
					}
					for _, e := range *c.Errors {
						want = append(want, e.Kind+"/"+e.Policy)
					}
					ok = ok && sameSet(got, want)
				}
				if !ok {
					t.Errorf("%s: %s: got %+v", file, c.Name, d)
				}
			}
		}
	}
	if cases < 200 {
		t.Fatalf("only %d cases", cases)
	}
	t.Logf("%d decision tests passed", cases)
}

func sameSet(a, b []string) bool {
	x, y := append([]string(nil), a...), append([]string(nil), b...)
	sort.Strings(x)
	sort.Strings(y)
	if len(x) == 0 && len(y) == 0 {
		return true
	}
	return reflect.DeepEqual(x, y)
}
