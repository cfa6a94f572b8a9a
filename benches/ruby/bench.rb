# frozen_string_literal: true

# Ruby benchmarks: Arbiter's gem against GitLab's declarative_policy (the same rules as
# benches/go/testdata/slice.cedar, written as a ProjectPolicy) and ruby-jwt. Writes median
# nanoseconds per call to target/ruby-bench.json (benches/report.py turns them into
# BENCHMARKS.md rows). Every subject is checked to give the expected answer before it is timed.

require "base64"
require "declarative_policy"
require "json"
require "jwt"
require "openssl"
require "arbiter"

ROOT = File.expand_path("../..", __dir__)
KEYS = File.join(ROOT, "core", "tests", "fixtures", "keys")
OUT = File.join(ROOT, "target", "ruby-bench.json")
REPEATS = 7
RUN_SECONDS = 0.25

def seconds
  start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  yield
  Process.clock_gettime(Process::CLOCK_MONOTONIC) - start
end

# Median time of one call of the block, in nanoseconds.
def per_call_ns(&block)
  n = 1
  n *= 2 while (took = seconds { n.times(&block) }) < 0.05
  n = (n * RUN_SECONDS / took).ceil
  runs = Array.new(REPEATS) { seconds { n.times(&block) } / n }
  runs.sort[REPEATS / 2] * 1e9
end

# The slice's rules, the way GitLab writes them: roles from the project's members, account state
# from the user, archived and repository switches from the project.
User = Struct.new(:id, :state)
Project = Struct.new(:id, :archived, :repository, :members)

ROLES = {
  10 => %i[read_project read_issue create_issue],
  20 => %i[download_code read_merge_request read_pipeline],
  30 => %i[push_code create_merge_request create_pipeline],
  40 => %i[admin_project destroy_package],
  50 => %i[remove_project archive_project],
}.freeze
ACTIONS = ROLES.values.flatten.freeze

class ProjectPolicy < DeclarativePolicy::Base
  condition(:guest) { access_level >= 10 }
  condition(:reporter) { access_level >= 20 }
  condition(:developer) { access_level >= 30 }
  condition(:maintainer) { access_level >= 40 }
  condition(:owner) { access_level >= 50 }
  condition(:inactive, scope: :user) { @user.state != "active" }
  condition(:archived, scope: :subject) { @subject.archived }
  condition(:repository_disabled, scope: :subject) { @subject.repository == "disabled" }

  rule { guest }.enable(*ROLES[10])
  rule { reporter }.enable(*ROLES[20])
  rule { developer }.enable(*ROLES[30])
  rule { maintainer }.enable(*ROLES[40])
  rule { owner }.enable(*ROLES[50])
  rule { inactive }.prevent_all
  rule { archived }.prevent :push_code, :create_issue, :create_merge_request, :create_pipeline, :destroy_package
  rule { repository_disabled }.prevent :download_code, :push_code

  def access_level
    @subject.members.fetch(@user.id, 0)
  end
end

# 100 projects; alice's role differs from one to the next.
alice = User.new("alice", "active")
projects = Array.new(100) do |i|
  Project.new(i.to_s, i % 10 == 9, i % 7 == 6 ? "disabled" : "enabled", { "alice" => [10, 20, 30, 40, 50][i % 5] })
end
entities = [{ uid: { type: "User", id: "alice" }, attrs: { state: "active" }, parents: [] }] +
           projects.map do |p|
             { uid: { type: "Project", id: p.id }, attrs: { archived: p.archived, features: { repository: p.repository } },
               parents: [] }
           end
engine = Arbiter::Engine.from_files(
  "slice.cedar" => File.read(File.join(ROOT, "benches", "go", "testdata", "slice.cedar")),
  "entities.json" => JSON.generate(entities),
)
request = lambda do |project, action|
  { principal: { type: "User", id: "alice" }, action: { type: "Action", id: action.to_s },
    resource: { type: "Project", id: project.id }, context: { access_level: project.members.fetch("alice", 0) } }
end

# The list page: every project, ten of the actions.
checks = projects.product(ACTIONS.first(10))
requests = checks.map { |project, action| request.call(project, action) }
expected = checks.map { |project, action| DeclarativePolicy.policy_for(alice, project, cache: {}).allowed?(action) }
abort "arbiter and declarative_policy disagree" unless engine.authorize_many(requests).map(&:allowed?) == expected
abort "single calls disagree" unless requests.map { |r| engine.authorize(**r).allowed? } == expected
abort "no check allowed, or none denied" unless expected.uniq.size == 2

