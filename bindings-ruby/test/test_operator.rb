# frozen_string_literal: true

require_relative "test_helper"
require "socket"

# What operators use: metrics, explain, shadow evaluation and signed bundles.

class TestMetrics < Minitest::Test
  include Helpers

  def test_metrics_count_decisions_and_errors
    e = Arbiter::Engine.from_bundle_dir(BUNDLE)
    %w[alice alice eve].each { |user| e.authorize(**user_request(user, "push_code", "10")) }
    assert_raises(Arbiter::MalformedRequestError) { e.authorize_json("{oops") }

    m = e.metrics
    push = m["decisions"].find { |d| d["action"] == "Gitlab::Action::push_code" }
    assert_equal [2, 1], [push["allow"], push["deny"]]
    assert_equal 1, m["request_errors"]["malformed_request"]
    assert_equal 4, m["latency"]["count"]
    assert_equal({ "le_seconds" => nil, "count" => 4 }, m["latency"]["buckets"].last)
    assert_equal "gitlab", m["bundle"]["name"]

    text = e.metrics_prometheus
    assert_includes text, %(arbiter_decisions_total{action="Gitlab::Action::push_code",decision="allow"} 2\n)
    assert_includes text, "# TYPE arbiter_decision_duration_seconds histogram\n"
    assert_includes text, "arbiter_decision_duration_seconds_count 4\n"
  end
end

class TestExplain < Minitest::Test
  include Helpers

  def test_explain_names_the_policies_behind_a_decision
    request = JSON.generate(user_request("eve", "push_code", "10"))
    explanation = engine.explain(request)
    assert_equal "deny", explanation["decision"]
    developer = explanation["policies"].find { |p| p["id"] == "role-developer" }
    assert_equal %w[permit not_satisfied], developer.values_at("effect", "outcome")
    assert_includes developer["condition"], "30"
    assert engine.explain_text(request).start_with?("DENY: no permit was satisfied\n")
    assert_raises(Arbiter::MalformedRequestError) { engine.explain("{oops") }
  end
end

class TestShadow < Minitest::Test
  include Helpers

  def test_a_candidate_bundle_is_compared_but_never_decides
    e = Arbiter::Engine.from_files(bundle('@id("live") permit (principal, action, resource);'))
    e.set_candidate_from_files(bundle('@id("candidate") forbid (principal, action, resource);'))
    assert_raises(Arbiter::IoError) { e.set_candidate_from_dir("/nonexistent") }
    assert_equal ["live"], e.authorize(**REQUEST).reasons
    report = e.shadow_report
    assert_equal [0, 1], report.values_at("agreements", "disagreements")
    assert_equal ["candidate"], report["recent"][0]["candidate"]["reasons"]
    e.clear_candidate
    assert_nil e.shadow_report["candidate"]
  end
end

class TestSignedBundles < Minitest::Test
  include Helpers

  def test_a_signed_bundle_loads_and_an_altered_one_is_refused
    Dir.mktmpdir do |dir|
      File.write(File.join(dir, "p.cedar"), '@id("signed") permit (principal, action, resource);')
      cli = File.join(ROOT, "target", "release", "arbiter")
      key = File.join(ROOT, "core", "tests", "fixtures", "keys", "ec.pem")
      public_key = IO.popen([cli, "bundle", "sign", "--bundle", dir, "--key", key], err: File::NULL, &:read)
      assert $?.success?
      e = Arbiter::Engine.from_signed_bundle_dir(dir, [public_key])
      assert_raises(Arbiter::SignatureError) { Arbiter::Engine.from_signed_bundle_dir(dir, []) }
      File.write(File.join(dir, "p.cedar"), "forbid (principal, action, resource);")
      error = assert_raises(Arbiter::SignatureError) { e.reload_from_dir(dir) }
      assert_equal 108, error.code
      assert_includes error.message, "p.cedar: changed since the bundle was signed"
      assert_equal ["signed"], e.authorize(**REQUEST).reasons
    end
  end
end

