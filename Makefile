# The one entry point. `make help` lists the targets.

CARGO ?= cargo
FUZZ_SECONDS ?= 60

.PHONY: help test lint doc bench bench-build run fuzz

help:
	@echo "make test    - every test of the workspace (what CI runs, with make lint)"
	@echo "make lint    - rustfmt and clippy, warnings denied"
	@echo "make doc     - the API docs, warnings denied"
	@echo "make bench   - the criterion suites (cargo bench --bench codec)"
	@echo "make run     - the main job on the embedded default (for now: the codec demo)"
	@echo "make fuzz    - fuzz the fluxMsg decoder for FUZZ_SECONDS seconds (default 60)"

test:
	$(CARGO) test --workspace --all-features

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --all-features

bench:
	$(CARGO) bench --bench codec

bench-build:
	$(CARGO) bench --no-run

run:
	$(CARGO) run --release --example fluxrig -- demo
