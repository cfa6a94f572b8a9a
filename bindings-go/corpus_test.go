package arbiter

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// The default bundle's decision tests (policies/gitlab/tests), through AuthorizeJSON, with the
// semantics of `arbiter test`.
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
			out, err := e.AuthorizeJSON(c.Request)
			if c.Error != "" {
				var arbiterErr *Error
				if !asError(err, &arbiterErr) || arbiterErr.Kind != c.Error {
					t.Errorf("%s: %s: expected a %s error, got %s %v", file, c.Name, c.Error, out, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: %s: %v", file, c.Name, err)
				continue
			}
			var d struct {
				Decision string   `json:"decision"`
				Reasons  []string `json:"reasons"`
				Errors   []struct {
					Kind   string `json:"kind"`
					Policy string `json:"policy"`
				} `json:"errors"`
			}
			if err := json.Unmarshal(out, &d); err != nil {
				t.Fatal(err)
			}
			ok := d.Decision == c.Decision
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
				t.Errorf("%s: %s: got %s", file, c.Name, out)
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

func asError(err error, target **Error) bool {
	e, ok := err.(*Error)
	if ok {
		*target = e
	}
	return ok
}

var conformanceRoot = filepath.Join("..", "..", "shared", "conformance", "cedar-integration-tests")

func unpack(t *testing.T, archive, dir string) {
	f, err := os.Open(archive)
	if err != nil {
		t.Fatalf("the Cedar corpus must be present: %v", err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	r := tar.NewReader(gz)
	for {
		h, err := r.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, h.Name)
		if rel, err := filepath.Rel(dir, path); err != nil || strings.HasPrefix(rel, "..") {
			t.Fatalf("unsafe path in archive: %s", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			os.MkdirAll(path, 0o755)
		case tar.TypeReg:
			os.MkdirAll(filepath.Dir(path), 0o755)
			out, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(out, r); err != nil {
				t.Fatal(err)
			}
			out.Close()
		}
	}
}

// Cedar's integration corpus (hand-written tests and the generated corpus, 62,546 requests)
// through AuthorizeJSON: decision, reason set and error-policy set all agree.
func TestCedarConformanceCorpus(t *testing.T) {
	root := conformanceRoot
	if dir := os.Getenv("ARBITER_CONFORMANCE_DIR"); dir != "" {
		root = dir
	}
	unpacked := t.TempDir()
	unpack(t, filepath.Join(root, "corpus-tests.tar.gz"), unpacked)
	type job struct{ file, base string }
	var jobs []job
	hand, _ := filepath.Glob(filepath.Join(root, "tests", "*", "*.json"))
	for _, f := range hand {
		jobs = append(jobs, job{f, root})
	}
	corpus, _ := filepath.Glob(filepath.Join(unpacked, "corpus-tests", "*.json"))
	for _, f := range corpus {
		if !strings.HasSuffix(f, ".entities.json") {
			jobs = append(jobs, job{f, unpacked})
		}
	}
	read := func(base, rel string) string {
		data, err := os.ReadFile(filepath.Join(base, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	requests, disagreements := 0, 0
	for _, j := range jobs {
		var test struct {
			Policies, Entities, Schema string
			ShouldValidate             bool `json:"shouldValidate"`
			Requests                   []struct {
				Description                          string
				Principal, Action, Resource, Context json.RawMessage
				ValidateRequest                      *bool `json:"validateRequest"`
				Decision                             string
				Reason, Errors                       []string
			}
		}
		if err := json.Unmarshal([]byte(read(j.file, "")), &test); err != nil {
			t.Fatalf("%s: %v", j.file, err)
		}
		engines := map[bool]*Engine{}
		for _, r := range test.Requests {
			validate := r.ValidateRequest == nil || *r.ValidateRequest
			e, ok := engines[validate]
			if !ok {
				manifest, _ := json.Marshal(map[string]bool{"validate_policies": false, "validate_requests": validate})
				var err error
				e, err = NewEngineFromFiles(map[string]string{
					"policies.cedar":     read(j.base, test.Policies),
					"schema.cedarschema": read(j.base, test.Schema),
					"entities.json":      read(j.base, test.Entities),
					"manifest.json":      string(manifest),
				})
				if err != nil {
					t.Fatalf("%s: %v", j.file, err)
				}
				engines[validate] = e
			}
			request, _ := json.Marshal(map[string]json.RawMessage{
				"principal": r.Principal, "action": r.Action, "resource": r.Resource, "context": r.Context,
			})
			requests++
			out, err := e.AuthorizeJSON(request)
			var d struct {
				Decision string
				Reasons  []string
				Errors   []struct{ Policy string }
			}
			if err == nil {
				err = json.Unmarshal(out, &d)
			}
			var errPolicies []string
			for _, e := range d.Errors {
				errPolicies = append(errPolicies, e.Policy)
			}
			if err != nil || d.Decision != r.Decision || !sameSet(d.Reasons, r.Reason) || !sameSet(errPolicies, r.Errors) {
				disagreements++
				if disagreements <= 10 {
					t.Errorf("%s: %s: expected %s %v %v, got %s %v", j.file, r.Description, r.Decision, r.Reason, r.Errors, out, err)
				}
			}
		}
		for _, e := range engines {
			e.Close()
		}
	}
	t.Logf("%d test files, %d requests, %d disagreements", len(jobs), requests, disagreements)
	if requests != 62546 {
		t.Fatalf("checked %d requests, expected 62546", requests)
	}
}
