# frozen_string_literal: true

require "json"
require "tmpdir"
require "minitest/autorun"
require "arbiter"

ROOT = File.expand_path("../..", __dir__)
BUNDLE = File.join(ROOT, "policies", "gitlab")

module Helpers
  def engine
    # One engine for the whole run, as a Rails process would hold it.
    @@engine ||= Arbiter::Engine.from_bundle_dir(BUNDLE) # rubocop:disable Style/ClassVars
  end

  # A check request. In entities.json, alice is a Developer of project 10, bob (blocked) too, and
  # eve a Reporter; no one is a member of project 3.
  def user_request(user, action, project, **extra)
    {
      principal: { type: "Gitlab::User", id: user },
      action: { type: "Gitlab::Action", id: action },
      resource: { type: "Gitlab::Project", id: project },
      context: { admin_mode: false },
    }.merge(extra)
  end

  # An in-memory bundle: one policy file plus any other files.
  def bundle(policy = "permit (principal, action, resource);", **extra)
    { "p.cedar" => policy }.merge(extra.transform_keys(&:to_s))
  end

  REQUEST = {
    principal: { type: "U", id: "1" },
    action: { type: "Action", id: "x" },
    resource: { type: "R", id: "1" },
  }.freeze
end
