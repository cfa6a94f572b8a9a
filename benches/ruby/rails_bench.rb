# frozen_string_literal: true

# The cost of the Rails bridge, in the real Rails application of the gem's tests
# (bindings-ruby/test/rails/app.rb: SQLite, declarative_policy rules equivalent to the default
# bundle's): a check in shadow mode against declarative_policy alone; a check enforced by Arbiter
# against declarative_policy with a cold request cache, beside the membership query both must
# run (the floor); and a list page of 100 projects from arbiter_where against loading projects
# and filtering them with Ability.allowed?. Writes median nanoseconds per operation to
# target/rails-bench.json for benches/report.py. Every subject is checked to give the expected
# answers before it is timed.

require "json"
require_relative "../../bindings-ruby/test/rails/app"

OUT = File.join(GitlabSlice::REPO, "target", "rails-bench.json")
REPEATS = 7

GitlabSlice.seed(users: 40, projects: 2000)
Arbiter::Rails.runtime.engine.clear_decision_log
Arbiter::Rails.settings.record_checks = nil

def seconds
  start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  yield
  Process.clock_gettime(Process::CLOCK_MONOTONIC) - start
end

# Median time of the block divided by +per+ (the operations it makes), in nanoseconds.
def median_ns(per)
  yield # warm
  Array.new(REPEATS) { seconds { yield } }.sort[REPEATS / 2] / per * 1e9
end

def with_mode(mode, rate = 1.0)
  Arbiter::Rails.settings.mode = mode
  Arbiter::Rails.settings.shadow_sample_rate = rate
  yield
ensure
  Arbiter::Rails.settings.mode = :off
end

random = Random.new(11)
users = [nil, *User.where(state: "active").to_a]
projects = Project.includes(:project_feature).to_a
pairs = Array.new(300) { [users.sample(random: random), projects.sample(random: random)] }
checks = pairs.flat_map { |user, project| GitlabSlice::ABILITIES.map { |ability| [user, ability, project] } }
executor = Rails.application.executor
results = {}

# A request per (user, project) pair, asking its three abilities: the membership query runs once
# and both policies share it (as GitLab's request store shares it).
by_request = lambda do
  pairs.flat_map do |user, project|
    executor.wrap { GitlabSlice::ABILITIES.map { |ability| Ability.allowed?(user, ability, project) } }
  end
end
expected = with_mode(:off, &by_request)
abort "shadow mode changed an answer" unless with_mode(:shadow, &by_request) == expected
abort "enforce mode answers otherwise" unless with_mode(:enforce, &by_request) == expected
abort "a mismatch in equivalent rules" unless Arbiter::Rails.runtime.engine.metrics["bridge_checks"].values.sum { |c| c["mismatch"] }.zero?
results["rails/check/declarative_policy"] = with_mode(:off) { median_ns(checks.size, &by_request) }
results["rails/check/shadow"] = with_mode(:shadow) { median_ns(checks.size, &by_request) }
results["rails/check/shadow_sampled"] = with_mode(:shadow, 0.1) { median_ns(checks.size, &by_request) }
results["rails/check/enforce"] = with_mode(:enforce) { median_ns(checks.size, &by_request) }

# Each check a request of its own: nothing cached, so each policy runs the membership query.
cold = ->(&check) { checks.map { |user, ability, project| executor.wrap { check.call(user, ability, project) } } }
results["rails/check_cold/declarative_policy"] = with_mode(:off) { median_ns(checks.size) { cold.call { |u, a, p| Ability.allowed?(u, a, p) } } }
results["rails/check_cold/enforce"] = with_mode(:enforce) { median_ns(checks.size) { cold.call { |u, a, p| Ability.allowed?(u, a, p) } } }
results["rails/check_cold/membership_query"] =
  median_ns(checks.size) { cold.call { |u, _, p| u ? ProjectAuthorization.where(user_id: u.id, project_id: p.id).pick(:access_level) : 0 } }

# A list page: the first 100 projects (by id) a user may read.
user = User.where(state: "active", admin: false, auditor: false, external: false).first
page_arbiter = -> { executor.wrap { Project.arbiter_where(user, :read_project).order(:id).limit(100).to_a } }
page_filter = lambda do
  executor.wrap do
    Project.includes(:project_feature).order(:id).find_each(batch_size: 100).lazy
           .select { |project| Ability.allowed?(user, :read_project, project) }.first(100)
  end
end
abort "arbiter_where selects other projects" unless page_arbiter.call.map(&:id) == page_filter.call.map(&:id)
abort "the page is not full" unless page_arbiter.call.size == 100
results["rails/list_page/arbiter_where"] = median_ns(1, &page_arbiter)
results["rails/list_page/ability_filter"] = median_ns(1, &page_filter)

FileUtils.rm_rf(GitlabSlice::TMP)
File.write(OUT, "#{JSON.pretty_generate(results.sort.to_h)}\n")
results.sort.each { |k, ns| puts format("%-45s %12.2f µs", k, ns / 1000) }
