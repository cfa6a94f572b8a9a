# frozen_string_literal: true

require_relative "test_helper"

# What operators use: metrics, explain, shadow evaluation and signed bundles.

class TestMetrics < Minitest::Test
  include Helpers

  def test_metrics_count_decisions_and_errors
    e = Arbiter::Engine.from_bundle_dir(BUNDLE)
    [30, 30, 20].each { |level| e.authorize(**user_request("alice", "push_code", "3", level)) }
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
    request = JSON.generate(user_request("alice", "push_code", "3", 20))
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
    assert_raises(Arbiter::BundleIOError) { e.set_candidate_from_dir("/nonexistent") }
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
