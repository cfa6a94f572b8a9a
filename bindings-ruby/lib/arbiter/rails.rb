# frozen_string_literal: true

require "json"
require "pathname"
require "arbiter"
require "arbiter/rails/runtime"
require "arbiter/rails/entities"
require "arbiter/rails/bridge"
require "arbiter/rails/scope"
require "arbiter/rails/replay"

module Arbiter
  # Arbiter in a Rails application: `require "arbiter/rails"` (Bundler.require does it) adds the
  # railtie, which builds one engine per process at boot and keeps it current; the
  # declarative_policy bridge (Arbiter::Rails::Bridge); ActiveRecord relations from list queries
  # (Arbiter::Rails::Scope); and the recorded-traffic check (Arbiter::Rails::Replay,
  # `rake arbiter:diff`). docs/rails.md tells the whole of it.
  module Rails
    # What the bridge does with each ability (see Bridge) and what it records.
    Settings = Struct.new(:mode, :modes, :shadow_sample_rate, :context, :record_checks, keyword_init: true) do
      def mode_for(ability)
        modes.fetch(ability.to_sym, mode)
      end

      # The request context of a check: config.arbiter.context, called with the user, the
      # ability and the subject (nil for a list query).
      def context_for(user, ability, subject)
        context ? context.call(user, ability, subject) : {}
      end

      # Appends a check the bridge compared to config.arbiter.record_checks, for `arbiter:diff`.
      def record(ability, user, subject, answer)
        return unless record_checks

        record_checks.call(JSON.generate(ability: ability.to_s, user: user, subject: subject, answer: answer))
      end
    end

    class << self
      attr_reader :runtime

      # How the host's models become entities (Entities#define), process-wide.
      def entities
        @entities ||= Entities.new
      end

      def settings
        @settings ||= Settings.new(mode: :off, modes: {}, shadow_sample_rate: 1.0)
      end

      # Builds the process's engine and the bridge's settings from +options+ (the railtie's
      # config.arbiter; see Railtie for each key). Raises on a bad option or a bundle that does
      # not load: at boot, failing loudly is right.
      def boot!(options = {}, logger: nil)
        options = options.to_h
        modes = options.fetch(:modes, {}).to_h { |ability, mode| [ability.to_sym, mode.to_sym] }
        mode = options.fetch(:mode, :off).to_sym
        ([mode] + modes.values).each do |m|
          raise ArgumentError, "config.arbiter mode #{m.inspect} is not one of #{Bridge::MODES}" unless Bridge::MODES.include?(m)
        end
        rate = Float(options.fetch(:shadow_sample_rate, 1.0))
        raise ArgumentError, "config.arbiter.shadow_sample_rate #{rate} is not within 0.0..1.0" unless (0.0..1.0).cover?(rate)

        @settings = Settings.new(mode: mode, modes: modes, shadow_sample_rate: rate, context: options[:context],
                                 record_checks: options[:record_checks] && line_writer(options[:record_checks], "record_checks"))
        @runtime = Runtime.new(
          bundle_path: options[:bundle_path], source: options[:source], cache_dir: options[:cache_dir],
          refresh_interval: options.fetch(:refresh_interval, 60), signing_keys: options.fetch(:signing_keys, []),
          decision_log: options[:decision_log], decision_log_sample_rate: options.fetch(:decision_log_sample_rate, 1.0),
          reload_interval: options.fetch(:reload_interval, 1.0), logger: logger
        )
        @runtime.trap_sighup if (options[:bundle_path] || options[:source]) && options.fetch(:trap_sighup, true)
        @runtime
      end

      # Where the lines of +setting+ go, as a callable taking one line: a path (appended, one
      # write per line, whole even from forked workers), a callable, a Logger (+info+) or an IO.
      def line_writer(destination, setting)
        if destination.is_a?(String) || destination.is_a?(Pathname)
          file = File.open(destination, "a")
          file.sync = true
          ->(line) { file.write("#{line}\n") }
        elsif destination.respond_to?(:call) then destination
        elsif destination.respond_to?(:info) then ->(line) { destination.info(line) }
        elsif destination.respond_to?(:write) then ->(line) { destination.write("#{line}\n") }
        else
          raise ArgumentError, "config.arbiter.#{setting} is a path, a Logger, an IO or a callable, not #{destination.inspect}"
        end
      end
    end
  end
end

require "arbiter/rails/railtie" if defined?(::Rails::Railtie)
