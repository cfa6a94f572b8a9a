# frozen_string_literal: true

require "json"

module Arbiter
  module Rails
    # Replays recorded checks (JSON Lines, one {"ability", "user", "subject"} a line, records
    # named "Project/7" and the anonymous user "anonymous", as config.arbiter.record_checks
    # writes them) through the host's own code and through Arbiter, and reports every check
    # they answer differently: a policy change vetted against production traffic. A line that
    # cannot be replayed is reported and the rest go on.
    class Replay
      Result = Struct.new(:checked, :disagreements, :errors) do
        def clean?
          disagreements.zero? && errors.zero?
        end
      end

      # +ability_class+: where the host's checks go (GitLab's Ability); +runtime+: the engine to
      # vet (e.g. a Runtime over a candidate bundle).
      def initialize(ability_class:, runtime: Arbiter::Rails.runtime, out: $stdout)
        @ability_class = ability_class
        @runtime = runtime
        @out = out
      end

      def run(lines)
        result = Result.new(0, 0, 0)
        lines.each_line.with_index(1) do |line, number|
          next if line.strip.empty?

          replay(line, number, result)
        end
        @out.puts "arbiter diff: #{result.checked} checks replayed, #{result.disagreements} disagreements, " \
                  "#{result.errors} lines not replayed"
        result
      end

      private

      def replay(line, number, result)
        check = JSON.parse(line)
        ability = check.fetch("ability")
        user = locate(check.fetch("user"))
        subject = locate(check.fetch("subject"))
        expected = Bridge.host_only { @ability_class.allowed?(user, ability.to_sym, subject) }
        decision = Bridge.decide(user, ability, subject, @runtime)
        result.checked += 1
        return if decision.allowed? == (expected ? true : false)

        result.disagreements += 1
        @out.puts "line #{number}: #{ability} by #{check['user']} on #{check['subject']}: " \
                  "the host #{expected ? 'allows' : 'denies'}, Arbiter #{decision.allowed? ? 'allows' : 'denies'} " \
                  "(policies: #{decision.reasons.join(', ').then { |r| r.empty? ? 'none' : r }})"
      rescue StandardError => e
        result.errors += 1
        @out.puts "line #{number}: not replayed: #{e.class}: #{e.message}"
      end

      # "Project/7" is Project.find(7); "anonymous" is nil.
      def locate(name)
        return nil if name == "anonymous"

        class_name, id = name.to_s.split("/", 2)
        raise ArgumentError, "#{name.inspect} is not \"Model/id\" or \"anonymous\"" unless id

        Object.const_get(class_name).find(id)
      end
    end
  end
end