results = {}
project = projects[2] # alice is a developer there
single = request.call(project, :push_code)
abort "the single check is not allowed" unless engine.authorize(**single).allowed? &&
                                               DeclarativePolicy.policy_for(alice, project, cache: {}).allowed?(:push_code)
results["rb/decision/slice/arbiter_rb"] = per_call_ns { engine.authorize(**single) }
results["rb/decision/slice/declarative_policy"] =
  per_call_ns { DeclarativePolicy.policy_for(alice, project, cache: {}).allowed?(:push_code) }
results["rb/checks_1000/slice/authorize_many"] = per_call_ns { engine.authorize_many(requests) }
results["rb/checks_1000/slice/authorize"] = per_call_ns { requests.each { |r| engine.authorize(**r) } }
# An issue list: ten projects' rows, each asking the same ten abilities of its project.
repeated = Array.new(1000) { |i| requests[(i % 10 * 10) + (i / 10 % 10)] }
abort "repeated checks disagree" unless engine.authorize_many(repeated).map(&:allowed?) ==
                                        repeated.map { |r| engine.authorize(**r).allowed? }
results["rb/checks_1000_repeated/slice/authorize_many"] = per_call_ns { engine.authorize_many(repeated) }
results["rb/checks_1000_repeated/slice/authorize"] = per_call_ns { repeated.each { |r| engine.authorize(**r) } }
results["rb/checks_1000/slice/declarative_policy"] = per_call_ns do
  cache = {} # one request's cache, shared by its checks, as GitLab does
  checks.each { |p, action| DeclarativePolicy.policy_for(alice, p, cache: cache).allowed?(action) }
end

# Tokens: HS256 and RS256, the cache off, against ruby-jwt with the same key and checks; then
# RS256 again with the token cache as bundles have it by default (a token seen before).
secret = Base64.decode64(File.read(File.join(KEYS, "hs256.b64")))
rsa = OpenSSL::PKey::RSA.new(File.read(File.join(KEYS, "rsa.pem")))
claims = { iss: "bench", sub: "42", aud: "api", exp: Time.now.to_i + 3600 }
n = Base64.urlsafe_encode64(rsa.n.to_s(2), padding: false)
{
  "hs256" => [JWT.encode(claims, secret, "HS256"), { hmac_secret_file: "hs.b64", secret_encoding: "base64" }, secret],
  "rs256" => [JWT.encode(claims, rsa, "RS256", { kid: "k1" }),
              { jwks: { keys: [{ kty: "RSA", alg: "RS256", kid: "k1", n: n, e: "AQAB" }] } }, rsa.public_key],
}.each do |name, (token, key_config, key)|
  algorithm = name.upcase
  issuer = { issuer: "bench", audiences: ["api"], algorithms: [algorithm], principal: { type: "User" } }.merge(key_config)
  tokens, cached = [{ cache: { max_entries: 0 } }, {}].map do |cache|
    Arbiter::Engine.from_files(
      "p.cedar" => "permit (principal, action, resource);",
      "tokens.json" => JSON.generate({ jwt: { issuers: [issuer] } }.merge(cache)),
      "hs.b64" => File.read(File.join(KEYS, "hs256.b64")),
    )
  end
  options = { algorithm: algorithm, iss: "bench", verify_iss: true, aud: "api", verify_aud: true, required_claims: ["exp"] }
  abort "#{name}: arbiter refuses the token" unless tokens.verify_token(token)["valid"]
  abort "#{name}: ruby-jwt refuses the token" unless JWT.decode(token, key, true, options)[0]["sub"] == "42"
  results["rb/token/#{name}/arbiter_rb"] = per_call_ns { tokens.verify_token(token) }
  results["rb/token/#{name}/ruby_jwt"] = per_call_ns { JWT.decode(token, key, true, options) }
  next unless name == "rs256"

  abort "#{name}: the cache changes the report" unless cached.verify_token(token) == tokens.verify_token(token)
  results["rb/token/#{name}/arbiter_rb_cached"] = per_call_ns { cached.verify_token(token) }
  # The floor: OpenSSL's RSA check of the same signature alone, nothing parsed or checked.
  signing_input, signature = token.rpartition(".").values_at(0, 2)
  signature = Base64.urlsafe_decode64(signature)
  abort "#{name}: OpenSSL refuses the signature" unless key.verify("SHA256", signature, signing_input)
  results["rb/token/#{name}/openssl_verify"] = per_call_ns { key.verify("SHA256", signature, signing_input) }
end

File.write(OUT, "#{JSON.pretty_generate(results.sort.to_h)}\n")
results.sort.each { |k, ns| puts format("%-45s %12.2f µs", k, ns / 1000) }
