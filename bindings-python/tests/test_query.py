"""List queries from Python: the SQL and parameters run as they are in SQLite (the standard
library's sqlite3), selecting exactly the projects the checks allow."""

import sqlite3
from pathlib import Path

import pytest

import arbiter

SQL = Path(__file__).resolve().parents[2] / "policies" / "gitlab" / "sql"
USER = {"uid": {"type": "Gitlab::User", "id": "42"}, "parents": [],
        "attrs": {"state": "active", "admin": False, "auditor": False, "external": False, "user_type": "human", "id": "42"}}


def test_a_query_runs_in_sqlite_and_selects_what_the_checks_allow():
    engine = arbiter.Engine.gitlab_default()
    db = sqlite3.connect(":memory:")
    db.executescript((SQL / "sqlite.sql").read_text())
    db.executescript("""
        INSERT INTO namespaces (id, visibility_level) VALUES (1, 0);
        INSERT INTO projects (id, namespace_id, visibility_level, archived) VALUES (1, 1, 20, 0), (2, 1, 0, 0), (3, 1, 0, 1), (4, 1, 10, 0);
        INSERT INTO project_features (project_id, repository_access_level) VALUES (1, 20), (2, 20), (3, 20), (4, 0);
        INSERT INTO project_authorizations (user_id, project_id, access_level) VALUES (42, 2, 30), (42, 3, 30), (7, 4, 50);
    """)
    ids = {}
    for action in ("read_project", "download_code", "push_code"):
        query = engine.query(principal=USER["uid"], action={"type": "Gitlab::Action", "id": action},
                             resource_type="Gitlab::Project", context={"admin_mode": False}, entities=[USER],
                             dialect="sqlite")
        assert query["kind"] == "where" and "?" in query["sql"], query
        ids[action] = {row[0] for row in db.execute(f"SELECT projects.id FROM projects WHERE {query['sql']}", query["params"])}
    # Public 1 and internal 4 to everyone signed in; 2 and 3 as a Developer; 4's repository is
    # disabled; 3 is archived, so nothing is pushed there.
    assert ids == {"read_project": {1, 2, 3, 4}, "download_code": {1, 2, 3}, "push_code": {2}}


def test_query_errors_are_arbiter_errors():
    engine = arbiter.Engine.gitlab_default()
    request = {"principal": {"type": "Gitlab::User", "id": "42"}, "action": {"type": "Gitlab::Action", "id": "read_project"},
               "resource_type": "Gitlab::Project", "context": {"admin_mode": False}}
    with pytest.raises(arbiter.InvalidArgumentError):
        engine.query(**request, dialect="oracle")
    with pytest.raises(arbiter.InvalidRequestError):
        engine.query(**{**request, "resource_type": "Gitlab::Robot"})
    docs = arbiter.Engine.from_files({
        "schema.cedarschema": "entity User; entity Doc = {owner: User}; action read appliesTo { principal: User, resource: Doc };",
        "p.cedar": "permit (principal, action, resource) when { resource.owner == principal };",
    })
    with pytest.raises(arbiter.UntranslatableError) as raised:
        docs.query(principal={"type": "User", "id": "u"}, action={"type": "Action", "id": "read"}, resource_type="Doc")
    assert raised.value.code == 204 and "sql/mapping.json" in str(raised.value)
    assert engine.query_json('{"principal": {"type": "Gitlab::User", "id": "42"}, "action": {"type": "Gitlab::Action", '
                             '"id": "read_project"}, "resource": {"type": "Gitlab::Project"}, "context": {"admin_mode": true}}',
                             "postgres").startswith('{"kind":')
