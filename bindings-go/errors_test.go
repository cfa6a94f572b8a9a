package arbiter

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"
)

// camel is a snake_case kind in CamelCase: policy_parse is PolicyParse.
func camel(kind string) string {
	var b strings.Builder
	for _, word := range strings.Split(kind, "_") {
		b.WriteString(strings.ToUpper(word[:1]) + word[1:])
	}
	return b.String()
}

// Every kind of core's error table (walked through the C library) has one sentinel, named
// after it (ErrPolicyParse for policy_parse) and bound to its C result code; no sentinel is
// left over. A kind added to core and missing here fails.
func TestEverySentinelIsNamedAfterItsKindInTheErrorTable(t *testing.T) {
	table := map[string]uint32{}
	for code := uint32(0); code < 10000; code++ {
		if kind := resultKind(code); kind != "" {
			table[kind] = code
		}
	}
	if len(table) < 17 {
		t.Fatalf("the C library names only %d kinds", len(table))
	}
	file, err := parser.ParseFile(token.NewFileSet(), "arbiter.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	sentinels := map[string]string{} // kind -> Go name
	ast.Inspect(file, func(n ast.Node) bool {
		spec, ok := n.(*ast.ValueSpec)
		if !ok || len(spec.Names) != 1 || len(spec.Values) != 1 {
			return true
		}
		lit, ok := spec.Values[0].(*ast.UnaryExpr)
		if !ok {
			return true
		}
		composite, ok := lit.X.(*ast.CompositeLit)
		if !ok || composite.Type.(*ast.Ident).Name != "Error" {
			return true
		}
		var kind, cName string
		for _, elt := range composite.Elts {
			kv := elt.(*ast.KeyValueExpr)
			switch kv.Key.(*ast.Ident).Name {
			case "Kind":
				kind, _ = strconv.Unquote(kv.Value.(*ast.BasicLit).Value)
			case "Code":
				cName = kv.Value.(*ast.SelectorExpr).Sel.Name
			}
		}
		name := spec.Names[0].Name
		if name != "Err"+camel(kind) || cName != "ARBITER_RESULT_"+strings.ToUpper(kind) {
			t.Errorf("sentinel %s (%s) is for kind %q", name, cName, kind)
		}
		sentinels[kind] = name
		return true
	})
	for kind := range table {
		if _, ok := sentinels[kind]; !ok {
			t.Errorf("kind %q has no sentinel Err%s", kind, camel(kind))
		}
	}
	for kind, name := range sentinels {
		if _, ok := table[kind]; !ok {
			t.Errorf("sentinel %s names kind %q, which the error table does not have", name, kind)
		}
	}
	for _, e := range []*Error{ErrPolicyParse, ErrInternal, ErrIo, ErrInvalidEntities} {
		if table[e.Kind] != e.Code {
			t.Errorf("%s: code %d, the table says %d", e.Kind, e.Code, table[e.Kind])
		}
	}
}
