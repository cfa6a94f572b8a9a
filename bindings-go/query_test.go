package arbiter

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	_ "github.com/lib/pq"
)

// A list query's SQL and Args go to database/sql as they are, against a real PostgreSQL
// server (`make go-test` starts one and names it in ARBITER_TEST_POSTGRES).
func TestQueryFeedsDatabaseSQL(t *testing.T) {
	url := os.Getenv("ARBITER_TEST_POSTGRES")
	if url == "" {
		t.Fatal("ARBITER_TEST_POSTGRES names the PostgreSQL server (`make go-test` starts one)")
	}
	db, err := sql.Open("postgres", url+" sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // the schema below is the connection's search path
	schema := fmt.Sprintf("arbiter_go_%d", os.Getpid())
	ddl, err := os.ReadFile(filepath.Join(bundleDir, "sql", "postgres.sql"))
	if err != nil {
		t.Fatal(err)
	}
	for _, statement := range []string{
		fmt.Sprintf("DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s; SET search_path TO %s", schema, schema, schema),
		string(ddl),
		`INSERT INTO namespaces (id, visibility_level, traversal_ids) VALUES (1, 0, '{1}');
		 INSERT INTO projects (id, namespace_id, visibility_level, archived) VALUES (1, 1, 20, false), (2, 1, 0, false), (3, 1, 0, false);
		 INSERT INTO project_features (project_id) VALUES (1), (2), (3);
		 INSERT INTO project_authorizations (user_id, project_id, access_level) VALUES (42, 2, 30), (7, 3, 30)`,
	} {
		if _, err := db.Exec(statement); err != nil {
			t.Fatal(err)
		}
	}
	defer db.Exec("DROP SCHEMA " + schema + " CASCADE")

	e := gitlab(t)
	user := Entity{UID: EntityRef{Type: "Gitlab::User", ID: "42"}, Parents: []EntityRef{},
		Attrs: map[string]any{"state": "active", "admin": false, "auditor": false, "external": false, "user_type": "human", "id": "42"}}
	request := QueryRequest{Principal: user.UID, Action: EntityRef{Type: "Gitlab::Action", ID: "read_project"},
		ResourceType: "Gitlab::Project", Context: map[string]any{"admin_mode": false}, Entities: []Entity{user}}
	q, err := e.Query(request, Postgres)
	if err != nil || q.Kind != "where" || !strings.Contains(q.SQL, "$1") {
		t.Fatalf("%+v %v", q, err)
	}
	rows, err := db.Query("SELECT projects.id FROM projects WHERE "+q.SQL+" ORDER BY projects.id", q.Args...)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// The public project and the one user 42 is a Developer of.
	if !reflect.DeepEqual(ids, []int64{1, 2}) {
		t.Fatalf("ids %v for %s %v", ids, q.SQL, q.Args)
	}

	if q, err := e.Query(request, SQLite); err != nil || strings.Contains(q.SQL, "$1") || !strings.Contains(q.SQL, "?") {
		t.Fatalf("%+v %v", q, err)
	}
	if _, err := e.Query(request, "oracle"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("%v", err)
	}
	// A bundle without an SQL mapping cannot write its residual as SQL.
	docs, err := NewEngineFromFiles(map[string]string{
		"schema.cedarschema": "entity User; entity Doc = {owner: User}; action read appliesTo { principal: User, resource: Doc };",
		"p.cedar":            "permit (principal, action, resource) when { resource.owner == principal };",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer docs.Close()
	_, err = docs.Query(QueryRequest{Principal: EntityRef{"User", "u"}, Action: EntityRef{"Action", "read"}, ResourceType: "Doc"}, SQLite)
	if !errors.Is(err, ErrUntranslatable) {
		t.Fatalf("%v", err)
	}
}
