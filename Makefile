# Arbiter: `make build` builds every artifact, `make test` runs every test of every language.
# One release build is shared by everything (tests included), so it is compiled once.

CARGO ?= cargo
ARBITER := target/release/arbiter

VENV := target/interop-venv

.PHONY: build test lint rust-test bundle-test interop fips bench

build:
	$(CARGO) build --release --workspace

test: lint rust-test bundle-test interop fips

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

# Unit, engine, CLI, property and conformance tests (the conformance test reads
# ../shared/conformance/cedar-integration-tests, or ARBITER_CONFORMANCE_DIR).
rust-test: build
	$(CARGO) test --release --workspace

# The default bundle as the CLI runs it, from its directory and embedded.
bundle-test: build
	$(ARBITER) validate --bundle policies/gitlab
	$(ARBITER) test --bundle policies/gitlab
	$(ARBITER) test

# Tokens minted by independent implementations (PyJWT, pymacaroons) verify in Arbiter, and
# Arbiter's in them.
interop: build $(VENV)/.installed
	$(VENV)/bin/pytest -q tests/interop

$(VENV)/.installed: tests/interop/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r tests/interop/requirements.txt
	touch $@

# The FIPS build (aws-lc's FIPS module; needs Go and cmake) and the token tests under it.
fips:
	$(CARGO) test --release -p arbiter --features fips --lib --test tokens --test gitlab_tokens

# Criterion benchmarks against the peers, then BENCHMARKS.md rewritten from this run.
bench:
	$(CARGO) bench -p arbiter-benches
	python3 benches/report.py > BENCHMARKS.md
	cat BENCHMARKS.md
