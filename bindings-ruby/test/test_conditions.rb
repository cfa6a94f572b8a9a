# frozen_string_literal: true

require_relative "test_helper"

# The conditions a Rails monolith under preforking Puma runs the gem in.
class TestConditions < Minitest::Test
  include Helpers

  A = { "p.cedar" => '@id("a") permit (principal, action, resource);' }.freeze
  B = { "p.cedar" => '@id("b") permit (principal, action, resource);' }.freeze

  def test_threads_share_an_engine_while_it_reloads
    e = Arbiter::Engine.from_files(A)
    stop = false
    bad = Queue.new
    seen = Queue.new
    threads = Array.new(6) do
      Thread.new do
        until stop
          d = e.authorize(**REQUEST)
          (d.allowed? && [["a"], ["b"]].include?(d.reasons) ? seen : bad) << d
          many = e.authorize_many([REQUEST] * 20)
          bad << many unless many.all? { |m| m.allowed? && m.reasons == many[0].reasons }
        end
      end
    end
    200.times do |i|
      e.reload_from_files(i.odd? ? B : A)
      assert_raises(Arbiter::PolicyParseError) { e.reload_from_files("p.cedar" => "permit (") } if (i % 50).zero?
    end
    stop = true
    threads.each(&:join)
    refute_empty seen
    assert_empty bad
  end

  # Thread#raise (Timeout, Rack::Timeout) lands while a batch runs without the GVL: it is raised
  # once the call has handed its decision log events to its own engine's block, never left on
  # the thread for the next engine called there.
  def test_an_interrupted_batch_keeps_its_events_to_itself
    interrupted = Class.new(StandardError)
    first = Arbiter::Engine.from_files(A)
    second = Arbiter::Engine.from_files(B)
    to_second = Queue.new
    second.set_decision_log { |event| to_second << JSON.parse(event)["request_id"] }
    first.set_decision_log { |_event| nil }
    batch = Array.new(20_000) { REQUEST.merge(request_id: "first") }
    10.times do
      busy = Queue.new
      worker = Thread.new do
        begin
          loop do
            busy << true
            first.authorize_many(batch)
          end
        rescue interrupted
          nil
        end
        second.authorize(**REQUEST, request_id: "second")
      end
      busy.pop
      sleep 0.002
      worker.raise(interrupted)
      worker.join
    end
    assert_equal({ "second" => 10 }, Array.new(to_second.size) { to_second.pop }.tally)
  end

  # A ticker thread counts while another thread is inside a long batch: it can only advance
  # during the call if the batch gave up the GVL (holding it, the call reaches no point where
  # Ruby switches threads). About 290,000 ticks on a quiet machine, about 50 with both cores
  # busy elsewhere; 20 tells the two cases apart.
  def test_a_batch_releases_the_gvl
    e = engine # loaded first: loading too releases the GVL
    requests = Array.new(100_000) { user_request("alice", "push_code", "10") }
    ticks = 0
    stop = false
    ticker = Thread.new do
      until stop
        ticks += 1
        Thread.pass
      end
    end
    sleep 0.01 until ticks.positive?
    before = ticks
    answers = e.authorize_many(requests)
    during = ticks - before
    stop = true
    ticker.join
    assert_equal 100_000, answers.size
    assert(answers.all?(&:allowed?))
    assert_operator during, :>, 20, "the ticker made no progress while the batch ran"
  end

  def test_fork_after_loading_decides_in_child_and_parent
    e = Arbiter::Engine.from_files(A)
    assert_equal ["a"], e.authorize(**REQUEST).reasons
    logged = []
    e.set_decision_log { |event| logged << event }
    pid = fork do
      ok = e.authorize(**REQUEST).reasons == ["a"] && e.authorize_many([REQUEST] * 10).all?(&:allowed?)
      e.reload_from_files(B)
      ok &&= e.authorize(**REQUEST).reasons == ["b"] && logged.size == 12
      exit!(ok ? 0 : 1)
    end
    _, status = Process.wait2(pid)
    assert status.success?, "the child decided wrongly: #{status.inspect}"
    # The child's reload is its own.
    assert_equal ["a"], e.authorize(**REQUEST).reasons
  end

  def test_gc_stress
    GC.stress = true
    e = Arbiter::Engine.from_files(A)
    logged = []
    e.set_decision_log { |event| logged << JSON.parse(event) }
    decisions = Array.new(5) { e.authorize(**REQUEST, context: { n: [1, { "x" => "y" }] }) }
    many = e.authorize_many([REQUEST, { bad: 1 }, REQUEST])
    errors = Arbiter::Engine.from_files("p.cedar" => "permit (") rescue $!
  ensure
    GC.stress = false
    assert(decisions.all? { |d| d.reasons == ["a"] })
    assert_equal [true, false, true], many.map { |m| m.is_a?(Arbiter::Decision) }
    assert_instance_of Arbiter::PolicyParseError, errors
    assert_equal 7, logged.size
    assert(logged.all? { |event| event["reasons"] == ["a"] })
  end

  def test_gc_compact
    e = Arbiter::Engine.from_files(A)
    logged = []
    e.set_decision_log { |event| logged << event }
    decisions = Array.new(1000) { e.authorize(**REQUEST) }
    many = e.authorize_many([REQUEST] * 100)
    GC.compact
    GC.verify_compaction_references(double_heap: true, toward: :empty) if GC.respond_to?(:verify_compaction_references)
    assert(decisions.all? { |d| d.allowed? && d.reasons == ["a"] })
    assert(many.all? { |d| d.allowed? && d.reasons == ["a"] })
    assert_equal ["a"], e.authorize(**REQUEST).reasons
    assert_equal 1101, logged.size, "the block, moved or not, still gets every event"
  end

  # Moves every object while a batch builds its answers: the one Decision the equal answers
  # share must be found wherever it moved. Each error answer's exception runs `initialize`, which
  # compacts here. (Explicit compaction, not GC.auto_compact with GC.stress: Ruby 3.1's
  # automatic compaction crashes by itself under GC.stress, ruby/ruby#6096.)
  module CompactOnInitialize
    def initialize(*)
      GC.verify_compaction_references(double_heap: true, toward: :empty) if Thread.current[:arbiter_compact]
      super
    end
  end
  Arbiter::MalformedRequestError.prepend(CompactOnInitialize)

  def test_gc_compaction_while_a_batch_answers
    e = Arbiter::Engine.from_files(A)
    requests = [REQUEST, REQUEST, { bad: 1 }] * 4
    before = GC.stat(:compact_count)
    Thread.current[:arbiter_compact] = true
    many = e.authorize_many(requests)
  ensure
    Thread.current[:arbiter_compact] = false
    assert_equal 4, GC.stat(:compact_count) - before
    assert_equal [Arbiter::Decision, Arbiter::Decision, Arbiter::MalformedRequestError] * 4, many.map(&:class)
    decisions = many.grep(Arbiter::Decision)
    assert(decisions.all? { |d| d.allowed? && d.reasons == ["a"] })
    assert_equal 1, decisions.map(&:object_id).uniq.size
  end

  def rss_kib
    File.read("/proc/self/status")[/^VmRSS:\s+(\d+)/, 1].to_i
  end

  def test_a_million_decisions_keep_rss_stable
    request = user_request("alice", "push_code", "10")
    100_000.times { engine.authorize(**request) }
    # The first stretch lets the heap settle (after other tests, Ruby may grow its heap and keep
    # the pages for a while); a leak would go on growing through the next two.
    rss = Array.new(3) do
      300_000.times { engine.authorize(**request) }
      GC.start
      rss_kib
    end
    puts "\nRSS after 400k, 700k and 1M decisions: #{rss.join(', ')} KiB"
    assert_operator rss[2] - rss[0], :<, 16 * 1024
  end
end
