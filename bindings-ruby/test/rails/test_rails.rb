# frozen_string_literal: true

# Arbiter in a real Rails application (app.rb): the railtie, the declarative_policy bridge in
# each mode, relations from list queries, reloads under a preforking server, and the
# recorded-traffic check. Run by `make rails-test` against SQLite, then PostgreSQL.

require "minitest/autorun"
require "net/http"
require "rack/mock"
require "rake"
require "socket"
require_relative "app"

GitlabSlice.seed(users: 24, projects: 100)
Minitest.after_run { FileUtils.rm_rf(GitlabSlice::TMP) }

class TestRails < Minitest::Test
  Bridge = Arbiter::Rails::Bridge
  USERS = [nil, *User.order(:id)].freeze
  PROJECTS = Project.includes(:project_feature).order(:id).to_a.freeze

  def setup
    @settings = Arbiter::Rails.settings.dup
    @events = Hash.new { |h, k| h[k] = [] }
    @subscriptions = %w[mismatch fallback error authorize reload].map do |name|
      ActiveSupport::Notifications.subscribe("#{name}.arbiter") { |*, payload| @events[name] << payload }
    end
  end

  def teardown
    @subscriptions.each { |s| ActiveSupport::Notifications.unsubscribe(s) }
    Arbiter::Rails.instance_variable_set(:@settings, @settings)
    extra = File.join(GitlabSlice::BUNDLE, "extra.cedar")
    next_reload if File.exist?(extra) && File.delete(extra)
  end

  # Every user (and the anonymous one) on every project, for each ability, in and out of
  # admin mode: what the block answers for each, in order.
  def each_check(users: USERS, projects: PROJECTS, admin_modes: [false, true])
    admin_modes.flat_map do |admin_mode|
      users.flat_map do |user|
        ::Rails.application.executor.wrap do
          Current.admin_mode = admin_mode
          projects.flat_map { |project| GitlabSlice::ABILITIES.map { |ability| yield(user, ability, project) } }
        end
      end
    end
  end

  def host_answers(**scope)
    each_check(**scope) { |user, ability, project| Bridge.host_only { Ability.allowed?(user, ability, project) } }
  end

  def bridge_counts
    Arbiter::Rails.runtime.engine.metrics["bridge_checks"].transform_values { |c| c.reject { |_, n| n.zero? } }
  end

  def with_mode(mode)
    Arbiter::Rails.settings.mode = mode
    yield
  end

  # Makes the app reload at its next request, as SIGHUP does.
  def next_reload
    Arbiter::Rails.runtime.request_reload
    ::Rails.application.executor.wrap {} # a request boundary
  end

  def add_policy(text)
    File.write(File.join(GitlabSlice::BUNDLE, "extra.cedar"), text)
    next_reload
    assert_equal :ok, @events["reload"].last[:result]
  end

  def test_shadow_returns_declarative_policys_answers_and_agrees_on_equivalent_rules
    expected = host_answers
    before = bridge_counts
    got = with_mode(:shadow) { each_check { |user, ability, project| Ability.allowed?(user, ability, project) } }
    assert_equal expected, got
    assert_includes expected, true
    assert_includes expected, false
    assert_empty @events["mismatch"]
    assert_empty @events["error"]
    agreed = GitlabSlice::ABILITIES.sum { |a| bridge_counts.dig(a.to_s, "agree").to_i - before.dig(a.to_s, "agree").to_i }
    assert_equal expected.size, agreed
    assert_equal expected.size, @events["authorize"].size
    assert(@events["authorize"].all? { |e| %i[allow deny].include?(e[:decision]) && e[:duration].positive? })
  end

  def test_enforce_answers_as_declarative_policy_does
    assert_equal host_answers, with_mode(:enforce) { each_check { |u, a, p| Ability.allowed?(u, a, p) } }
  end

  def test_a_rule_difference_is_reported_with_both_traces
    add_policy('@id("no-internal-reads") forbid (principal, action == Gitlab::Action::"read_project", resource) ' \
               'when { resource.visibility == "internal" };')
    internal = PROJECTS.select { |p| p.visibility_level == 10 }
    users = User.where(state: "active", external: false, user_type: "human").first(3)
    expected = host_answers(users: users, projects: internal)
    got = with_mode(:shadow) { each_check(users: users, projects: internal) { |u, a, p| Ability.allowed?(u, a, p) } }
    assert_equal expected, got, "shadow mode returns declarative_policy's answers, mismatched or not"
    mismatches = @events["mismatch"]
    refute_empty mismatches
    assert(mismatches.all? { |m| m[:ability] == "read_project" && m[:declarative_policy] && !m[:arbiter] })
    first = mismatches.first
    assert_match(%r{\AUser/\d+\z}, first[:user])
    assert_match(%r{\AProject/\d+\z}, first[:subject])
    assert_includes first[:declarative_policy_trace], "internal_project"
    assert_includes first[:arbiter_explain]["reasons"], "no-internal-reads"
    assert_equal mismatches.size, bridge_counts.dig("read_project", "mismatch")
  end

  def test_enforce_with_fallback_survives_an_engine_error
    Arbiter::Rails.settings.context = ->(*) { { admin_mode: "not a boolean" } } # every request invalid
    projects = PROJECTS.first(20)
    expected = host_answers(projects: projects)
    before = bridge_counts
    got = with_mode(:enforce_with_fallback) { each_check(projects: projects) { |u, a, p| Ability.allowed?(u, a, p) } }
    assert_equal expected, got
    assert_equal expected.size, @events["fallback"].size
    assert_kind_of Arbiter::InvalidContextError, @events["fallback"].first[:error]
    fallbacks = GitlabSlice::ABILITIES.sum { |a| bridge_counts.dig(a.to_s, "fallback").to_i - before.dig(a.to_s, "fallback").to_i }
    assert_equal expected.size, fallbacks
    # Enforced alone, the same failure is a deny, never an exception; in shadow mode it changes
    # nothing.
    assert_equal [false] * expected.size, with_mode(:enforce) { each_check(projects: projects) { |u, a, p| Ability.allowed?(u, a, p) } }
    assert_equal expected, with_mode(:shadow) { each_check(projects: projects) { |u, a, p| Ability.allowed?(u, a, p) } }
    assert_equal expected.size * 2, @events["error"].size
  end

  def test_a_bridge_error_never_reaches_the_host
    builders = Arbiter::Rails.entities.instance_variable_get(:@builders)
    project_builder = builders[Project]
    Arbiter::Rails.entities.define(Project, type: "Gitlab::Project") { raise "a builder bug" }
    user = User.first
    project = PROJECTS.first
    host = Bridge.host_only { Ability.allowed?(user, :read_project, project) }
    assert_equal false, with_mode(:enforce) { Ability.allowed?(user, :read_project, project) }
    assert_equal host, with_mode(:enforce_with_fallback) { Ability.allowed?(user, :read_project, project) }
    assert_equal host, with_mode(:shadow) { Ability.allowed?(user, :read_project, project) }
    assert_equal ["a builder bug"] * 2, @events["error"].map { |e| e[:error].message }
    assert_equal ["a builder bug"], @events["fallback"].map { |e| e[:error].message }
  ensure
    builders[Project] = project_builder
  end

  def test_arbiter_where_selects_exactly_what_single_checks_allow
    dialect = Arbiter::Rails::Scope.dialect(ActiveRecord::Base.connection.adapter_name)
    assert_equal(GitlabSlice::POSTGRES ? :postgres : :sqlite, dialect)
    kinds = []
    [false, true].each do |admin_mode|
      USERS.each do |user|
        ::Rails.application.executor.wrap do
          Current.admin_mode = admin_mode
          GitlabSlice::ABILITIES.each do |ability|
            kinds << Arbiter::Rails::Scope.query(Project, user, ability).kind
            allowed = PROJECTS.select { |p| Bridge.host_only { Ability.allowed?(user, ability, p) } }.map(&:id)
            assert_equal allowed, Project.arbiter_where(user, ability).order(:id).pluck(:id),
                         "#{ability} for #{Bridge.describe(user)} (admin mode #{admin_mode})"
          end
        end
      end
    end
    assert_includes kinds, :where
    assert_includes kinds, :none # blocked users
  end

  def test_arbiter_where_composes_with_other_scopes_and_find_each
    user = User.where(state: "active", admin: false, auditor: false).first
    readable = Project.arbiter_where(user, :read_project)
    unarchived = readable.where(archived: false).order(:id).pluck(:id)
    assert_equal readable.order(:id).pluck(:id) - Project.where(archived: true).pluck(:id), unarchived
    assert_equal unarchived, Project.where(archived: false).arbiter_where(user, :read_project).order(:id).pluck(:id)
    batched = []
    readable.find_each(batch_size: 7) { |p| batched << p.id }
    assert_equal readable.order(:id).pluck(:id), batched
    assert_equal 5, readable.order(:id).limit(5).to_a.size
    blocked = User.where.not(state: "active").first
    assert_equal Project.none.to_sql, Project.arbiter_where(blocked, :read_project).to_sql
    error = assert_raises(Arbiter::Rails::BridgeError) { Namespace.arbiter_where(user, :read_project) }
    assert_includes error.message, "no Arbiter entity builder for Namespace"
  end

  def test_decision_log_and_a_failed_reload
    lines = File.readlines(File.join(GitlabSlice::TMP, "decisions.jsonl"))
    ::Rails.application.executor.wrap { Arbiter::Rails::Bridge.decide(User.first, :read_project, PROJECTS.first) }
    assert_operator File.readlines(File.join(GitlabSlice::TMP, "decisions.jsonl")).size, :>, lines.size
    event = JSON.parse(File.readlines(File.join(GitlabSlice::TMP, "decisions.jsonl")).last)
    assert_equal({ "type" => "Gitlab::Action", "id" => "read_project" }, event["action"])

    File.write(File.join(GitlabSlice::BUNDLE, "extra.cedar"), "permit (")
    next_reload
    assert_equal :error, @events["reload"].last[:result]
    assert_includes GitlabSlice::LOG.string, "extra.cedar"
    expected = host_answers(projects: PROJECTS.first(10))
    assert_equal expected, with_mode(:enforce) { each_check(projects: PROJECTS.first(10)) { |u, a, p| Ability.allowed?(u, a, p) } }
  end

  # Puma-style: the parent booted the app (and built the engine) before forking; each worker
  # answers checks through the full Rack stack; a bundle change reaches every worker at its next
  # request once the reload interval passed, and at once after SIGHUP.
  def test_forked_workers_pick_up_a_changed_bundle
    user = User.where(state: "active", external: false, user_type: "human", admin: false, auditor: false).first
    project = PROJECTS.find { |p| p.visibility_level == 20 }
    path = "/check?user=#{user.id}&project=#{project.id}&ability=read_project"
    Arbiter::Rails.settings.mode = :enforce
    workers = Array.new(2) { worker }
    assert_equal %w[true true], workers.map { |w| w.ask(path) }
    File.write(File.join(GitlabSlice::BUNDLE, "extra.cedar"),
               "@id(\"closed\") forbid (principal, action, resource == Gitlab::Project::\"#{project.id}\");")
    Process.kill("HUP", workers[0].pid)
    sleep 0.05
    assert_equal "false", workers[0].ask(path), "SIGHUP reloads at the next request"
    sleep 1.1
    assert_equal "false", workers[1].ask(path), "a change is seen at the first request after the interval"
    File.delete(File.join(GitlabSlice::BUNDLE, "extra.cedar"))
    sleep 1.1
    assert_equal %w[true true], workers.map { |w| w.ask(path) }
    assert_equal "true", Rack::MockRequest.new(::Rails.application).get(path).body, "the parent kept its bundle"
  ensure
    # A later worker holds the pipes of those forked before it, so each sees its end of input
    # only once every pipe is closed.
    workers&.each { |w| w.requests.close }
    workers&.each { |w| Process.wait(w.pid) }
  end

  Worker = Struct.new(:pid, :requests, :answers) do
    def ask(path)
      requests.puts(path)
      answers.gets.chomp
    end
  end

  def worker
    from_parent, to_child = IO.pipe
    from_child, to_parent = IO.pipe
    pid = fork do
      to_child.close
      from_child.close
      app = Rack::MockRequest.new(::Rails.application)
      while (path = from_parent.gets)
        response = app.get(path.chomp)
        to_parent.puts(response.status == 200 ? response.body : "status #{response.status}")
        to_parent.flush
      end
      exit!(0)
    end
    from_parent.close
    to_parent.close
    to_child.sync = true
    Worker.new(pid, to_child, from_child)
  end

  # The same under Puma itself (Debian's), in cluster mode with preload_app!: two workers fork
  # from a master that built the engine; SIGHUP to the workers (not the master, where Puma's own
  # handler stops the server) reloads each at its next request; a change is seen by whichever
  # worker answers once the interval passed.
  def test_puma_workers_pick_up_a_changed_bundle
    dir = File.join(GitlabSlice::TMP, "puma")
    port = TCPServer.open("127.0.0.1", 0) { |server| server.addr[1] }
    File.write(File.join(GitlabSlice::TMP, "puma.rb"),
               "workers 2\npreload_app!\nbind 'tcp://127.0.0.1:#{port}'\nquiet\n")
    env = { "ARBITER_RAILS_TMP" => dir, "ARBITER_TEST_POSTGRES" => nil,
            "RUBYLIB" => [File.join(GitlabSlice::REPO, "bindings-ruby", "lib"),
                          File.join(GitlabSlice::REPO, "target", "ruby", "lib"), ENV["RUBYLIB"]].compact.join(":") }
    master = spawn(env, "puma", "-C", File.join(GitlabSlice::TMP, "puma.rb"), File.join(__dir__, "config.ru"),
                   out: File::NULL, err: File.join(GitlabSlice::TMP, "puma.log"))
    ask = lambda do
      Array.new(8) { Net::HTTP.get(URI("http://127.0.0.1:#{port}/check?user=1&project=1&ability=read_project")) }.uniq
    end
    workers = []
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 60
    until workers.size == 2 && (ask.call rescue nil)
      flunk "Puma did not start: #{File.read(File.join(GitlabSlice::TMP, 'puma.log'))}" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      sleep 0.2
      workers = Dir.glob("/proc/[0-9]*/stat").filter_map do |stat|
        fields = File.read(stat).split(") ").last.split
        Integer(File.basename(File.dirname(stat))) if Integer(fields[1]) == master
      rescue SystemCallError
        nil
      end
    end
    assert_equal ["true"], ask.call
    File.write(File.join(dir, "bundle", "extra.cedar"), '@id("closed") forbid (principal, action, resource);')
    workers.each { |pid| Process.kill("HUP", pid) }
    assert_equal ["false"], ask.call, "SIGHUP reloads each worker at its next request"
    File.delete(File.join(dir, "bundle", "extra.cedar"))
    sleep 1.1
    assert_equal ["true"], ask.call, "after the interval, whichever worker answers has reloaded"
    assert_nil Process.wait(master, Process::WNOHANG), "the master runs on"
  ensure
    if master
      Process.kill("TERM", master)
      Process.wait(master)
    end
  end

  def test_recorded_checks_replay_through_both_and_print_each_disagreement
    File.write(File.join(GitlabSlice::TMP, "checks.jsonl"), "")
    # Outside admin mode: a replay runs outside any request, so without the session's state.
    with_mode(:shadow) do
      each_check(projects: PROJECTS.first(30), admin_modes: [false]) { |u, a, p| Ability.allowed?(u, a, p) }
    end
    recorded = File.readlines(File.join(GitlabSlice::TMP, "checks.jsonl"))
    assert_equal USERS.size * 30 * 3, recorded.size
    candidate = File.join(GitlabSlice::TMP, "candidate")
    FileUtils.rm_rf(candidate)
    FileUtils.cp_r(GitlabSlice::BUNDLE, candidate)
    File.write(File.join(candidate, "extra.cedar"),
               '@id("no-code") forbid (principal, action == Gitlab::Action::"download_code", resource);')
    File.write(File.join(GitlabSlice::TMP, "replay.jsonl"), [recorded.first(50), "not json\n", recorded.drop(50)].join)

    out = StringIO.new
    runtime = Arbiter::Rails::Runtime.new(bundle_path: candidate)
    result = File.open(File.join(GitlabSlice::TMP, "replay.jsonl")) do |lines|
      Arbiter::Rails::Replay.new(ability_class: Ability, runtime: runtime, out: out).run(lines)
    end
    denied_now = recorded.count { |line| (c = JSON.parse(line))["ability"] == "download_code" && c["answer"] }
    assert_operator denied_now, :>, 0
    assert_equal [recorded.size, denied_now, 1], [result.checked, result.disagreements, result.errors]
    assert_match(%r{^line 51: not replayed: JSON::ParserError}, out.string)
    assert_match(%r{^line \d+: download_code by (User/\d+|anonymous) on Project/\d+: the host allows, Arbiter denies \(policies: no-code\)$},
                 out.string)

    # The same through the rake task, as CI runs it.
    ::Rails.application.load_tasks unless Rake::Task.task_defined?("arbiter:diff")
    ENV["FILE"] = File.join(GitlabSlice::TMP, "replay.jsonl")
    ENV["BUNDLE"] = candidate
    exit_status = assert_raises(SystemExit) { capture_io { Rake::Task["arbiter:diff"].execute } }.status
    assert_equal 1, exit_status
  ensure
    ENV.delete("FILE")
    ENV.delete("BUNDLE")
  end

  def test_a_signed_bundle_reloads_only_when_signed_by_a_trusted_key
    dir = File.join(GitlabSlice::TMP, "signed")
    FileUtils.rm_rf(dir)
    FileUtils.cp_r(GitlabSlice::BUNDLE, dir)
    FileUtils.mkdir_p(File.join(GitlabSlice::TMP, "other"))
    cli = File.join(GitlabSlice::REPO, "target", "release", "arbiter")
    key = File.join(GitlabSlice::REPO, "core", "tests", "fixtures", "keys", "ec.pem")
    public_key = IO.popen([cli, "bundle", "sign", "--bundle", dir, "--key", key], err: File::NULL, &:read)
    assert $?.success?
    File.write(File.join(GitlabSlice::TMP, "trusted.pem"), public_key)
    other = IO.popen([cli, "bundle", "sign", "--bundle", File.join(GitlabSlice::TMP, "other"),
                      "--key", File.join(GitlabSlice::REPO, "core", "tests", "fixtures", "keys", "ed.pem")],
                     err: File::NULL, &:read)
    error = assert_raises(Arbiter::SignatureError) { Arbiter::Rails::Runtime.new(bundle_path: dir, signing_keys: [other]) }
    assert_includes error.message, "does not trust"
    log = StringIO.new
    runtime = Arbiter::Rails::Runtime.new(bundle_path: dir, signing_keys: [File.join(GitlabSlice::TMP, "trusted.pem")],
                                          logger: Logger.new(log))
    File.write(File.join(dir, "extra.cedar"), "permit (principal, action, resource);")
    runtime.request_reload
    refute runtime.check_reload
    assert_includes log.string, "extra.cedar: added since the bundle was signed"
    assert_equal "Gitlab::Action", runtime.abilities["action_type"]
  end
  # A runtime fed from a source (a directory here; docs/fleet.md has OCI and HTTPS): refreshed on
  # its schedule and at once when asked, a broken bundle logged while the old one serves, and a
  # restart with the source gone served from the cache.
  def test_a_runtime_refreshes_from_a_source_and_restarts_from_the_cache
    dir = File.join(GitlabSlice::TMP, "source")
    cache = File.join(GitlabSlice::TMP, "source-cache")
    FileUtils.rm_rf([dir, cache])
    FileUtils.cp_r(GitlabSlice::BUNDLE, dir)
    FileUtils.rm_f(File.join(dir, "extra.cedar"))
    log = StringIO.new
    error = assert_raises(ArgumentError) { Arbiter::Rails::Runtime.new(bundle_path: dir, source: dir) }
    assert_includes error.message, "not both"
    runtime = Arbiter::Rails::Runtime.new(source: dir, cache_dir: cache, refresh_interval: 3600, logger: Logger.new(log))
    # The anonymous caller may read a public project (their entities come with the request).
    anonymous = { uid: { type: "Gitlab::User", id: "anonymous" }, parents: [],
                  attrs: { state: "active", admin: false, auditor: false, external: false, user_type: "human",
                           username: "anonymous", id: "anonymous" } }
    project = { uid: { type: "Gitlab::Project", id: "9" }, parents: [{ type: "Gitlab::Group", id: "acme" }],
                attrs: { visibility: "public", archived: false, job_token_allowlist: [],
                         features: %w[repository issues merge_requests builds container_registry package_registry]
                           .to_h { |f| [f, "enabled"] } } }
    request = { principal: { type: "Gitlab::User", id: "anonymous" }, action: { type: "Gitlab::Action", id: "read_project" },
                resource: { type: "Gitlab::Project", id: "9" }, context: { admin_mode: false }, entities: [anonymous, project] }
    allowed = ->(engine = runtime.engine) { engine.authorize(**request).allowed? }
    assert allowed.call, "the public project is readable"
    File.write(File.join(dir, "extra.cedar"),
               "@id(\"closed\") forbid (principal, action, resource == Gitlab::Project::\"9\");")
    refute runtime.check_reload, "not due for an hour"
    runtime.request_reload
    assert runtime.check_reload
    refute allowed.call
    File.write(File.join(dir, "extra.cedar"), "permit (")
    runtime.request_reload
    refute runtime.check_reload
    assert_includes log.string, "extra.cedar"
    refute allowed.call, "the serving bundle stays"

    FileUtils.rm_rf(dir)
    restarted = Arbiter::Rails::Runtime.new(source: dir, cache_dir: cache)
    assert_equal "cache", restarted.engine.metrics["source"]["served_from"]
    refute allowed.call(restarted.engine), "the cache holds the last good bundle"
  end
end
