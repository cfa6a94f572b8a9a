# frozen_string_literal: true

# A real Rails application (Debian's railties, activerecord, sqlite3 or pg, declarative_policy)
# with a slice of GitLab: users, groups, projects, their features and project authorizations;
# a declarative_policy ProjectPolicy equivalent to the default bundle for read_project,
# download_code and push_code; an Ability class as GitLab routes checks through, with Arbiter's
# bridge prepended; and one route that answers a check. Its database is SQLite in a temporary
# file, or the PostgreSQL server ARBITER_TEST_POSTGRES names (tests/postgres/with-postgres.sh).

require "fileutils"
require "logger"
require "stringio"
require "tmpdir"
require "rails"
require "active_record/railtie"
require "action_controller/railtie"
require "declarative_policy"
require "arbiter/rails"

module GitlabSlice
  REPO = File.expand_path("../../..", __dir__)
  # Removed by whoever loads the app, when done; ARBITER_RAILS_TMP names it for a server the
  # tests start.
  TMP = ENV["ARBITER_RAILS_TMP"]&.tap { |dir| FileUtils.mkdir_p(dir) } || Dir.mktmpdir("arbiter-rails")
  # The bundle the app serves: the default one without its demo entities and tests, in a
  # directory the tests change to make the app reload.
  BUNDLE = File.join(TMP, "bundle")
  LOG = StringIO.new
  ABILITIES = %i[read_project download_code push_code].freeze
  POSTGRES = ENV["ARBITER_TEST_POSTGRES"]

  FileUtils.cp_r(File.join(REPO, "policies", "gitlab"), BUNDLE)
  FileUtils.rm_rf(File.join(BUNDLE, "tests"))
  File.write(File.join(BUNDLE, "entities.json"), "[]")

  ENV["DATABASE_URL"] =
    if POSTGRES
      parts = POSTGRES.split.to_h { |pair| pair.split("=", 2) }
      "postgresql://#{parts['user']}@#{parts['host']}:#{parts['port']}/#{parts['dbname']}"
    else
      "sqlite3:#{File.join(TMP, 'app.sqlite3')}"
    end

  class Application < ::Rails::Application
    config.root = TMP
    config.eager_load = false
    config.logger = ActiveSupport::Logger.new(LOG)
    config.secret_key_base = "0" * 64
    config.active_support.deprecation = :silence
    config.hosts.clear
    config.arbiter.bundle_path = BUNDLE
    config.arbiter.decision_log = File.join(TMP, "decisions.jsonl")
    config.arbiter.mode = :shadow
    config.arbiter.record_checks = File.join(TMP, "checks.jsonl")
    config.arbiter.context = ->(_user, _ability, _subject) { { admin_mode: Current.admin_mode == true } }
  end
end

# Per request: admin mode, each user's access level per project (GitLab caches
# max_member_access_for_project the same way, so both policies read one query per project), and
# declarative_policy's cache (GitLab keeps it in its request store).
class Current < ActiveSupport::CurrentAttributes
  attribute :admin_mode, :access_levels, :policy_cache
end

class ApplicationRecord < ActiveRecord::Base
  self.abstract_class = true
end

class User < ApplicationRecord
  def access_level_for(project)
    Current.access_levels ||= {}
    Current.access_levels[[id, project.id]] ||=
      ProjectAuthorization.where(user_id: id, project_id: project.id).pick(:access_level) || 0
  end
end

class Namespace < ApplicationRecord
  self.inheritance_column = nil # GitLab's `type` column, not Rails STI
end

class ProjectFeature < ApplicationRecord
  self.primary_key = "project_id"
end

class ProjectAuthorization < ApplicationRecord
  self.primary_key = nil # (user_id, project_id)
end

class Project < ApplicationRecord
  belongs_to :namespace
  has_one :project_feature
end

# GitLab's project policy for three abilities, written as GitLab writes them: the same rules as
# the default bundle's visibility, role, project state, account and instance-role policies.
class ProjectPolicy < DeclarativePolicy::Base
  condition(:inactive, scope: :user) { @user && @user.state != "active" }
  condition(:external_or_bot, scope: :user) { @user && (@user.external || @user.user_type != "human") }
  condition(:admin_mode, scope: :user) { @user&.admin && Current.admin_mode }
  condition(:auditor, scope: :user) { @user&.auditor }
  condition(:public_project, scope: :subject) { @subject.visibility_level == 20 }
  condition(:internal_project, scope: :subject) { @subject.visibility_level == 10 }
  condition(:archived, scope: :subject) { @subject.archived }
  condition(:repository_disabled, scope: :subject) { @subject.project_feature.repository_access_level.zero? }
  condition(:repository_private, scope: :subject) { @subject.project_feature.repository_access_level == 10 }
  condition(:guest) { access_level >= 10 }
  condition(:reporter) { access_level >= 20 }
  condition(:developer) { access_level >= 30 }

  rule { public_project }.enable :read_project, :download_code
  rule { internal_project & ~anonymous & ~external_or_bot }.enable :read_project, :download_code
  rule { guest }.enable :read_project
  rule { reporter }.enable :download_code
  rule { developer }.enable :push_code
  rule { auditor }.enable :read_project, :download_code
  rule { admin_mode }.enable :read_project, :download_code, :push_code

  rule { anonymous & ~public_project }.prevent_all
  rule { anonymous | auditor }.prevent :push_code
  rule { inactive }.prevent_all
  rule { archived }.prevent :push_code
  rule { repository_disabled }.prevent :download_code, :push_code
  rule { repository_private & ~reporter & ~admin_mode & ~auditor }.prevent :download_code, :push_code

  def access_level
    @user ? @user.access_level_for(@subject) : 0
  end
