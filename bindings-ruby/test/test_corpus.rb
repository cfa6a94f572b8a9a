# frozen_string_literal: true

require_relative "test_helper"

# The default bundle's decision tests and Cedar's integration corpus through authorize_json.
class TestCorpus < Minitest::Test
  include Helpers

  CONFORMANCE = ENV.fetch("ARBITER_CONFORMANCE_DIR",
                          File.join(ROOT, "..", "shared", "conformance", "cedar-integration-tests"))

  def test_default_bundle_decision_tests
    cases = 0
    Dir[File.join(BUNDLE, "tests", "*.json")].sort.each do |path|
      JSON.parse(File.read(path)).fetch("cases").each do |c|
        cases += 1
        request = JSON.generate(c["request"])
        if c.key?("error")
          raised = assert_raises(Arbiter::Error, c["name"]) { engine.authorize_json(request) }
          assert_equal c["error"], raised.kind, c["name"]
          next
        end
        d = JSON.parse(engine.authorize_json(request))
        assert_equal c["decision"], d["decision"], c["name"]
        assert_equal c["reasons"].sort, d["reasons"].sort, c["name"] if c.key?("reasons")
        if c.key?("errors")
          got = d["errors"].map { |e| [e["kind"], e["policy"]] }.sort_by(&:to_s)
          assert_equal c["errors"].map { |e| [e["kind"], e["policy"]] }.sort_by(&:to_s), got, c["name"]
        end
      end
    end
    assert_operator cases, :>=, 200
  end

  def test_cedar_conformance_corpus
    Dir.mktmpdir do |tmp|
      assert system("tar", "-xzf", File.join(CONFORMANCE, "corpus-tests.tar.gz"), "-C", tmp), "cannot unpack the corpus"
      jobs = Dir[File.join(CONFORMANCE, "tests", "*", "*.json")].sort.map { |p| [p, CONFORMANCE] }
      jobs += Dir[File.join(tmp, "corpus-tests", "*.json")].sort.reject { |p| p.end_with?(".entities.json") }.map { |p| [p, tmp] }
      requests = 0
      disagreements = []
      jobs.each do |path, base|
        test = JSON.parse(File.read(path))
        engines = {}
        test.fetch("requests").each do |r|
          validate = r.fetch("validateRequest", true)
          engines[validate] ||= Arbiter::Engine.from_files(
            "policies.cedar" => File.read(File.join(base, test["policies"])),
            "schema.cedarschema" => File.read(File.join(base, test["schema"])),
            "entities.json" => File.read(File.join(base, test["entities"])),
            "manifest.json" => JSON.generate(validate_policies: false, validate_requests: validate),
          )
          requests += 1
          request = JSON.generate(r.slice("principal", "action", "resource", "context"))
          d = JSON.parse(engines[validate].authorize_json(request))
          got = [d["decision"], d["reasons"].sort, d["errors"].map { |e| e["policy"] }.sort]
          want = [r["decision"], r["reason"].sort, r["errors"].sort]
          disagreements << "#{File.basename(path)}: #{r['description']}: #{d}" unless got == want
        end
      end
      assert_empty disagreements.first(10)
      assert_equal 62_546, requests
      puts "\nCedar corpus through Ruby: #{jobs.size} test files, #{requests} requests, #{disagreements.size} disagreements"
    end
  end
end
