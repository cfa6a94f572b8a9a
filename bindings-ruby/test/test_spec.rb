# frozen_string_literal: true

require_relative "test_helper"

# The shared spec (tests/spec/errors.json) and the default bundle's decision tests, through the
# gem's own code: typed authorize, authorize_many and authorize_json. (Cedar's corpus runs once,
# in core.)
class TestSpec < Minitest::Test
  include Helpers

  SPEC = JSON.parse(File.read(File.join(ROOT, "tests", "spec", "errors.json")))

  def typed(request)
    JSON.parse(JSON.generate(request), symbolize_names: true)
  end

  def json?(text)
    JSON.parse(text)
    true
  rescue JSON::ParserError
    false
  end

  def assert_error(kind, code, error, name)
    assert_kind_of Arbiter::Error, error, name
    assert_equal [kind, code], [error.kind, error.code], "#{name}: #{error.message}"
  end

  def test_error_spec_requests
    SPEC.fetch("requests").each do |c|
      text = c["request_text"] || JSON.generate(c.fetch("request"))
      assert_error(c["kind"], c["code"], assert_raises(Arbiter::Error) { engine.authorize_json(text) }, c["name"])
      if json?(text)
        answer = JSON.parse(engine.authorize_json_batch("[#{text}]")).fetch(0).fetch("error")
        assert_equal [c["kind"], c["code"]], answer.values_at("kind", "code"), c["name"]
      else
        assert_raises(Arbiter::MalformedRequestError) { engine.authorize_json_batch("[#{text}]") }
      end
      next unless c.key?("request")

      assert_error(c["kind"], c["code"], assert_raises(Arbiter::Error) { engine.authorize(**typed(c["request"])) }, c["name"])
      assert_error(c["kind"], c["code"], engine.authorize_many([typed(c["request"])]).fetch(0), c["name"])
    end
  end

  def test_error_spec_bundles
    SPEC.fetch("bundles").each do |c|
      error = assert_raises(Arbiter::Error, c["name"]) { Arbiter::Engine.from_files(c.fetch("files")) }
      assert_error(c["kind"], c["code"], error, c["name"])
    end
  end

  def test_default_bundle_decision_tests_through_typed_calls
    cases = Dir[File.join(BUNDLE, "tests", "*.json")].sort.flat_map { |path| JSON.parse(File.read(path)).fetch("cases") }
    assert_operator cases.size, :>=, 200
    batch = engine.authorize_many(cases.map { |c| typed(c["request"]) })
    cases.zip(batch).each do |c, in_batch|
      answers = [in_batch]
      if c["request"].key?("action") && c["request"].key?("resource")
        answers << begin
          engine.authorize(**typed(c["request"]))
        rescue Arbiter::Error => e
          e
        end
      else
        # Ruby's own signature refuses the call before Arbiter sees it.
        assert_raises(ArgumentError) { engine.authorize(**typed(c["request"])) }
      end
      answers.each do |answer|
        if c.key?("error")
          assert_kind_of Arbiter::Error, answer, c["name"]
          assert_equal c["error"], answer.kind, c["name"]
          next
        end
        assert_kind_of Arbiter::Decision, answer, c["name"]
        assert_equal c["decision"] == "allow", answer.allowed?, c["name"]
        assert_equal c["reasons"].sort, answer.reasons.sort, c["name"] if c.key?("reasons")
        if c.key?("errors")
          assert_equal c["errors"].map { |e| [e["kind"], e["policy"]] }.sort_by(&:to_s),
                       answer.errors.map { |e| [e.kind, e.policy] }.sort_by(&:to_s), c["name"]
        end
      end
    end
  end
end
