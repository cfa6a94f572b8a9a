# frozen_string_literal: true

# The test application under Puma (test_rails.rb starts it in cluster mode with preload_app!):
# seeded and set to enforce in the master, before the workers fork. Project 1 is public, so its
# check by user 1 (active) is an allow until the test closes it.
require_relative "app"

GitlabSlice.seed(users: 4, projects: 16)
Project.where(id: 1).update_all(visibility_level: 20)
Arbiter::Rails.settings.mode = :enforce
run Rails.application
