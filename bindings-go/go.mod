module github.com/arbiter-authz/arbiter/bindings-go

go 1.22
