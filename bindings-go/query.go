package arbiter

/*
#include <stdlib.h>
#include "arbiter.h"
*/
import "C"

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unsafe"
)

// Dialect names the SQL a list query is written in.
type Dialect string

// The dialects a list query is written in.
const (
	// Postgres writes placeholders as $1, $2, ... and hierarchy through traversal_ids.
	Postgres Dialect = "postgres"
	// SQLite writes placeholders as ? and hierarchy as a recursive walk of parent ids.
	SQLite Dialect = "sqlite"
)

// QueryRequest asks which resources of ResourceType the principal may act on: a check request
// whose resource is known only by its type.
type QueryRequest struct {
	Principal    EntityRef
	Action       EntityRef
	ResourceType string
	Context      map[string]any
	Entities     []Entity
}

// Query answers a list query: Kind is "all", "none" or "where"; SQL is a WHERE clause for
// SELECT <table>.id FROM <table> (the resource type's table under its own name), and Args its
// parameters in placeholder order (int64, string or bool), ready for database/sql:
//
//	rows, err := db.Query("SELECT projects.id FROM projects WHERE "+q.SQL, q.Args...)
type Query struct {
	Kind string
	SQL  string
	Args []any
}

// Query answers a list query in dialect. A residual the bundle's SQL mapping cannot express
// exactly is ErrUntranslatable, never a wider or narrower filter.
func (e *Engine) Query(q QueryRequest, dialect Dialect) (Query, error) {
	type resourceType struct {
		Type string `json:"type"`
	}
	request, err := json.Marshal(struct {
		Principal EntityRef      `json:"principal"`
		Action    EntityRef      `json:"action"`
		Resource  resourceType   `json:"resource"`
		Context   map[string]any `json:"context,omitempty"`
		Entities  []Entity       `json:"entities,omitempty"`
	}{q.Principal, q.Action, resourceType{q.ResourceType}, q.Context, q.Entities})
	if err != nil {
		return Query{}, ErrMalformedRequest.with(err.Error())
	}
	out, err := e.QueryJSON(request, dialect)
	if err != nil {
		return Query{}, err
	}
	var wire struct {
		Kind   string `json:"kind"`
		SQL    string `json:"sql"`
		Params []any  `json:"params"`
	}
	// Numbers stay exact (json.Number), then become int64.
	decoder := json.NewDecoder(bytes.NewReader(out))
	decoder.UseNumber()
	if err := decoder.Decode(&wire); err != nil {
		return Query{}, err
	}
	args := make([]any, len(wire.Params))
	for i, v := range wire.Params {
		switch v := v.(type) {
		case json.Number:
			n, err := v.Int64()
			if err != nil {
				return Query{}, fmt.Errorf("arbiter: parameter %d is not an integer: %v", i+1, v)
			}
			args[i] = n
		case string, bool:
			args[i] = v
		default:
			return Query{}, fmt.Errorf("arbiter: parameter %d has an unexpected type %T", i+1, v)
		}
	}
	return Query{Kind: wire.Kind, SQL: wire.SQL, Args: args}, nil
}

// QueryJSON answers a list query given as request JSON whose resource names a type and no id,
// as {"kind", "sql", "params"} JSON (what `arbiter query` prints).
func (e *Engine) QueryJSON(request []byte, dialect Dialect) ([]byte, error) {
	name := C.CString(string(dialect))
	defer C.free(unsafe.Pointer(name))
	return e.jsonCall(request, func(ptr *C.arbiter_engine, in *C.char, n C.size_t, out **C.char, err **C.arbiter_error) C.uint32_t {
		return C.arbiter_engine_query_json(ptr, in, n, name, out, err)
	})
}
