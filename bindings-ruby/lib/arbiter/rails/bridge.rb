# frozen_string_literal: true

require "json"
require "stringio"
require "active_support/notifications"

module Arbiter
  module Rails
    # The declarative_policy bridge. The host prepends it, in one line, to the class its
    # permission checks go through:
    #
    #   Ability.singleton_class.prepend(Arbiter::Rails::Bridge)
    #
    # Each ability the bundle's abilities.json maps then runs in its mode (config.arbiter.mode,
    # or per ability config.arbiter.modes):
    # - +:off+: declarative_policy alone.
    # - +:shadow+: declarative_policy answers; Arbiter decides too (sampled by
    #   +shadow_sample_rate+) and a different answer is a +mismatch.arbiter+ event carrying both
    #   answers, declarative_policy's trace and Arbiter's explanation.
    # - +:enforce_with_fallback+: Arbiter answers; if it fails, declarative_policy does.
    # - +:enforce+: Arbiter answers; if it fails, the answer is false.
    # Every comparison, fallback and error is counted by ability in the engine's metrics
    # (arbiter_bridge_checks_total). Nothing the bridge does raises into the host, and in shadow
    # mode nothing it does changes the answer.
    module Bridge
      MODES = %i[off shadow enforce_with_fallback enforce].freeze

      def allowed?(user, ability, subject = :global, *rest, **options)
        Bridge.check(user, ability, subject) { super }
      end

      class << self
        # Runs the block (the host's own check) and Arbiter as +ability+'s mode says.
        def check(user, ability, subject)
          mode = mode_for(ability, subject)
          case mode
          when :shadow
            expected = yield
            compare(user, ability, subject, expected) if Random.rand < Arbiter::Rails.settings.shadow_sample_rate
            expected
          when :enforce_with_fallback, :enforce
            answer = arbiter_answer(user, ability, subject, mode)
            return answer unless answer.nil?

            mode == :enforce ? false : yield
          else
            yield
          end
        end

        # The mode +ability+ runs in: :off unless the serving bundle maps it and the subject is
        # a record (not :global), or inside #host_only.
        def mode_for(ability, subject)
          runtime = Arbiter::Rails.runtime
          return :off if runtime.nil? || subject == :global || Thread.current[:arbiter_host_only]
          return :off unless runtime.ability(ability)

          Arbiter::Rails.settings.mode_for(ability)
        end

        # Runs the block with the bridge off on this thread: the host's own answers only.
        def host_only
          previous = Thread.current[:arbiter_host_only]
          Thread.current[:arbiter_host_only] = true
          yield
        ensure
          Thread.current[:arbiter_host_only] = previous
        end

        # What the serving bundle's abilities.json makes of +ability+: its action (as an entity
        # reference) and the resource type it is checked on.
        def action_of(ability, runtime = Arbiter::Rails.runtime)
          mapped = runtime&.ability(ability)
          raise BridgeError, "the bundle's abilities.json does not map ability #{ability}" unless mapped

          [{ type: runtime.abilities["action_type"], id: mapped["action"] }, mapped["resource_type"]]
        end

        # The request Arbiter decides for a host check (the keywords of Engine#authorize).
        def request(user, ability, subject, runtime = Arbiter::Rails.runtime)
          action, resource_type = action_of(ability, runtime)
          entities = Arbiter::Rails.entities
          principal = entities.build(user, user)
          resource = entities.build(subject, user)
          built_type = Entities.type_of(resource.first)
          unless built_type == resource_type
            raise BridgeError, "ability #{ability} is checked on #{resource_type}, not on #{built_type} (#{subject.class})"
          end
          {
            principal: Entities.uid(principal.first),
            action: action,
            resource: Entities.uid(resource.first),
            context: Arbiter::Rails.settings.context_for(user, ability, subject),
            entities: (principal + resource).uniq { |entity| Entities.uid(entity) },
          }
        end

        # Arbiter's decision of a host check, instrumented as authorize.arbiter. Raises what
        # building or deciding raised.
        def decide(user, ability, subject, runtime = Arbiter::Rails.runtime,
                   request: request(user, ability, subject, runtime))
          decision = runtime.authorize(ability: ability.to_s, **request)
          internal = decision.errors.find { |e| e.kind == "internal" }
          raise Arbiter::InternalError, internal.message if internal

          decision
        end

        # A record named as the bridge's events and recorded checks name it: "Project/7",
        # "anonymous" for nil.
        def describe(record)
          return "anonymous" if record.nil?

          record.respond_to?(:id) ? "#{record.class.name}/#{record.id}" : record.class.name
        end

        private

        # Arbiter's answer, or nil when it failed (counted and reported as an error under
        # :enforce, a fallback under :enforce_with_fallback).
        def arbiter_answer(user, ability, subject, mode)
          decide(user, ability, subject).allowed?
        rescue StandardError => e
          failed(user, ability, subject, e, mode == :enforce ? "error" : "fallback")
          nil
        end

        def compare(user, ability, subject, expected)
          Arbiter::Rails.settings.record(ability, describe(user), describe(subject), expected)
          request = request(user, ability, subject)
          decision = decide(user, ability, subject, request: request)
          agreed = decision.allowed? == (expected ? true : false) # the host may answer nil
          count(ability, agreed ? "agree" : "mismatch")
          mismatch(user, ability, subject, request, expected, decision) unless agreed
        rescue StandardError => e
          failed(user, ability, subject, e, "error")
        end

        def mismatch(user, ability, subject, request, expected, decision)
          ActiveSupport::Notifications.instrument(
            "mismatch.arbiter",
            ability: ability.to_s, user: describe(user), subject: describe(subject),
            declarative_policy: expected, arbiter: decision.allowed?, reasons: decision.reasons,
            declarative_policy_trace: trace(user, ability, subject),
            arbiter_explain: Arbiter::Rails.runtime.engine.explain(JSON.generate(request))
          )
        end

        # declarative_policy's own account of the check (DeclarativePolicy::Base#debug).
        def trace(user, ability, subject)
          out = StringIO.new
          DeclarativePolicy.policy_for(user, subject).debug(ability.to_sym, out)
          out.string
        rescue StandardError => e
          "declarative_policy's trace is unavailable (#{e.class}: #{e.message})"
        end

        def failed(user, ability, subject, error, result)
          count(ability, result)
          ActiveSupport::Notifications.instrument(
            "#{result}.arbiter",
            ability: ability.to_s, user: describe(user), subject: describe(subject), error: error
          )
        rescue StandardError
          nil # reporting a failure must not become one
        end

        def count(ability, result)
          Arbiter::Rails.runtime.engine.count_bridge_check(ability.to_s, result)
        end
      end
    end
  end
end
