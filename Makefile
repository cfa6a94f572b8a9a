# Arbiter: `make build` builds every artifact, `make test` runs every test of every language.
# One release build is shared by everything (tests included), so it is compiled once.

CARGO ?= cargo
GO ?= go
# Go lives in /usr/local/go on this machine kind.
export PATH := $(PATH):/usr/local/go/bin
ARBITER := target/release/arbiter

VENV := target/interop-venv
CBINDGEN := target/tools/bin/cbindgen
CBINDGEN_VERSION := 0.29.4
# What a program linking libarbiter.a also needs (rustc --print native-static-libs).
NATIVE_LIBS := -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
C_TEST_FLAGS := -std=c11 -Wall -Wextra -Werror -g -fsanitize=address,undefined -fno-omit-frame-pointer -Iffi-c/include

.PHONY: build test lint fleet-test fork-test fleet-bench rust-test query-test bundle-test interop fips bench header header-check c-test go-test server-test python-build python-test ruby-deps ruby-test rails-test ruby-gem valgrind fuzz fuzz-build fuzz-smoke fault-test miri server-bench

# Also leaves the Ruby extension where `ruby -I target/ruby/lib -r arbiter` finds it. The
# Python extension is maturin's to build (cargo alone would configure pyo3 differently and
# rebuild it each time).
RUBY_EXT := target/ruby/lib/arbiter/arbiter_ruby.so
build: ruby-deps python-build
	$(CARGO) build --release --workspace --exclude arbiter-python
	mkdir -p $(dir $(RUBY_EXT))
	cp target/release/libarbiter_ruby.so $(RUBY_EXT)

# Ruby comes from Debian: ruby-dev, libclang-dev (rb-sys makes its bindings with bindgen), and
# the Ruby libraries the tests and benchmarks use, installed here when missing.
RUBY_DEBS := ruby-dev libclang-dev ruby-minitest ruby-jwt ruby-declarative-policy ruby-sqlite3 \
	ruby-railties ruby-activerecord ruby-pg puma
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The CLI over the default bundle's decision tests under valgrind: no invalid access, no leak
# (lazily built statics are "possibly lost" by design and not counted).
valgrind: build
	@command -v valgrind >/dev/null || \
		($(SUDO) apt-get update -q && \
		 $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends valgrind)
	valgrind -q --error-exitcode=1 --leak-check=full --show-possibly-lost=no \
		--errors-for-leak-kinds=definite,indirect \
		target/release/arbiter test

ruby-deps:
	@dpkg -s $(RUBY_DEBS) >/dev/null 2>&1 || \
		($(SUDO) apt-get update -q && \
		 $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(RUBY_DEBS))

# The Python wheel (pyo3 + maturin) in target/wheels.
PY_BUILD_VENV := target/py-build-venv
python-build: $(PY_BUILD_VENV)/.installed
	rm -f target/wheels/arbiter-*.whl
	$(PY_BUILD_VENV)/bin/maturin build --release -m bindings-python/Cargo.toml -o target/wheels

$(PY_BUILD_VENV)/.installed: bindings-python/requirements-dev.txt
	python3 -m venv $(PY_BUILD_VENV)
	$(PY_BUILD_VENV)/bin/pip install -q -r bindings-python/requirements-dev.txt
	touch $@

# The wheel installed into a fresh virtual environment: pytest, and mypy --strict on the stubs.
python-test: build
	rm -rf target/py-test-venv
	python3 -m venv target/py-test-venv
	target/py-test-venv/bin/pip install -q target/wheels/arbiter-*.whl -r bindings-python/requirements-dev.txt
	cd bindings-python && ../target/py-test-venv/bin/pytest -q tests
	target/py-test-venv/bin/mypy --strict bindings-python/tests/typing_example.py

# minitest: the API, every error class, threads, the GVL, fork, GC.stress and GC.compact, a
# million decisions, the shared error spec and the bundle tests through the typed calls.
ruby-test: build
	bindings-ruby/test/run bindings-ruby/test/test_*.rb

