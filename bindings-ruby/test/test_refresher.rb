# frozen_string_literal: true

require_relative "test_helper"

# Arbiter::Refresher over a directory source: refreshes, failures that keep the old bundle,
# the status in the metrics, the cache across a restart, and a forked child refreshing on its
# own.
class TestRefresher < Minitest::Test
  include Helpers

  def with_source
    Dir.mktmpdir do |dir|
      write = ->(text) { File.write(File.join(dir, "p.cedar"), text) }
      write.call("permit (principal, action, resource);")
      yield dir, write
    end
  end

  def allowed?(engine) = engine.authorize(**REQUEST).allowed?

  def test_a_changed_source_is_picked_up_and_a_broken_one_refused
    with_source do |dir, write|
      refresher = Arbiter::Refresher.new(dir, interval: 3600)
      engine = refresher.start
      assert allowed?(engine)
      assert_equal({ refreshed: :not_due }, refresher.refresh_if_due(engine))
      assert_equal({ refreshed: :unchanged }, refresher.refresh(engine))
      write.call("forbid (principal, action, resource);")
      outcome = refresher.refresh(engine)
      assert_equal :updated, outcome[:refreshed]
      assert_match(/\Asha256:\h{64}\z/, outcome[:digest])
      refute allowed?(engine)

      write.call("permit (")
      assert_raises(Arbiter::PolicyParseError) { refresher.refresh(engine) }
      refute allowed?(engine), "the old bundle keeps serving"
      source = engine.metrics["source"]
      assert_equal [dir, 1, "source"], source.values_at("source", "consecutive_failures", "served_from")
      assert_includes source["last_error"], "p.cedar"
      assert_includes engine.metrics_prometheus, "arbiter_bundle_source_consecutive_failures 1\n"
    end
  end

  def test_a_restart_with_the_source_gone_serves_the_cache
    Dir.mktmpdir do |cache|
      source = nil
      with_source do |dir, _write|
        source = dir
        Arbiter::Refresher.new(dir, cache_dir: cache).start
      end
      engine = Arbiter::Refresher.new(source, cache_dir: cache).start
      assert allowed?(engine)
      assert_equal "cache", engine.metrics["source"]["served_from"]
    end
  end

  def test_bad_options_and_remote_sources_without_keys_raise
    assert_raises(Arbiter::InvalidArgumentError) { Arbiter::Refresher.new("oci://nohost") }
    assert_raises(Arbiter::InvalidArgumentError) { Arbiter::Refresher.new(BUNDLE, interval: -1) }
    remote = Arbiter::Refresher.new("https://127.0.0.1:1/bundle.tar.gz")
    error = assert_raises(Arbiter::InvalidArgumentError) { remote.start }
    assert_includes error.message, "must be signed"
  end

  def test_a_forked_child_refreshes_on_its_own
    with_source do |dir, write|
      refresher = Arbiter::Refresher.new(dir)
      engine = refresher.start
      write.call("forbid (principal, action, resource);")
      reader, writer = IO.pipe
      pid = fork do
        reader.close
        writer.write(JSON.generate([refresher.refresh(engine)[:refreshed], allowed?(engine)]))
        exit!(0)
      end
      writer.close
      Process.wait(pid)
      assert_equal ["updated", false], JSON.parse(reader.read)
      assert allowed?(engine), "the parent's engine is its own"
      assert_equal :updated, refresher.refresh(engine)[:refreshed]
    end
  end
end
