// Package bench compares Arbiter through cgo with Go peers on the same policies and inputs:
// cedar-go, OPA's rego package, and golang-jwt. Run by `make bench` (go test -bench).
package bench
