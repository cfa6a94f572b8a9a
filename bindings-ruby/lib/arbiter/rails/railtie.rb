# frozen_string_literal: true

require "rails/railtie"

module Arbiter
  module Rails
    # config.arbiter, set in config/application.rb or an initializer:
    # - bundle_path: the bundle directory (nil: the default bundle built into the gem);
    # - source (instead of bundle_path): where the bundle is fetched from and refreshed
    #   (oci://HOST/REPO:TAG, an https:// URL serving an archive; docs/fleet.md), with cache_dir
    #   (the last good bundle, for a restart while the source is down) and refresh_interval
    #   (seconds, 60; jittered, backing off after failures);
    # - signing_keys: trusted public keys, PEM text or file paths (with any, only bundles they
    #   signed load, and never one signed before the bundle serving);
    # - decision_log: where decision log lines go (a path, a Logger, an IO or a callable), and
    #   decision_log_sample_rate;
    # - reload_interval: seconds between looks at the bundle directory (1.0); trap_sighup: whether
    #   SIGHUP asks for a reload (true);
    # - mode, modes, shadow_sample_rate, context, record_checks: the bridge's (see Bridge).
    # The engine is built after the application initializes, so a preforking server (Puma's
    # preload_app!, Unicorn's preload_app) builds it once before forking its workers.
    class Railtie < ::Rails::Railtie
      config.arbiter = ActiveSupport::OrderedOptions.new
      config.arbiter.bundle_path = nil
      config.arbiter.source = nil
      config.arbiter.cache_dir = nil
      config.arbiter.refresh_interval = 60
      config.arbiter.signing_keys = []
      config.arbiter.decision_log = nil
      config.arbiter.decision_log_sample_rate = 1.0
      config.arbiter.reload_interval = 1.0
      config.arbiter.trap_sighup = true
      config.arbiter.mode = :off
      config.arbiter.modes = {}
      config.arbiter.shadow_sample_rate = 1.0
      config.arbiter.context = nil
      config.arbiter.record_checks = nil

      initializer "arbiter.active_record" do
        ActiveSupport.on_load(:active_record) { extend Arbiter::Rails::Scope }
      end

      # Each request (and each job the executor wraps) starts by looking for a new bundle.
      initializer "arbiter.reload" do |app|
        app.executor.to_run { Arbiter::Rails.runtime&.check_reload }
      end

      config.after_initialize do |app|
        Arbiter::Rails.boot!(app.config.arbiter, logger: ::Rails.logger)
      end

      rake_tasks do
        namespace :arbiter do
          desc "Replay recorded checks (FILE, JSON Lines) through the host's Ability and Arbiter " \
               "(BUNDLE: a candidate bundle directory) and print every disagreement"
          task diff: :environment do
            file = ENV.fetch("FILE") { abort "arbiter:diff needs FILE=recorded checks (JSON Lines)" }
            runtime = ENV["BUNDLE"] ? Runtime.new(bundle_path: ENV["BUNDLE"]) : Arbiter::Rails.runtime
            ability_class = Object.const_get(ENV.fetch("ABILITY", "Ability"))
            result = File.open(file) { |lines| Replay.new(ability_class: ability_class, runtime: runtime).run(lines) }
            exit(1) unless result.clean?
          end
        end
      end
    end
  end
end
