# frozen_string_literal: true

# The source gem. `make ruby-gem` lays out what it packs (this file, the workspace's
# Cargo.toml/Cargo.lock, README.md, core/, fleet/, otlp/, policies/gitlab/ and bindings-ruby/) in
# target/ruby-gem/src and
# runs `gem build` there; `gem install` then compiles the extension with cargo.
Gem::Specification.new do |spec|
  spec.name = "arbiter"
  spec.version = File.read(File.join(__dir__, "Cargo.toml"))[/^version = "([^"]+)"/, 1]
  spec.summary = "Embeddable Cedar policy decisions and token verification, in-process"
  spec.description = "Arbiter evaluates Cedar policies and verifies JWTs and macaroons in-process, " \
                     "with a default GitLab-style policy bundle built in."
  spec.authors = ["The Arbiter developers"]
  spec.license = "Apache-2.0"
  spec.required_ruby_version = ">= 3.1"
  spec.files = Dir.glob(%w[README.md Cargo.toml Cargo.lock core/Cargo.toml core/build.rs core/README.md
                           core/src/**/*.rs fleet/Cargo.toml fleet/src/**/*.rs otlp/Cargo.toml otlp/src/**/*.rs
                           policies/gitlab/**/* bindings-ruby/README.md
                           bindings-ruby/Cargo.toml bindings-ruby/src/**/*.rs
                           bindings-ruby/lib/**/*.rb bindings-ruby/ext/**/*.rb], base: __dir__)
                 .select { |f| File.file?(File.join(__dir__, f)) }
  spec.extra_rdoc_files = ["bindings-ruby/README.md"]
  spec.rdoc_options = ["--main", "bindings-ruby/README.md"]
  spec.require_paths = ["bindings-ruby/lib"]
  spec.extensions = ["bindings-ruby/ext/arbiter_ruby/extconf.rb"]
end
