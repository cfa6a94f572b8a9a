#!/usr/bin/env bash
# Builds a Go program outside this repository's layout with the linking flags the package
# documents (CGO_CFLAGS / CGO_LDFLAGS pointing at a copy of arbiter.h and libarbiter.a), runs
# it, and checks the binary needs no Arbiter shared library.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/target/go-link"
rm -rf "$work" && mkdir -p "$work/include" "$work/lib" "$work/pkg" "$work/app"
cp "$root/ffi-c/include/arbiter.h" "$work/include/"
cp "$root/target/release/libarbiter.a" "$work/lib/"
# The package alone, away from ../target and ../ffi-c, so only the documented flags can help.
cp "$root"/bindings-go/go.mod "$root"/bindings-go/arbiter.go "$root"/bindings-go/request.go "$root"/bindings-go/metrics.go "$root"/bindings-go/explain.go "$root"/bindings-go/shadow.go "$work/pkg/"
cat > "$work/app/go.mod" <<MOD
module example.com/app

go 1.22

require github.com/arbiter-authz/arbiter/bindings-go v0.0.0
replace github.com/arbiter-authz/arbiter/bindings-go => ../pkg
MOD
cat > "$work/app/main.go" <<'GO'
package main

import (
	"fmt"
	"os"

	arbiter "github.com/arbiter-authz/arbiter/bindings-go"
)

func main() {
	e, err := arbiter.NewGitLabDefault()
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	defer e.Close()
	d, err := e.Authorize(arbiter.Request{
		Principal: &arbiter.EntityRef{Type: "Gitlab::User", ID: "alice"},
		Action:    arbiter.EntityRef{Type: "Gitlab::Action", ID: "push_code"},
		Resource:  arbiter.EntityRef{Type: "Gitlab::Project", ID: "10"},
		Context:   map[string]any{"admin_mode": false},
	})
	fmt.Println(d.Allowed, d.Reasons, err)
}
GO
cd "$work/app"
CGO_CFLAGS="-I$work/include" CGO_LDFLAGS="-L$work/lib" go build -o app .
out="$(./app)"
[ "$out" = "true [role-developer] <nil>" ] || { echo "unexpected output: $out" >&2; exit 1; }
if ldd ./app | grep -q libarbiter; then
  echo "the binary links libarbiter dynamically" >&2
  exit 1
fi
echo "go link test: the documented flags build a self-contained binary ($out)"
