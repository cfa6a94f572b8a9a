# frozen_string_literal: true

# Arbiter: embeddable Cedar policy decisions and token verification.
#
#   engine = Arbiter::Engine.gitlab_default
#   decision = engine.authorize(
#     principal: { type: "Gitlab::User", id: "alice" },
#     action: { type: "Gitlab::Action", id: "push_code" },
#     resource: { type: "Gitlab::Project", id: "10" },
#     context: { admin_mode: false }
#   )
#   decision.allowed?   # => true
#   decision.reasons    # => ["role-developer"]
module Arbiter
end

require "json"
require "arbiter/arbiter_ruby"

module Arbiter
  # Raised (or, from Engine#authorize_many, returned) when Arbiter cannot do what was asked.
  # The subclass names the kind: PolicyParseError, InvalidRequestError, ...
  class Error
    # Stable numeric code: 100-109 bundle loading, 200-204 requests and queries, 900 internal.
    attr_reader :code
    # Stable snake_case kind, e.g. "policy_parse" or "invalid_context".
    attr_reader :kind
  end

  # A list query's answer: +kind+ is :all, :none or :where; +sql+ a WHERE clause for
  # <tt>SELECT <table>.id FROM <table></tt>; +params+ its bound parameters, in placeholder order.
  Query = Struct.new(:kind, :sql, :params)

  class Engine
    # Which resources of +resource_type+ may the principal act on? Answered as SQL for the
    # bundle's tables (its sql/mapping.json), in +dialect+ :postgres ($1, $2, ...) or :sqlite
    # (?); principal, action, context and entities are read as in #authorize. A residual the
    # mapping cannot express exactly raises Arbiter::UntranslatableError.
    def query(principal:, action:, resource_type:, context: nil, entities: nil, dialect: :postgres)
      request = { principal: principal, action: action, resource: { type: resource_type } }
      request[:context] = context if context
      request[:entities] = entities if entities
      answer = JSON.parse(query_json(JSON.generate(request), dialect.to_s))
      Query.new(answer.fetch("kind").to_sym, answer.fetch("sql"), answer.fetch("params").freeze).freeze
    end

    # Decides one request. Entity references are {type:, id:} hashes; +context+ a Hash;
    # +entities+ an Array of Cedar entity hashes; +principal+ may be left out when a +token+
    # names it. +request_id+, the host's id for the request (e.g. the correlation id), goes
    # into the decision log.
    def authorize(action:, resource:, principal: nil, context: nil, entities: nil, token: nil, request_id: nil)
      authorize_parts(principal, action, resource, context, entities, token, request_id)
    end

    # Logs decisions from now on: every decision (of every call but explain) is handed to the
    # block as one JSON String, a line to ship as is (request id, bundle, principal, action,
    # resource, decision, policy ids, error kinds, token id, latency, context with the
    # manifest's sensitive_attributes masked; never a token). The block runs on the calling
    # thread once the deciding call is done, with the GVL; one that raises is reported with
    # +warn+ and loses only its event. +sample_rate+ (0.0 to 1.0) logs that fraction, decisions
    # with the same request_id alike; +max_events_per_second+ caps the rate. Out-of-range
    # options raise ArgumentError and change nothing. Replaces any earlier block.
    def set_decision_log(sample_rate: 1.0, max_events_per_second: nil, &block)
      raise ArgumentError, "set_decision_log needs a block to receive the events" unless block

      previous = @decision_log
      @decision_log = block
      begin
        enable_decision_log(Float(sample_rate), max_events_per_second)
      rescue StandardError
        @decision_log = previous
        raise
      end
      self
    end

    # Stops logging decisions.
    def clear_decision_log
      disable_decision_log
      @decision_log = nil
      self
    end
  end
end
