# frozen_string_literal: true

# Builds the extension with cargo and writes the Makefile RubyGems runs (clean, all, install).
# Debian ships no rb_sys gem, so this does the part of its mkmf helper that the gem needs.
require "mkmf"
require "rbconfig"
require "shellwords"

root = File.expand_path("../../..", __dir__)
cargo = ENV.fetch("CARGO", "cargo")
find_executable(cargo) or abort "arbiter: building it needs cargo (Rust 1.85 or later) on PATH"
target_dir = ENV.fetch("CARGO_TARGET_DIR", File.join(root, "target"))
built = File.join(target_dir, "release", "libarbiter_ruby.#{RbConfig::CONFIG['SOEXT']}")
extension = "arbiter_ruby.#{RbConfig::CONFIG['DLEXT']}"
destination = File.join(RbConfig::CONFIG["sitearchdir"], "arbiter")
# RubyGems sets SOURCE_DATE_EPOCH while installing; the C parts of the build (cc) take a new value
# as a change and would rebuild what a cargo build outside RubyGems compiled in a shared
# CARGO_TARGET_DIR. Nothing in the build reads the date.
build = ["env", "-u", "SOURCE_DATE_EPOCH", cargo, "build", "--release", "--lib", "--manifest-path", File.join(root, "bindings-ruby", "Cargo.toml"),
         "--target-dir", target_dir]

File.write("Makefile", <<~MAKEFILE)
  all: #{extension}

  #{extension}:
  \t#{build.shelljoin}
  \tcp #{built.shellescape} #{extension}

  install: #{extension}
  \tmkdir -p #{destination.shellescape}
  \tcp #{extension} #{destination.shellescape}/

  clean:
  \trm -f #{extension}

  .PHONY: all install clean
MAKEFILE
