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

    # Sends every decision as an OpenTelemetry log record to the OTLP/HTTP logs +endpoint+
    # (e.g. "http://127.0.0.1:4318/v1/logs"), from a bounded queue on an exporter thread of its
    # own, replacing any other decision log. A decision never waits for the receiver;
    # #otlp_stats counts what was exported and lost. A preforking server calls this in each
    # worker, after the fork. Bad options raise Arbiter::InvalidArgumentError.
    def export_decision_log_otlp(endpoint:, encoding: :protobuf, max_queue: nil, max_batch: nil, flush_interval: nil,
                                 timeout: nil, service_name: nil, ca_file: nil, sample_rate: nil,
                                 max_events_per_second: nil)
      options = { endpoint: endpoint.to_s, encoding: encoding.to_s, max_queue: max_queue, max_batch: max_batch,
                  flush_interval_seconds: flush_interval, timeout_seconds: timeout, service_name: service_name,
                  ca_file: ca_file&.to_s, sample_rate: sample_rate, max_events_per_second: max_events_per_second }.compact
      _export_decision_log_otlp(JSON.generate(options))
      @decision_log = nil
      self
    end

    # {exported:, dropped:, failed_exports:} of the OpenTelemetry exporter, or nil when the
    # decision log is not one.
    def otlp_stats
      JSON.parse(_otlp_stats_json, symbolize_names: true)&.freeze
    end
  end

  # Fetches an engine's bundle from a source and refreshes it when asked: a directory, an
  # https:// URL serving a bundle archive, or oci://HOST/REPO[:TAG|@DIGEST] (docs/fleet.md).
  # There is no background thread: call #refresh_if_due where a fetch is affordable (a request
  # boundary), or #refresh to fetch now. A remote source needs +public_keys+ (PEM Strings).
  # Calls take turns; fetches release the GVL.
  class Refresher
    def self.new(source, public_keys: [], cache_dir: nil, interval: nil, max_backoff: nil, timeout: nil,
                 max_bytes: nil, plain_http: false, ca_file: nil, allow_rollback: false)
      options = { cache_dir: cache_dir&.to_s, interval_seconds: interval, max_backoff_seconds: max_backoff,
                  timeout_seconds: timeout, max_bytes: max_bytes, plain_http: plain_http,
                  ca_file: ca_file&.to_s, allow_rollback: allow_rollback }.compact
      _new(source.to_s, JSON.generate(options), Array(public_keys).map(&:to_s))
    end

    # Fetches now and swaps a new bundle into +engine+: {refreshed: :updated, digest: "sha256:..."}
    # or {refreshed: :unchanged}. On an error (an Arbiter::Error) the engine keeps its bundle.
    def refresh(engine) = outcome(_refresh(engine, false))

    # #refresh when the schedule says one is due; {refreshed: :not_due} otherwise.
    def refresh_if_due(engine) = outcome(_refresh(engine, true))

    private

    def outcome(json)
      answer = JSON.parse(json, symbolize_names: true)
      answer.merge(refreshed: answer.fetch(:refreshed).to_sym).freeze
    end
  end
end
