# frozen_string_literal: true

# A panic inside Arbiter, injected through the test-only hook of an extension built with the
# `fault-injection` feature (`make fault-test`): every way of deciding answers a deny with an
# `internal` error, from many threads; a reload that panics raises Arbiter::InternalError and
# keeps the old bundle; disarmed, the engine decides as before.

require_relative "../test_helper"

class TestPanics < Minitest::Test
  include Helpers

  def assert_internal_deny(decision)
    refute decision.allowed?
    assert_empty decision.reasons
    assert_equal ["internal"], decision.errors.map(&:kind)
    assert_includes decision.errors.first.message, "fault injected while deciding"
  end

  def test_injected_panics_are_denies_and_reload_errors
    e = Arbiter::Engine.from_files(bundle('@id("all") permit (principal, action, resource);'))
    assert e.authorize(**REQUEST).allowed?

    e.inject_panics(true)
    8.times.map { Thread.new { 20.times { assert_internal_deny(e.authorize(**REQUEST)) } } }.each(&:join)
    e.authorize_many([REQUEST, REQUEST]).each { |d| assert_internal_deny(d) }
    answer = JSON.parse(e.authorize_json(JSON.generate(REQUEST)))
    assert_equal "deny", answer["decision"]
    assert_equal "internal", answer["errors"][0]["kind"]

    error = assert_raises(Arbiter::InternalError) { e.reload_from_files(bundle("forbid (principal, action, resource);")) }
    assert_equal 900, error.code
    assert_includes error.message, "fault injected while reloading"

    e.inject_panics(false)
    d = e.authorize(**REQUEST)
    assert d.allowed?
    assert_equal ["all"], d.reasons
  end
end
