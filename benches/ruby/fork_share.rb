# frozen_string_literal: true

# How much memory a preforked Ruby worker (Puma's, Unicorn's) stops sharing with its parent once
# it decides: the Ruby side of benches/src/bin/fork_share.rs, which writes the large bundle this
# reads (`target/release/fork_share --write-bundle DIR`).
#
# The parent loads the default bundle and the large one (100,000 more entities), makes 1,000
# decisions as a preloading server's boot check would, runs GC and compacts its heap, then forks
# 8 workers and a control. Each worker makes 100,000 varied decisions through Engine#authorize;
# the control runs the same loop, building the same arguments, without deciding. What a
# worker's decisions made private is its growth in private memory (/proc/self/smaps) less the
# control's, in all and apart for the first 1,000 decisions (a worker's first use); USS and PSS
# come from each worker's /proc/PID/smaps_rollup, read by the parent while all are alive.
#
#   ruby -I bindings-ruby/lib -I target/ruby/lib benches/ruby/fork_share.rb DIR [--check]
#
# Prints JSON (KiB). --check exits 1 when a worker's decisions made 1 MiB or more private, or
# when a decision failed.

require "arbiter"
require "json"

WORKERS = 8
DECISIONS = 100_000
ENTITIES = 100_000
LIMIT_KIB = 1024
FIRST = 1_000
ACTIONS = %w[read_project download_code push_code read_issue create_issue create_merge_request
             admin_project remove_project].freeze
USERS = %w[alice eve bob anonymous root dora ben lars audrey].freeze
PROJECTS = %w[1 2 3 4 5 6 7 8 10].freeze
USER_COUNT = ENTITIES * 3 / 5
PROJECT_COUNT = ENTITIES - USER_COUNT - (ENTITIES / 100)
CONTEXT = { admin_mode: false }.freeze

dir = ARGV.find { |a| !a.start_with?("--") } or abort "usage: fork_share.rb BUNDLE_DIR [--check]"
check = ARGV.include?("--check")

# Private KiB per mapping name of this process; anonymous mappings are "anon".
def private_by_mapping
  name = nil
  File.foreach("/proc/self/smaps").each_with_object(Hash.new(0)) do |line, out|
    first, *rest = line.split
    if first.include?("-") && !first.end_with?(":")
      name = rest[4] || "anon"
    elsif first == "Private_Clean:" || first == "Private_Dirty:"
      out[name] += rest[0].to_i
    end
  end
end

def rollup(pid, fields)
  File.foreach("/proc/#{pid}/smaps_rollup").sum do |line|
    key, value = line.split(":", 2)
    fields.include?(key) ? value.to_i : 0
  end
end

# The worker's loop over decisions +range+; adds to +counts+ [allowed, denied, failed].
def decide(worker, range, small, large, control, counts)
  range.each do |i|
    action = { type: "Gitlab::Action", id: ACTIONS[((i / 7) + worker) % ACTIONS.size] }
    if (i % 10).zero?
      engine = small
      user = USERS[i % USERS.size]
      project = PROJECTS[(i / 3) % PROJECTS.size]
    else
      engine = large
      user = "u#{((i * 7919) + (worker * 104_729)) % USER_COUNT}"
      project = "bench-#{((i * 31) + (worker * 4_099)) % PROJECT_COUNT}"
    end
    principal = { type: "Gitlab::User", id: user }
    resource = { type: "Gitlab::Project", id: project }
    next if control

    decision = engine.authorize(principal: principal, action: action, resource: resource, context: CONTEXT)
    if !decision.errors.empty? then counts[2] += 1
    elsif decision.allowed? then counts[0] += 1
    else counts[1] += 1
    end
  rescue Arbiter::Error
    counts[2] += 1
  end
end

started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
small = Arbiter::Engine.gitlab_default
large = Arbiter::Engine.from_bundle_dir(dir)
load_seconds = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
decide(WORKERS, 0...FIRST, small, large, false, [0, 0, 0])
GC.start
GC.compact

report_r, report_w = IO.pipe
release_r, release_w = IO.pipe
pids = (0..WORKERS).map do |worker|
  fork do
    report_r.close
    release_w.close
    control = worker == WORKERS
    before = private_by_mapping
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    counts = [0, 0, 0]
    decide(worker, 0...FIRST, small, large, control, counts)
    first = private_by_mapping.values.sum - before.values.sum
    decide(worker, FIRST...DECISIONS, small, large, control, counts)
    allowed, denied, failed = counts
    seconds = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
    grown = private_by_mapping.map { |name, kib| [name, kib - before[name]] }.reject { |_, kib| kib.zero? }
    grown.sort_by! { |_, kib| -kib }
    report_w.puts JSON.generate(
      worker: worker, control: control, pid: Process.pid, allowed: allowed, denied: denied,
      failed: failed, seconds: seconds, private_growth_kib: grown.sum { |_, kib| kib }, first_growth_kib: first,
      growth_by_mapping_kib: grown.first(6).to_h
    )
    report_w.flush
    release_r.read
    exit!(0)
  rescue Exception => e # rubocop:disable Lint/RescueException -- the parent must hear of it
    report_w.puts JSON.generate(panicked: "#{e.class}: #{e.message}")
    report_w.flush
    exit!(1)
  end
end
report_w.close
release_r.close
reports = pids.map { JSON.parse(report_r.gets) }
if (panicked = reports.find { |r| r["panicked"] })
  release_w.close
  abort "fork_share.rb: a worker failed: #{panicked["panicked"]}"
end
reports.each do |r|
  r["uss_kib"] = rollup(r["pid"], %w[Private_Clean Private_Dirty])
  r["pss_kib"] = rollup(r["pid"], %w[Pss])
end
release_w.close
pids.each { |pid| Process.wait(pid) }

control = reports.find { |r| r["control"] }
control_rest = control["private_growth_kib"] - control["first_growth_kib"]
workers = reports.reject { |r| r["control"] }
workers.each do |r|
  r["engine_private_kib"] = r["private_growth_kib"] - control["private_growth_kib"]
  r["engine_private_after_first_kib"] = r["private_growth_kib"] - r["first_growth_kib"] - control_rest
end
worst = workers.map { |r| r["engine_private_kib"] }.max
worst_rest = workers.map { |r| r["engine_private_after_first_kib"] }.max
failed = workers.sum { |r| r["failed"] + (r["allowed"].zero? ? 1 : 0) }
puts JSON.pretty_generate(
  workers: WORKERS, decisions_per_worker: DECISIONS, entities: ENTITIES, load_seconds: load_seconds,
  parent_rss_kib: rollup(Process.pid, %w[Rss]), first_decisions: FIRST, worst_engine_private_kib: worst,
  worst_engine_private_after_first_kib: worst_rest, limit_kib: LIMIT_KIB, reports: reports
)
if check && (worst >= LIMIT_KIB || failed.positive?)
  abort "fork_share.rb: a worker's decisions made #{worst} KiB private (limit #{LIMIT_KIB}); " \
        "#{failed} failed or never allowed"
end