class TestDecisionLog < Minitest::Test
  include Helpers

  # Members of Team::"core" may do anything; the manifest marks `ip` sensitive.
  def docs_engine
    Arbiter::Engine.from_files(
      "p.cedar" => '@id("team") permit (principal in Team::"core", action, resource);',
      "entities.json" => '[{"uid": {"type": "User", "id": "ann"}, "attrs": {}, ' \
                         '"parents": [{"type": "Team", "id": "core"}]}]',
      "manifest.json" => '{"name": "docs", "version": "3", "sensitive_attributes": ["ip"]}'
    )
  end

  def ann_reads(request_id)
    { principal: { type: "User", id: "ann" }, action: { type: "Action", id: "read" },
      resource: { type: "Doc", id: "d1" }, context: { ip: "10.0.0.1", agent: "git" },
      request_id: request_id }
  end

  def test_every_deciding_call_hands_its_events_to_the_block
    e = docs_engine
    events = []
    e.set_decision_log { |event| events << JSON.parse(event) }
    assert e.authorize(**ann_reads("rb-1")).allowed?
    e.authorize_json(JSON.generate(ann_reads("rb-2")))
    e.authorize_many([ann_reads("rb-3"), { nonsense: 1 }, ann_reads("rb-4")])
    e.authorize_json_batch(JSON.generate([ann_reads("rb-5")]))
    e.explain(JSON.generate(ann_reads("not-logged")))
    assert_equal %w[rb-1 rb-2 rb-3 rb-4 rb-5], events.map { |ev| ev["request_id"] }

    first = events.first
    assert_equal({ "name" => "docs", "version" => "3" }, first["bundle"])
    assert_equal({ "type" => "User", "id" => "ann" }, first["principal"])
    assert_equal %w[allow team], [first["decision"], *first["reasons"]]
    assert_equal({ "ip" => "[masked]", "agent" => "git" }, first["context"])
    assert_operator first["latency_us"], :>, 0
    assert_equal 5, e.metrics["decision_log"]["logged"]
  end

  def test_events_reach_the_block_from_threads_deciding_without_the_gvl
    e = docs_engine
    events = Queue.new
    e.set_decision_log { |event| events << event }
    batch = Array.new(50) { ann_reads("batch") }
    8.times.map { Thread.new { 5.times { e.authorize_many(batch) } } }.each(&:join)
    assert_equal 8 * 5 * 50, events.size
    assert events.pop.frozen?
  end

  def test_options_sampling_rate_limit_and_clearing
    e = docs_engine
    kept = []
    e.set_decision_log { |event| kept << event }
    assert_raises(ArgumentError) { e.set_decision_log(sample_rate: 1.5) { nil } }
    assert_raises(ArgumentError) { e.set_decision_log(max_events_per_second: 0) { nil } }
    assert_raises(ArgumentError) { e.set_decision_log }
    e.authorize(**ann_reads("still"))
    assert_equal 1, kept.size, "a refused option changes nothing"

    limited = []
    e.set_decision_log(max_events_per_second: 3) { |event| limited << event }
    e.authorize_many(Array.new(100) { ann_reads("limited") })
    assert_includes 3..10, limited.size
    assert_equal 100 - limited.size, e.metrics["decision_log"]["rate_limited"]

    sampled = []
    e.set_decision_log(sample_rate: 0.5) { |event| sampled << JSON.parse(event)["request_id"] }
    %w[a b c d e f g h i j].each { |id| 4.times { e.authorize(**ann_reads(id)) } }
    assert(sampled.tally.values.all? { |n| n == 4 }, "a request id was split: #{sampled.tally}")

    e.clear_decision_log
    e.authorize(**ann_reads("cleared"))
    refute_includes sampled, "cleared"
  end

  def test_a_block_that_raises_loses_its_event_not_the_decision
    e = docs_engine
    e.set_decision_log { |_| raise "sink broke" }
    decision = nil
    _, err = capture_io { decision = e.authorize(**ann_reads("r")) }
    assert decision.allowed?
    assert_includes err, "sink broke"
  end
end

# The decision log as OpenTelemetry log records (OTLP/JSON) to a receiver on loopback.
class TestOtlpDecisionLog < Minitest::Test
  include Helpers

  # Accepts OTLP/JSON exports on a TCP socket, one request a connection; the records go to +records+.
  def receiver(records)
    server = TCPServer.new("127.0.0.1", 0)
    thread = Thread.new do
      loop do
        client = server.accept
        length = 0
        while (line = client.gets) && line != "\r\n"
          length = Integer(line.split(":", 2).last) if line.downcase.start_with?("content-length:")
        end
        export = JSON.parse(client.read(length))
        export["resourceLogs"].each do |rl|
          rl["scopeLogs"].each { |sl| records.concat(sl["logRecords"]) }
        end
        client.write("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        client.close
      end
    end
    [server, thread]
  end

  def test_decisions_reach_the_receiver_as_records_and_are_counted
    records = []
    server, thread = receiver(records)
    e = Arbiter::Engine.from_bundle_dir(BUNDLE)
    assert_nil e.otlp_stats
    e.export_decision_log_otlp(endpoint: "http://127.0.0.1:#{server.addr[1]}/v1/logs", encoding: :json,
                               flush_interval: 0.05)
    5.times { e.authorize(**user_request("alice", "push_code", "10")) }
    deadline = Time.now + 10
    sleep 0.02 until e.otlp_stats[:exported] == 5 || Time.now > deadline
    assert_equal({ exported: 5, dropped: 0, failed_exports: 0 }, e.otlp_stats)
    assert_equal 5, records.size
    decision = records.first["attributes"].find { |kv| kv["key"] == "decision" }
    assert_equal({ "stringValue" => "allow" }, decision["value"])
    assert_raises(Arbiter::InvalidArgumentError) { e.export_decision_log_otlp(endpoint: "udp://x") }
    e.clear_decision_log
    assert_nil e.otlp_stats
  ensure
    thread&.kill
    server&.close
  end
end
