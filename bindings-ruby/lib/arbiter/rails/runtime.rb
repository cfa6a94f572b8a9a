# frozen_string_literal: true

require "active_support/notifications"

module Arbiter
  module Rails
    # A process's engine, built once at boot (before a preforking server forks its workers) and
    # kept current without a thread: #check_reload, called at request boundaries, looks at the
    # bundle directory at most once per +reload_interval+ seconds (and at once after SIGHUP),
    # and reloads when a file changed; with a +source+ instead (an OCI reference, an HTTPS URL),
    # it refreshes from it when its refresher's jittered schedule says so (Arbiter::Refresher).
    # A reload that fails keeps the serving bundle and is logged; a signed engine checks each
    # new bundle's signature (and refuses an older one).
    class Runtime
      attr_reader :engine, :bundle_path, :source, :abilities

      # +bundle_path+: the bundle directory (nil: the default bundle built into the gem, never
      # reloaded). +source+ (instead of +bundle_path+): where the bundle is fetched from, with
      # +cache_dir+ keeping the last good one for a restart while the source is down, refreshed
      # about every +refresh_interval+ seconds. +signing_keys+: trusted public keys (PEM text
      # or paths to PEM files); with any, only bundles they signed load (a remote source needs
      # them). +decision_log+: where decision log lines go (a path, a Logger, an IO or a
      # callable).
      def initialize(bundle_path: nil, source: nil, cache_dir: nil, refresh_interval: 60, signing_keys: [],
                     decision_log: nil, decision_log_sample_rate: 1.0, reload_interval: 1.0, logger: nil)
        raise ArgumentError, "config.arbiter: give bundle_path or source, not both" if bundle_path && source

        @bundle_path = bundle_path&.to_s
        @source = source&.to_s
        @reload_interval = Float(reload_interval)
        @logger = logger
        @lock = Mutex.new
        @reload_requested = false
        @fingerprint = fingerprint
        @checked_at = now
        keys = Array(signing_keys).map { |key| pem(key) }
        if @source
          @refresher = Arbiter::Refresher.new(@source, public_keys: keys, cache_dir: cache_dir,
                                                      interval: Float(refresh_interval))
          @engine = @refresher.start
        else
          @engine = build_engine(keys)
        end
        @abilities = @engine.abilities
        log_decisions_to(decision_log, decision_log_sample_rate) if decision_log
      end

      # What the serving bundle's abilities.json says +ability+ is ({"action", "resource_type"}),
      # or nil.
      def ability(name)
        abilities&.dig("abilities", name.to_s)
      end

      # Reloads the bundle if SIGHUP asked for it, or if its files changed (looked at no more
      # than once per reload interval). Answers whether a reload succeeded. Never raises for a
      # bad bundle: the serving one stays, and the failure is logged and instrumented.
      def check_reload
        return refresh if @refresher
        return false unless @bundle_path && (@reload_requested || now - @checked_at >= @reload_interval)
        return false unless @lock.try_lock

        begin
          requested = @reload_requested
          @reload_requested = false
          @checked_at = now
          current = fingerprint
          return false if current == @fingerprint && !requested

          @fingerprint = current
          reload
        ensure
          @lock.unlock
        end
      end

      # Makes the next #check_reload reload (what SIGHUP does).
      def request_reload
        @reload_requested = true
      end

      # SIGHUP asks for a reload at the next request boundary. In the process that set the trap
      # (a preforking server's master), a handler set before still runs (Puma's reopens its logs,
      # or stops). In a forked worker, SIGHUP is Arbiter's alone: the master's handler, copied
      # into the worker, is not the worker's to run.
      def trap_sighup
        owner = Process.pid
        previous = Signal.trap("HUP") do |signal|
          request_reload
          previous.call(signal) if Process.pid == owner && previous.respond_to?(:call)
        end
      end

      # Decides a request (the keywords of Engine#authorize) and instruments it as
      # +authorize.arbiter+ (action, ability, decision, reasons, errors, duration in seconds)
      # when anything subscribes to it.
      def authorize(ability: nil, **request)
        return engine.authorize(**request) unless ActiveSupport::Notifications.notifier.listening?("authorize.arbiter")

        ActiveSupport::Notifications.instrument("authorize.arbiter",
                                                action: request.dig(:action, :id), ability: ability) do |payload|
          started = now
          decision = engine.authorize(**request)
          payload[:duration] = now - started
          payload[:decision] = decision.allowed? ? :allow : :deny
          payload[:reasons] = decision.reasons
          payload[:errors] = decision.errors.map(&:kind)
          decision
        end
      end

      private

      def build_engine(keys)
        return Arbiter::Engine.gitlab_default unless @bundle_path
        return Arbiter::Engine.from_bundle_dir(@bundle_path) if keys.empty?

        Arbiter::Engine.from_signed_bundle_dir(@bundle_path, keys)
      end

      def reload
        ActiveSupport::Notifications.instrument("reload.arbiter", bundle_path: @bundle_path) do |payload|
          engine.reload_from_dir(@bundle_path)
          @abilities = engine.abilities
          payload[:result] = :ok
          true
        rescue Arbiter::Error => e
          failed(payload, @bundle_path, e)
        end
      end

      # A refresh from the source when one is due (or asked for); instrumented only when it
      # fetched something new or failed.
      def refresh
        return false unless @lock.try_lock

        begin
          requested = @reload_requested
          @reload_requested = false
          outcome = requested ? @refresher.refresh(engine) : @refresher.refresh_if_due(engine)
          return false unless outcome[:refreshed] == :updated

          @abilities = engine.abilities
          ActiveSupport::Notifications.instrument("reload.arbiter", source: @source, result: :ok,
                                                                    digest: outcome[:digest])
          true
        rescue Arbiter::Error => e
          ActiveSupport::Notifications.instrument("reload.arbiter", source: @source) do |payload|
            failed(payload, @source, e)
          end
        ensure
          @lock.unlock
        end
      end

      def failed(payload, from, error)
        payload[:result] = :error
        payload[:error] = error
        @logger&.error("arbiter: reloading #{from} failed, the serving bundle stays " \
                       "(#{error.class}): #{error.message}")
        false
      end

      # What changes when the bundle does: where the directory resolves to (a deploy may swap a
      # symlink) and each file's path, size, modification time and inode.
      def fingerprint
        return nil unless @bundle_path

        root = File.realpath(@bundle_path)
        files = Dir.glob("**/*", base: root).sort.filter_map do |path|
          stat = File.stat(File.join(root, path))
          [path, stat.size, stat.mtime.to_r, stat.ino] if stat.file?
        end
        [root, files]
      rescue SystemCallError => e
        [:unreadable, e.message]
      end

      def pem(key)
        key = key.to_s
        key.include?("-----BEGIN") ? key : File.read(key)
      end

      def log_decisions_to(destination, sample_rate)
        write = Arbiter::Rails.line_writer(destination, "decision_log")
        engine.set_decision_log(sample_rate: sample_rate) { |line| write.call(line) }
      end

      def now
        Process.clock_gettime(Process::CLOCK_MONOTONIC)
      end
    end
  end
end
