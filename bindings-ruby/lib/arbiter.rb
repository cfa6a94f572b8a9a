# frozen_string_literal: true

# Arbiter: embeddable Cedar policy decisions and token verification.
#
#   engine = Arbiter::Engine.gitlab_default
#   decision = engine.authorize(
#     principal: { type: "Gitlab::User", id: "alice" },
#     action: { type: "Gitlab::Action", id: "push_code" },
#     resource: { type: "Gitlab::Project", id: "3" },
#     context: { access_level: 30, admin_mode: false }
#   )
#   decision.allowed?   # => true
#   decision.reasons    # => ["role-developer"]
module Arbiter
end

require "arbiter/arbiter_ruby"

module Arbiter
  # Raised (or, from Engine#authorize_many, returned) when Arbiter cannot do what was asked.
  # The subclass names the kind: PolicyParseError, InvalidRequestError, ...
  class Error
    # Stable numeric code: 100-108 bundle loading, 200-203 requests, 900 internal.
    attr_reader :code
    # Stable snake_case kind, e.g. "policy_parse" or "invalid_context".
    attr_reader :kind
  end

  class Engine
    # Decides one request. Entity references are {type:, id:} hashes; +context+ a Hash;
    # +entities+ an Array of Cedar entity hashes; +principal+ may be left out when a +token+
    # names it.
    def authorize(action:, resource:, principal: nil, context: nil, entities: nil, token: nil)
      authorize_parts(principal, action, resource, context, entities, token)
    end
  end
end