# The gem in a real Rails application (bindings-ruby/test/rails, Debian's Rails 6.1): the
# railtie, the declarative_policy bridge in every mode, relations from list queries, reloads in
# forked workers (Puma's among them) and `rake arbiter:diff`; on SQLite, then on PostgreSQL.
rails-test: build
	bindings-ruby/test/run bindings-ruby/test/rails/test_rails.rb
	tests/postgres/with-postgres.sh bindings-ruby/test/run bindings-ruby/test/rails/test_rails.rb

# The source gem: what it packs laid out in target/ruby-gem/src (the workspace trimmed to core
# and the extension), `gem build`, then `gem install` (which compiles it with cargo, sharing
# this target directory) into target/ruby-gem/home, and a decision through the installed gem.
RUBY_GEM_SRC := target/ruby-gem/src
ruby-gem: build
	rm -rf target/ruby-gem
	mkdir -p $(RUBY_GEM_SRC)/core $(RUBY_GEM_SRC)/fleet $(RUBY_GEM_SRC)/otlp $(RUBY_GEM_SRC)/policies $(RUBY_GEM_SRC)/bindings-ruby
	sed 's/^members = .*/members = ["core", "fleet", "otlp", "bindings-ruby"]/' Cargo.toml > $(RUBY_GEM_SRC)/Cargo.toml
	cp Cargo.lock README.md bindings-ruby/arbiter.gemspec $(RUBY_GEM_SRC)/
	cp -r core/Cargo.toml core/build.rs core/README.md core/src $(RUBY_GEM_SRC)/core/
	cp -r fleet/Cargo.toml fleet/src $(RUBY_GEM_SRC)/fleet/
	cp -r otlp/Cargo.toml otlp/src $(RUBY_GEM_SRC)/otlp/
	cp -r policies/gitlab $(RUBY_GEM_SRC)/policies/
	cp -r bindings-ruby/Cargo.toml bindings-ruby/README.md bindings-ruby/src bindings-ruby/lib bindings-ruby/ext $(RUBY_GEM_SRC)/bindings-ruby/
	cd $(RUBY_GEM_SRC) && gem build arbiter.gemspec
	CARGO_TARGET_DIR=$(CURDIR)/target gem install --local --no-document \
		--install-dir target/ruby-gem/home $(RUBY_GEM_SRC)/arbiter-*.gem
	# Cargo names the gem's core and extension as it names the workspace's (path crates hash
	# relative to their workspace), so their fingerprints now point at the gem's copies of the
	# sources: drop them, or later edits in core/ and bindings-ruby/ would go unnoticed.
	grep -la ruby-gem target/release/.fingerprint/*/dep-* | xargs -r dirname | xargs -r rm -rf
	GEM_HOME=$(CURDIR)/target/ruby-gem/home GEM_PATH=$(CURDIR)/target/ruby-gem/home ruby -e \
		'require "arbiter"; d = Arbiter::Engine.gitlab_default.authorize(principal: {type: "Gitlab::User", id: "alice"}, action: {type: "Gitlab::Action", id: "push_code"}, resource: {type: "Gitlab::Project", id: "10"}, context: {admin_mode: false}); abort d.inspect unless d.reasons == ["role-developer"]; puts "installed gem: #{$$LOADED_FEATURES.grep(/arbiter_ruby/).first}: #{d.inspect}"'

test: lint rust-test query-test bundle-test valgrind header-check c-test go-test server-test python-test ruby-test rails-test ruby-gem fleet-test fork-test interop fips fault-test miri fuzz-smoke

lint: ruby-deps
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

# Unit, engine, CLI, property and conformance tests (the conformance test reads
# ../shared/conformance/cedar-integration-tests, or ARBITER_CONFORMANCE_DIR).
rust-test: build
	$(CARGO) test --release --workspace --exclude arbiter-python

# List queries against a real PostgreSQL server (Debian's, started for the run and stopped after,
# tests/postgres/with-postgres.sh): the generated SQL selects exactly what the checks allow. The
# same test on SQLite runs in rust-test.
query-test: build
	tests/postgres/with-postgres.sh $(CARGO) test --release -p arbiter --test it query:: -- --ignored

# The default bundle as the CLI runs it, from its directory and embedded, and the Docs
# benchmark bundle's decision tests.
bundle-test: build
	$(ARBITER) validate --bundle policies/gitlab
	$(ARBITER) test --bundle policies/gitlab
	$(ARBITER) test --bundle benches/bundles/docs
	$(ARBITER) test

# Tokens minted by independent implementations (PyJWT, pymacaroons) verify in Arbiter, and
# Arbiter's in them; decision log records decoded by opentelemetry-proto (protobuf and JSON).
interop: build $(VENV)/.installed
	$(VENV)/bin/pytest -q tests/interop

$(VENV)/.installed: tests/interop/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r tests/interop/requirements.txt
	touch $@

# The FIPS build (aws-lc's FIPS module; needs Go and cmake) and the token tests under it.
fips:
	$(CARGO) test --release -p arbiter --features fips --lib
	$(CARGO) test --release -p arbiter --features fips --test fips

# The C header, generated by a pinned cbindgen (never by build.rs).
$(CBINDGEN):
	$(CARGO) install cbindgen --version $(CBINDGEN_VERSION) --locked --root target/tools

header: $(CBINDGEN)
	$(CBINDGEN) --config ffi-c/cbindgen.toml --crate arbiter-ffi --output ffi-c/include/arbiter.h ffi-c

header-check: $(CBINDGEN)
	$(CBINDGEN) --config ffi-c/cbindgen.toml --crate arbiter-ffi --output target/arbiter.h.generated ffi-c
	diff -u ffi-c/include/arbiter.h target/arbiter.h.generated || \
		(echo "ffi-c/include/arbiter.h is stale: run make header and commit it" >&2; exit 1)

# C programs against the checked-in header and both libraries, under ASan and UBSan; the
# header also compiles as C11 and as C++.
c-test: build
	cc -std=c11 -Wall -Wextra -Werror -pedantic -fsyntax-only -x c ffi-c/include/arbiter.h
	c++ -std=c++17 -Wall -Wextra -Werror -fsyntax-only -x c++ ffi-c/include/arbiter.h
	cc $(C_TEST_FLAGS) ffi-c/tests/test_ffi.c -o target/test_ffi_shared -Ltarget/release -larbiter -lpthread
	cc $(C_TEST_FLAGS) ffi-c/tests/test_ffi.c -o target/test_ffi_static target/release/libarbiter.a $(NATIVE_LIBS)
	LD_LIBRARY_PATH=target/release ./target/test_ffi_shared policies/gitlab
	./target/test_ffi_static policies/gitlab

# The Go package: vet, gofmt, the tests with cgocheck and with the race detector, and a program
# built outside the repository with the documented linking flags.
go-test: build
	cd bindings-go && $(GO) vet ./...
	cd bindings-go && test -z "$$(gofmt -l .)"
	cd bindings-go && GODEBUG=cgocheck=1 ../tests/postgres/with-postgres.sh $(GO) test -count=1 ./...
	cd bindings-go && ../tests/postgres/with-postgres.sh $(GO) test -race -count=1 ./...
	bindings-go/link_test.sh

# `arbiter serve` over loopback against OPA's server with the same rule in Rego
# (benches/server): servers on CPU 0, the load generator on CPU 1. Writes target/server-bench.json.
OPA_VERSION := v1.22.3
server-bench: build
	@test -x target/tools/bin/opa || GOBIN=$(CURDIR)/target/tools/bin CGO_ENABLED=0 \
		$(GO) install -tags opa_no_wasm github.com/open-policy-agent/opa@$(OPA_VERSION)
	cd benches/server && $(GO) build -o ../../target/server-bench .
	taskset -c 1 target/server-bench -root .

# Bundle refreshes over loopback: one that finds nothing new, and a 10 MB bundle swapped in
# while another thread decides. Writes target/fleet-bench.json.
fleet-bench: build
	$(CARGO) run --release -q -p arbiter-benches --bin fleet_bench > target/fleet-bench.json

# `arbiter serve` through Envoy's own ext_authz client (go-control-plane), each answer checked
# against the same request decided in-process by the Go binding. Its AuthZEN and operations
# tests are Rust tests (server/tests), in rust-test.
server-test: build
	cd tests/envoy && $(GO) vet ./...
	cd tests/envoy && test -z "$$(gofmt -l .)"
	cd tests/envoy && $(GO) test -count=1 ./...

# Bundles through a real OCI registry (Debian's docker-registry, started on loopback by each
# test) and a third-party client (oras, built from the Go module proxy): pushed by one, pulled
# by the other, by tag and by digest; a refresher following a tag (cli/tests/registry.rs). The
# HTTP and directory sources are tested in rust-test (fleet/tests).
ORAS_VERSION := v1.3.6
ORAS := target/tools/bin/oras
# Memory a preforked worker stops sharing once it decides, in Rust and in Ruby
# (benches/src/bin/fork_share.rs, benches/ruby/fork_share.rb): a parent holding the default
# bundle and one with 100,000 more entities forks 8 workers of 100,000 decisions each; the
# engine may make under 1 MiB of each worker's memory private.
fork-test: build
	target/release/fork_share --check > target/fork-share.json
	rm -rf target/fork-bundle
	target/release/fork_share --write-bundle target/fork-bundle
	ruby -I bindings-ruby/lib -I target/ruby/lib benches/ruby/fork_share.rb target/fork-bundle --check \
		> target/fork-share-rb.json

fleet-test: build
	@command -v docker-registry >/dev/null || \
		($(SUDO) apt-get update -q && \
		 $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-registry)
	@test -x $(ORAS) || GOBIN=$(CURDIR)/target/tools/bin CGO_ENABLED=0 \
		$(GO) install oras.land/oras/cmd/oras@$(ORAS_VERSION)
	$(CARGO) test --release -p arbiter-cli --test registry -- --ignored

# A panic injected inside the engine as Rust, C, Go, Ruby and Python see it: a deny with an
# `internal` error, a failed reload that keeps the old bundle. The hook is the test-only
# `fault-injection` feature, built apart in target/fault so no shipped artifact carries it.
FAULT := --profile fault --target-dir target/fault
FAULT_LIB := target/fault/fault
FAULT_FEATURES := --features arbiter-ffi/fault-injection,arbiter-ruby/fault-injection
fault-test: ruby-deps $(PY_BUILD_VENV)/.installed
	$(CARGO) clippy $(FAULT) -p arbiter -p arbiter-ffi -p arbiter-ruby -p arbiter-python $(FAULT_FEATURES),arbiter-python/fault-injection \
		--all-targets -- -D warnings
	$(CARGO) test $(FAULT) -p arbiter --features arbiter/fault-injection --lib fault::
	$(CARGO) build $(FAULT) -p arbiter-ffi -p arbiter-ruby $(FAULT_FEATURES)
	cc $(C_TEST_FLAGS) ffi-c/tests/test_faults.c -o target/fault/test_faults $(FAULT_LIB)/libarbiter.a $(NATIVE_LIBS)
	./target/fault/test_faults
	cd bindings-go && CGO_LDFLAGS="-L$(CURDIR)/$(FAULT_LIB)" $(GO) test -count=1 -race \
		-tags arbiter_fault_injection -run InjectedPanics .
	mkdir -p target/fault/ruby/lib/arbiter
	cp $(FAULT_LIB)/libarbiter_ruby.so target/fault/ruby/lib/arbiter/arbiter_ruby.so
	ruby -w -I bindings-ruby/lib -I target/fault/ruby/lib bindings-ruby/test/fault/test_panics.rb
	rm -rf target/fault/wheels target/fault/py-venv
	CARGO_TARGET_DIR=target/fault $(PY_BUILD_VENV)/bin/maturin build --profile fault \
		--features fault-injection -m bindings-python/Cargo.toml -o target/fault/wheels
	python3 -m venv target/fault/py-venv
	target/fault/py-venv/bin/pip install -q target/fault/wheels/arbiter-*.whl -r bindings-python/requirements-dev.txt
	cd bindings-python && ../target/fault/py-venv/bin/pytest -q tests_fault

# Miri over the C ABI's unsafe code (ffi-c's tests: pointers in and out, frees, threads deciding
# during a reload). Core forbids unsafe code and its token tests run aws-lc's C code, which
# Miri cannot; the bindings need a Ruby or Python interpreter. Miri needs nightly: the
# components are added when missing. Isolation is off because a decision reads the clock.
miri:
	[ "$$(rustup component list --toolchain nightly --installed 2>/dev/null | grep -c '^miri\|^rust-src')" = 2 ] || \
		rustup component add --toolchain nightly miri rust-src || \
		rustup toolchain install nightly --profile minimal --component miri,rust-src
	MIRIFLAGS=-Zmiri-disable-isolation $(CARGO) +nightly miri test -p arbiter-ffi --target-dir target/miri

# Fuzzing (cargo-fuzz, libFuzzer with AddressSanitizer; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain take the sanitizer flags). Targets: the request JSON path, bundle loading, JWTs,
# macaroons and the C ABI. Seeds come from the default bundle and ../shared/conformance; what a
# run finds is kept in target/fuzz/corpus, crashes in fuzz/artifacts. `make fuzz` runs every
# target for FUZZ_SECONDS each (`make fuzz FUZZ_SECONDS=3600 FUZZ_TARGETS=jwt`); `make test`
# runs each for FUZZ_SMOKE_SECONDS.
CARGO_FUZZ := target/tools/bin/cargo-fuzz
CARGO_FUZZ_VERSION := 0.13.2
FUZZ_TARGETS ?= request_json bundle_load jwt macaroon c_abi query http_request authzen bundle_archive
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS := 30
FUZZ := PATH="$(CURDIR)/target/tools/bin:$$PATH" RUSTC_BOOTSTRAP=1 $(CARGO) fuzz
FUZZ_FLAGS := --debug-assertions --target-dir target/fuzz

$(CARGO_FUZZ):
	$(CARGO) install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked --root target/tools

fuzz-build: $(CARGO_FUZZ)
	$(FUZZ) build $(FUZZ_FLAGS)
	python3 fuzz/seeds.py target/fuzz/corpus

fuzz: fuzz-build
	for t in $(FUZZ_TARGETS); do \
		$(FUZZ) run $(FUZZ_FLAGS) $$t target/fuzz/corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -print_final_stats=1 || exit 1; \
	done

fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS)

# Criterion benchmarks against the peers, then BENCHMARKS.md rewritten from this run.
bench: build
	$(CARGO) bench -p arbiter-benches
	$(CARGO) run --release -q -p arbiter-benches --bin rss > target/rss.json
	cd benches/go && $(GO) test -run '^$$' -bench . -benchtime 2s | tee ../../target/go-bench.txt
	rm -rf target/py-bench-venv
	python3 -m venv target/py-bench-venv
	target/py-bench-venv/bin/pip install -q target/wheels/arbiter-*.whl -r benches/python/requirements.txt
	target/py-bench-venv/bin/python benches/python/bench.py
	ruby -I bindings-ruby/lib -I target/ruby/lib benches/ruby/bench.rb
	ruby -I bindings-ruby/lib -I target/ruby/lib benches/ruby/rails_bench.rb
	tests/postgres/with-postgres.sh $(CARGO) run --release -q -p arbiter-benches --bin query_bench > target/query-bench.json
	$(MAKE) server-bench
	$(MAKE) fleet-bench
	$(MAKE) fork-test
	python3 benches/report.py > BENCHMARKS.md
	cat BENCHMARKS.md
