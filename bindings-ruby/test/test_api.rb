# frozen_string_literal: true

require_relative "test_helper"

class TestApi < Minitest::Test
  include Helpers

  def test_version
    assert_match(/\A\d+\.\d+\.\d+\z/, Arbiter::VERSION)
  end

  def test_authorize_json_speaks_the_contract
    answer = engine.authorize_json(JSON.generate(user_request("alice", "push_code", "10")))
    assert_equal({ "decision" => "allow", "reasons" => ["role-developer"], "errors" => [] }, JSON.parse(answer))
  end

  def test_authorize
    d = engine.authorize(**user_request("alice", "push_code", "10"))
    assert d.allowed?
    assert_equal ["role-developer"], d.reasons
    assert_empty d.errors
    assert_equal '#<Arbiter::Decision allowed=true reasons=["role-developer"] errors=0>', d.inspect
    d = engine.authorize(**user_request("bob", "push_code", "10"))
    refute d.allowed?
    assert_equal ["user-blocked"], d.reasons
  end

  def test_decisions_compare_by_value
    allowed = engine.authorize(**user_request("alice", "push_code", "10"))
    again = engine.authorize(**user_request("alice", "push_code", "10"))
    denied = engine.authorize(**user_request("bob", "push_code", "10"))
    refute_same allowed, again
    assert_equal allowed, again
    assert allowed.eql?(again)
    assert_equal allowed.hash, again.hash
    refute_equal allowed, denied
    refute_equal allowed, allowed.to_h
    assert_equal [allowed, denied], [allowed, again, denied].uniq
    assert_equal({ decision: "allow", reasons: ["role-developer"], errors: [] }, allowed.to_h)
    assert_equal({ decision: "deny", reasons: ["user-blocked"], errors: [] }, denied.to_h)

    e = Arbiter::Engine.from_files(bundle('@id("p") permit (principal, action, resource) when { principal.nope };'))
    request = { principal: { type: "User", id: "1" }, action: { type: "Action", id: "a" }, resource: { type: "R", id: "1" } }
    failed = e.authorize(**request)
    error = failed.errors.fetch(0)
    assert_equal failed, e.authorize(**request)
    assert_equal error, e.authorize(**request).errors.fetch(0)
    assert_equal error.hash, e.authorize(**request).errors.fetch(0).hash
    assert_equal({ kind: "policy_evaluation", policy: "p", message: error.message }, error.to_h)
    assert_equal({ decision: "deny", reasons: [], errors: [error.to_h] }, failed.to_h)
    refused = e.authorize(**request, token: "not-a-token")
    refute_equal failed, refused
    refute_equal error, refused.errors.fetch(0)
    assert_nil refused.errors.fetch(0).to_h.fetch(:policy)
    assert_equal "#<Arbiter::DecisionError kind=\"policy_evaluation\" policy=\"p\" message=#{error.message.inspect}>",
                 error.inspect
    assert_match(/\A#<Arbiter::DecisionError kind="unknown_issuer" policy=nil message="/, refused.errors.fetch(0).inspect)
  end

  def test_string_keys_and_symbol_values_are_read_too
    request = { "type" => "Gitlab::User", "id" => "alice" }
    d = engine.authorize(principal: request, action: { type: "Gitlab::Action", id: "push_code" },
                         resource: { type: "Gitlab::Project", id: "10" },
                         context: { "admin_mode" => false })
    assert d.allowed?
  end

  def test_request_entities_replace_static_ones_for_one_request
    blocked = {
      uid: { type: "Gitlab::User", id: "alice" },
      attrs: { state: "blocked", admin: false, auditor: false, external: false, user_type: "human" },
      parents: [],
    }
    d = engine.authorize(**user_request("alice", "push_code", "10", entities: [blocked]))
    refute d.allowed?
    assert_equal ["user-blocked"], d.reasons
    assert engine.authorize(**user_request("alice", "push_code", "10")).allowed?
  end

  def test_policy_errors_are_reported_with_the_policy
    e = Arbiter::Engine.from_files(bundle('@id("p") permit (principal, action, resource) when { principal.missing };'))
    d = e.authorize(**REQUEST)
    refute d.allowed?
    error = d.errors.fetch(0)
    assert_instance_of Arbiter::DecisionError, error
    assert_equal ["policy_evaluation", "p"], [error.kind, error.policy]
    refute_empty error.message
  end

  def test_a_token_nobody_configured_is_a_deny_with_its_error
    request = user_request("alice", "read_project", "1", token: "not-a-token")
    request.delete(:principal)
    d = engine.authorize(**request)
    refute d.allowed?
    error = d.errors.fetch(0)
    assert_equal ["unknown_issuer", nil], [error.kind, error.policy]
  end

  def test_tokens_minted_by_ruby_jwt
    require "jwt"
    secret = "a secret of thirty-two bytes!!!!"
    tokens = { jwt: { issuers: [{ issuer: "rails", audiences: ["api"], algorithms: ["HS256"],
                                  hmac_secret_env: "ARBITER_TEST_SECRET", principal: { type: "User" } }] } }
    ENV["ARBITER_TEST_SECRET"] = secret
    e = Arbiter::Engine.from_files(bundle('@id("t") permit (principal == User::"42", action, resource);',
                                          "tokens.json": JSON.generate(tokens)))
    exp = Time.now.to_i + 60
    token = JWT.encode({ iss: "rails", aud: "api", sub: "42", exp: exp }, secret, "HS256")
    info = e.verify_token(token)
    assert_equal({ "valid" => true, "kind" => "jwt", "principal" => { "type" => "User", "id" => "42" },
                   "claims" => { "iss" => "rails", "aud" => "api", "sub" => "42", "exp" => exp } }, info)
    refute info.frozen? # the caller's to keep or change, as JSON.parse would give it
    info["seen"] = true
    GC.compact if GC.respond_to?(:compact)
    assert_equal info.keys - ["seen"], e.verify_token(token).keys
    d = e.authorize(action: { type: "Action", id: "x" }, resource: { type: "R", id: "1" }, token: token)
    assert d.allowed?
    assert_equal ["t"], d.reasons
    forged = JWT.encode({ iss: "rails", aud: "api", sub: "42", exp: Time.now.to_i + 60 }, "another secret", "HS256")
    report = e.verify_token(forged)
    assert_equal [false, "bad_signature"], [report["valid"], report.dig("error", "kind")]
    assert_kind_of String, report.dig("error", "message")
    assert_equal %w[valid error], report.keys
    d = e.authorize(action: { type: "Action", id: "x" }, resource: { type: "R", id: "1" }, token: forged)
    refute d.allowed?
    assert_equal "bad_signature", d.errors.fetch(0).kind
  ensure
    ENV.delete("ARBITER_TEST_SECRET")
  end

  FEATURES = { repository: "enabled", issues: "enabled", merge_requests: "enabled", builds: "enabled",
               container_registry: "enabled", package_registry: "enabled" }.freeze

  # What a security review found the typed Rust path letting through: an attribute of the wrong
  # type (which made the fail-closed `archived-read-only` forbid error out and be skipped) and an
  # action entity regrouping actions (which let a job token remove a project). Both are
  # InvalidEntitiesError here, single and in a batch; a key given twice in request JSON is refused.
  def test_entities_the_schema_refuses_are_errors_never_skipped_forbids
    project = ->(archived) do
      { uid: { type: "Gitlab::Project", id: "10" }, parents: [{ type: "Gitlab::Group", id: "acme/platform" }],
        attrs: { visibility: "private", archived: archived, features: FEATURES, job_token_allowlist: [] },
        tags: { alice: { access_level: 30 } } }
    end
    assert engine.authorize(**user_request("alice", "push_code", "10", entities: [project.(false)])).allowed?
    assert_equal ["archived-read-only"],
                 engine.authorize(**user_request("alice", "push_code", "10", entities: [project.(true)])).reasons
    regroup = { uid: { type: "Gitlab::Action", id: "remove_project" }, attrs: {},
                parents: [{ type: "Gitlab::Action", id: "job_token" }] }
    job = user_request("100", "remove_project", "3").merge(principal: { type: "Gitlab::CiJob", id: "100" })
    refute engine.authorize(**job).allowed?
    [user_request("alice", "push_code", "10", entities: [project.("true")]),
     job.merge(entities: [regroup])].each do |request|
      error = assert_raises(Arbiter::InvalidEntitiesError) { engine.authorize(**request) }
      assert_equal "invalid_entities", error.kind
      assert_instance_of Arbiter::InvalidEntitiesError, engine.authorize_many([request]).fetch(0)
    end
    twice = '{"principal": {"type": "Gitlab::User", "id": "eve"}, "action": {"type": "Gitlab::Action", "id": "push_code"}, ' \
            '"resource": {"type": "Gitlab::Project", "id": "3"}, "context": {"admin_mode": false, "admin_mode": true}}'
    assert_raises(Arbiter::InvalidContextError) { engine.authorize_json(twice) }
  end

  def test_authorize_many_answers_in_place
    bad_context = user_request("alice", "push_code", "10").merge(context: { admin_mode: "thirty" })
    answers = engine.authorize_many([user_request("alice", "push_code", "10"), { nonsense: 1 }, 7, bad_context,
                                     user_request("bob", "push_code", "10")])
    assert_equal 5, answers.size
    assert answers[0].allowed?
    assert_instance_of Arbiter::MalformedRequestError, answers[1]
    assert_equal 200, answers[1].code
    assert_match(/nonsense/, answers[1].message)
    assert_instance_of Arbiter::MalformedRequestError, answers[2]
    assert_instance_of Arbiter::InvalidContextError, answers[3]
    assert_equal "invalid_context", answers[3].kind
    assert_equal ["user-blocked"], answers[4].reasons
    assert_equal [], engine.authorize_many([])
    # Requests with String keys read like those with Symbol keys.
    stringly = { "principal" => { "type" => "Gitlab::User", "id" => "alice" },
                 "action" => { "type" => "Gitlab::Action", "id" => "push_code" }, "resource" => { "type" => "Gitlab::Project", "id" => "10" },
                 "context" => { "admin_mode" => false } }
    assert_equal ["role-developer"], engine.authorize_many([stringly]).fetch(0).reasons
    # Decisions are frozen values; a batch hands out one object per distinct decision.
    again = engine.authorize_many([user_request("alice", "push_code", "10"), user_request("bob", "push_code", "10"),
                                   user_request("alice", "push_code", "10"), user_request("bob", "push_code", "10")])
    assert again.all?(&:frozen?)
    assert_same again[0], again[2]
    assert_same again[1], again[3]
    refute_same again[0], again[1]
    assert engine.authorize(**user_request("alice", "push_code", "10")).frozen?
    raw = JSON.parse(engine.authorize_json_batch(JSON.generate([user_request("alice", "push_code", "10"), 7])))
    assert_equal "allow", raw[0]["decision"]
    assert_equal "malformed_request", raw[1]["error"]["kind"]
  end

  LOAD_ERRORS = [
    [{}, Arbiter::PolicyParseError, "policy_parse", 102, "permit (principal,"],
    [{ "manifest.json": '{"nope": 1}' }, Arbiter::ManifestError, "manifest", 101],
    [{ "schema.cedarschema": "entity User; action read appliesTo { principal: User, resource: User };" },
     Arbiter::PolicyValidationError, "policy_validation", 103,
     "permit (principal, action, resource) when { principal.x };"],
    [{ "schema.cedarschema": "entity User = { x: Nope };" }, Arbiter::SchemaError, "schema", 104],
    [{ "entities.json": "[{]" }, Arbiter::EntitiesError, "entities", 105],
    [{ "links.json": '[{"template_id": "t", "link_id": "l", "args": {}}]' }, Arbiter::LinksError, "links", 106],
    [{ "tokens.json": '{"jwt": {}}' }, Arbiter::TokensError, "tokens", 107],
  ].freeze

  def test_each_load_error_has_its_class
    LOAD_ERRORS.each do |files, error, kind, code, policy|
      files = bundle(*policy, **files)
      raised = assert_raises(error) { Arbiter::Engine.from_files(files) }
      assert_kind_of Arbiter::Error, raised
      assert_equal [kind, code], [raised.kind, raised.code]
      refute_empty raised.message
    end
  end

  def test_problems_are_located
    raised = assert_raises(Arbiter::PolicyParseError) { Arbiter::Engine.from_files(bundle("permit (principal,")) }
    assert_match(/p\.cedar:1:/, raised.message)
  end

  def test_missing_bundle_dir
    raised = assert_raises(Arbiter::IoError) { Arbiter::Engine.from_bundle_dir("/nonexistent/bundle") }
    assert_includes raised.message, "/nonexistent/bundle"
    assert_equal 100, raised.code
  end

  def test_each_request_error_has_its_class
    [
      [->(r) { r[:resource] = { type: "Gitlab::Project" } }, Arbiter::MalformedRequestError, "malformed_request", 200],
      [->(r) { r[:action] = { type: "Gitlab::Action", id: "fly" } }, Arbiter::InvalidRequestError, "invalid_request", 201],
      [->(r) { r[:context][:admin_mode] = "high" }, Arbiter::InvalidContextError, "invalid_context", 202],
      [->(r) { r[:entities] = [{ uid: { type: "Gitlab::User", id: "x" }, attrs: { state: 1 }, parents: [] }] },
       Arbiter::InvalidEntitiesError, "invalid_entities", 203],
      [->(r) { r[:context] = { a: Object.new } }, Arbiter::MalformedRequestError, "malformed_request", 200],
      [->(r) { r[:token] = 7 }, Arbiter::MalformedRequestError, "malformed_request", 200],
    ].each do |change, error, kind, code|
      request = user_request("alice", "push_code", "10")
      change.call(request)
      raised = assert_raises(error) { engine.authorize(**request) }
      assert_equal [kind, code], [raised.kind, raised.code]
    end
    assert_raises(ArgumentError) { engine.authorize(principal: REQUEST[:principal], action: REQUEST[:action]) }
  end

  # Rack bodies and IO reads are binary Strings: their bytes count if they are UTF-8; a String in
  # another encoding is converted; bytes that are not text are a malformed request.
  def test_binary_and_other_encodings
    e = Arbiter::Engine.from_files(bundle('@id("a") permit (principal, action, resource == R::"é") when { context.s == "café" };'))
    request = REQUEST.merge(resource: { type: "R", id: "é".b }, context: { s: "café".encode("ISO-8859-1") })
    assert_equal ["a"], e.authorize(**request).reasons
    assert_equal ["a"], e.authorize_many([request]).fetch(0).reasons
    json = JSON.generate(REQUEST.merge(resource: { type: "R", id: "é" }, context: { s: "café" }))
    assert_equal ["a"], JSON.parse(e.authorize_json(json.b))["reasons"]
    raised = assert_raises(Arbiter::MalformedRequestError) { e.authorize(**REQUEST, resource: { type: "R", id: "\xFF".b }) }
    assert_equal "`resource` must be {type: String, id: String}", raised.message
    raised = assert_raises(Arbiter::MalformedRequestError) { e.authorize_json("\xFF".b) }
    assert_equal "`request` must be a String of UTF-8 text", raised.message
    raised = assert_raises(Arbiter::MalformedRequestError) { e.authorize(**REQUEST, token: "\xFF".b) }
    assert_equal "`token` must be a String of UTF-8 text", raised.message
    assert_equal false, e.verify_token("\xFF".b)["valid"], "bytes that are not text are no token, not an exception"
  end

  # A key given as both a Symbol and a String is ambiguous: refused, never one of the two picked.
  def test_a_key_given_twice_is_malformed
    twice = { type: "Gitlab::User", id: "alice", "id" => "bob" }
    raised = assert_raises(Arbiter::MalformedRequestError) { engine.authorize(**user_request("x", "push_code", "10"), principal: twice) }
    assert_equal "`principal`: key `id` given twice (as a Symbol and a String)", raised.message
    request = user_request("alice", "push_code", "10").merge("principal" => { type: "Gitlab::User", id: "bob" })
    answer = engine.authorize_many([request]).fetch(0)
    assert_instance_of Arbiter::MalformedRequestError, answer
    assert_match(/\Akey `principal` given twice/, answer.message)
    unknown = engine.authorize_many([{ nope: 1 }]).fetch(0)
    assert_match(/\Aunknown key :nope in a request; expected principal, action/, unknown.message)
  end

  def test_values_that_are_not_json_are_malformed_requests
    e = Arbiter::Engine.from_files(bundle('@id("a") permit (principal, action, resource) when { context.n == [1, 2] };'))
    assert_equal ["a"], e.authorize(**REQUEST, context: { n: [1, 2] }).reasons
    cyclic = {}
    cyclic[:self] = cyclic
    [[cyclic, /deeper than/], [{ n: Object.new }, /not JSON-like/], [{ 1 => 2 }, /Strings or Symbols/],
     [{ n: 2**70 }, /not JSON-like/]].each do |context, words|
      raised = assert_raises(Arbiter::MalformedRequestError) { e.authorize(**REQUEST, context: context) }
      assert_match words, raised.message
    end
  end

  def test_json_request_errors
    assert_raises(Arbiter::MalformedRequestError) { engine.authorize_json("{oops") }
    assert_raises(Arbiter::InvalidRequestError) { engine.authorize_json(JSON.generate(user_request("alice", "fly", "10"))) }
  end

  # Every kind of core's error table has its class, named after the kind (PolicyParseError for
  # policy_parse); the table is the C header's, code for code.
  def test_every_kind_of_the_error_table_has_its_class
    assert_operator Arbiter::Error, :<, StandardError
    header = File.read(File.join(ROOT, "ffi-c", "include", "arbiter.h"))
    c_codes = header.scan(/ARBITER_RESULT_(\w+) = (\d+)/).to_h { |name, code| [name.downcase, code.to_i] }
    c_codes.delete("ok")
    assert_equal c_codes, Arbiter::ERROR_KINDS.to_h { |code, kind, _| [kind, code] }
    Arbiter::ERROR_KINDS.each do |_, kind, name|
      assert_equal "#{kind.split('_').map(&:capitalize).join}Error", name
      assert_operator Arbiter.const_get(name), :<, Arbiter::Error
    end
    assert Arbiter::ERROR_KINDS.frozen?
  end

  def test_reload_keeps_the_old_bundle_on_failure
    Dir.mktmpdir do |dir|
      e = Arbiter::Engine.from_files(bundle('@id("a") permit (principal, action, resource);'))
      assert_equal ["a"], e.authorize(**REQUEST).reasons
      assert_raises(Arbiter::PolicyParseError) { e.reload_from_files(bundle("permit (")) }
      assert_raises(Arbiter::IoError) { e.reload_from_dir(File.join(dir, "missing")) }
      assert_equal ["a"], e.authorize(**REQUEST).reasons
      File.write(File.join(dir, "p.cedar"), '@id("b") permit (principal, action, resource);')
      e.reload_from_dir(dir)
      assert_equal ["b"], e.authorize(**REQUEST).reasons
    end
  end

  def test_the_embedded_default_bundle
    embedded = Arbiter::Engine.gitlab_default
    request = JSON.generate(user_request("alice", "push_code", "10"))
    assert_equal engine.authorize_json(request), embedded.authorize_json(request)
    assert(JSON.parse(embedded.entities_json).any? { |e| e.dig("uid", "id") == "push_code" })
  end

  def test_engines_are_made_by_their_constructors_only
    assert_raises(TypeError) { Arbiter::Engine.new }
    assert_raises(TypeError) { Arbiter::Decision.new }
  end
end