end

# Where the app's permission checks go, as GitLab's Ability.
class Ability
  def self.allowed?(user, ability, subject = :global, opts = {})
    DeclarativePolicy.policy_for(user, subject, cache: opts[:cache] || (Current.policy_cache ||= {})).allowed?(ability)
  end
end

Ability.singleton_class.prepend(Arbiter::Rails::Bridge)

class ChecksController < ActionController::API
  def show
    user = params[:user].present? ? User.find(params[:user]) : nil
    render plain: Ability.allowed?(user, params[:ability].to_sym, Project.find(params[:project])).to_s
  end
end

GitlabSlice::Application.initialize!
Rails.application.routes.draw { get "/check" => "checks#show" }

module GitlabSlice
  VISIBILITY = { 0 => "private", 10 => "internal", 20 => "public" }.freeze
  FEATURE = { 0 => "disabled", 10 => "private", 20 => "enabled" }.freeze
  FEATURES = %w[repository issues merge_requests builds container_registry package_registry].freeze

  # The entities, written once for the app's models.
  Arbiter::Rails.entities.define(NilClass, type: "Gitlab::User") do
    { uid: { type: "Gitlab::User", id: "anonymous" },
      attrs: { state: "active", admin: false, auditor: false, external: false, user_type: "human" }, parents: [] }
  end
  Arbiter::Rails.entities.define(User, type: "Gitlab::User") do |user|
    { uid: { type: "Gitlab::User", id: user.id.to_s },
      attrs: { state: user.state, admin: user.admin, auditor: user.auditor, external: user.external,
               user_type: user.user_type, id: user.id.to_s }, parents: [] }
  end
  Arbiter::Rails.entities.define(Project, type: "Gitlab::Project") do |project, user|
    level = user ? user.access_level_for(project) : 0
    feature = project.project_feature
    { uid: { type: "Gitlab::Project", id: project.id.to_s },
      attrs: { visibility: VISIBILITY.fetch(project.visibility_level), archived: project.archived,
               features: FEATURES.to_h { |f| [f, FEATURE.fetch(feature.public_send("#{f}_access_level"))] },
               job_token_allowlist: [] },
      parents: [{ type: "Gitlab::Group", id: project.namespace_id.to_s }],
      tags: level.positive? ? { user.id.to_s => { access_level: level } } : {} }
  end

  # The bundle's tables (its sql/*.sql, GitLab's columns) and a users table; generated data.
  def self.seed(users: 40, projects: 300, random: Random.new(7))
    connection = ActiveRecord::Base.connection
    ddl = File.read(File.join(BUNDLE, "sql", POSTGRES ? "postgres.sql" : "sqlite.sql"))
    if POSTGRES
      connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
      connection.execute(ddl)
    else
      connection.raw_connection.execute_batch(ddl)
    end
    connection.create_table(:users) do |t|
      t.string :state, null: false
      t.boolean :admin, :auditor, :external, null: false
      t.string :user_type, null: false
    end
    User.insert_all(Array.new(users) do |i|
      { id: i + 1, state: i % 13 == 5 ? %w[blocked banned deactivated].sample(random: random) : "active",
        admin: i % 11 == 3, auditor: i % 17 == 4, external: i % 7 == 6,
        user_type: i % 19 == 9 ? "project_bot" : "human" }
    end)
    Namespace.insert_all(Array.new(20) do |i|
      { id: i + 1, parent_id: i >= 5 ? (i % 5) + 1 : nil, type: "Group",
        visibility_level: [0, 10, 20].sample(random: random),
        traversal_ids: POSTGRES ? "{#{[i >= 5 ? (i % 5) + 1 : nil, i + 1].compact.join(',')}}" : "" }
    end)
    Project.insert_all(Array.new(projects) do |i|
      { id: i + 1, namespace_id: random.rand(1..20), visibility_level: [0, 0, 10, 20].sample(random: random),
        archived: random.rand < 0.1 }
    end)
    ProjectFeature.insert_all(Array.new(projects) do |i|
      { project_id: i + 1, **FEATURES.to_h { |f| ["#{f}_access_level", [20, 20, 20, 10, 0].sample(random: random)] } }
    end)
    authorizations = (1..users).flat_map do |user|
      (1..projects).to_a.sample(projects / 8, random: random).map do |project|
        { user_id: user, project_id: project, access_level: [10, 15, 20, 30, 40, 50].sample(random: random) }
      end
    end
    insert(:project_authorizations, authorizations)
  end

  # Rows inserted in one statement (insert_all wants a primary key project_authorizations has
  # only as a pair).
  def self.insert(table, rows)
    connection = ActiveRecord::Base.connection
    columns = rows.first.keys
    values = rows.map { |row| "(#{columns.map { |c| connection.quote(row[c]) }.join(', ')})" }
    connection.execute("INSERT INTO #{table} (#{columns.join(', ')}) VALUES #{values.join(', ')}")
  end
end
