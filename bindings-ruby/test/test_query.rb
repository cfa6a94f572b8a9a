# frozen_string_literal: true

require_relative "test_helper"
require "sqlite3"

# List queries from Ruby: the SQL and parameters run as they are in SQLite (Debian's
# ruby-sqlite3), selecting exactly the projects the checks allow.
class TestQuery < Minitest::Test
  include Helpers

  SQL_DIR = File.join(BUNDLE, "sql")
  USER = { uid: { type: "Gitlab::User", id: "42" }, parents: [],
           attrs: { state: "active", admin: false, auditor: false, external: false, user_type: "human", id: "42" } }.freeze

  def test_a_query_runs_in_sqlite_and_selects_what_the_checks_allow
    db = SQLite3::Database.new(":memory:")
    db.execute_batch(File.read(File.join(SQL_DIR, "sqlite.sql")))
    db.execute_batch(<<~SQL)
      INSERT INTO namespaces (id, visibility_level) VALUES (1, 0);
      INSERT INTO projects (id, namespace_id, visibility_level, archived) VALUES (1, 1, 20, 0), (2, 1, 0, 0), (3, 1, 0, 1), (4, 1, 10, 0);
      INSERT INTO project_features (project_id, repository_access_level) VALUES (1, 20), (2, 20), (3, 20), (4, 0);
      INSERT INTO project_authorizations (user_id, project_id, access_level) VALUES (42, 2, 30), (42, 3, 30), (7, 4, 50);
    SQL
    ids = %w[read_project download_code push_code].to_h do |action|
      query = engine.query(principal: USER[:uid], action: { type: "Gitlab::Action", id: action },
                           resource_type: "Gitlab::Project", context: { admin_mode: false }, entities: [USER],
                           dialect: :sqlite)
      assert_equal :where, query.kind
      [action, db.execute("SELECT projects.id FROM projects WHERE #{query.sql}", query.params).flatten.sort]
    end
    # Public 1 and internal 4 to everyone signed in; 2 and 3 as a Developer; 4's repository is
    # disabled; 3 is archived, so nothing is pushed there.
    assert_equal({ "read_project" => [1, 2, 3, 4], "download_code" => [1, 2, 3], "push_code" => [2] }, ids)
  end

  def test_query_errors_are_arbiter_errors
    request = { principal: { type: "Gitlab::User", id: "42" }, action: { type: "Gitlab::Action", id: "read_project" },
                resource_type: "Gitlab::Project", context: { admin_mode: false } }
    assert_raises(Arbiter::InvalidArgumentError) { engine.query(**request, dialect: :oracle) }
    assert_raises(Arbiter::InvalidRequestError) { engine.query(**request, resource_type: "Gitlab::Robot") }
    docs = Arbiter::Engine.from_files(
      "schema.cedarschema" => "entity User; entity Doc = {owner: User}; action read appliesTo { principal: User, resource: Doc };",
      "p.cedar" => "permit (principal, action, resource) when { resource.owner == principal };",
    )
    error = assert_raises(Arbiter::UntranslatableError) do
      docs.query(principal: { type: "User", id: "u" }, action: { type: "Action", id: "read" }, resource_type: "Doc")
    end
    assert_equal [204, "untranslatable"], [error.code, error.kind]
    assert_equal :none, engine.query(**request).kind # a user the bundle does not know
    postgres = engine.query(**request, entities: [USER])
    assert_includes postgres.sql, "$1"
    assert postgres.frozen?
  end
end
