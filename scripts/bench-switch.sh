#!/usr/bin/env bash
# The payment switch under load (run by `make bench`): builds the release `fluxrig` and the
# `iso8583_load` generator, starts examples/scenarios/payment_switch_single.yaml with
# `fluxrig rack run` on free loopback ports, and drives it from a separate process at fixed
# offered loads and at saturation; then the same against the ISO 8583 echo host (one TCP hop,
# two codecs, no conductor, no issuer link) as a baseline. Prints one Markdown table.
#
# Knobs (environment): DURATION (10s per run), RATES ("1000 5000 20000"), CONNECTIONS (8),
# WINDOW (closed-loop requests outstanding per connection, 32), MACHINE_IDS (the racks'
# `--machine-ids`, 1000-1007: one machine id mints at most 25,600 ids a second and a switched
# pair takes three, so one would cap the switch near 8,500 pairs/s), CARGO_TARGET_DIR.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
CARGO="${CARGO:-cargo}"
DURATION="${DURATION:-10s}"
RATES="${RATES:-1000 5000 20000}"
CONNECTIONS="${CONNECTIONS:-8}"
WINDOW="${WINDOW:-32}"
MACHINE_IDS="${MACHINE_IDS:-1000-1007}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"

"$CARGO" build --release --example fluxrig --example iso8583_load
FLUXRIG="$TARGET/release/examples/fluxrig"
LOAD="$TARGET/release/examples/iso8583_load"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/bench-switch.XXXXXX")"
RACK_PID=""
stop_rack() {
    if [[ -n "$RACK_PID" ]] && kill -0 "$RACK_PID" 2>/dev/null; then
        kill -INT "$RACK_PID" 2>/dev/null || true
        # Bounded: Ctrl-C drains for at most 5 s; then it is killed.
        for _ in $(seq 1 100); do
            kill -0 "$RACK_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$RACK_PID" 2>/dev/null || true
        wait "$RACK_PID" 2>/dev/null || true
    fi
    RACK_PID=""
}
trap 'stop_rack; rm -rf "$WORK"' EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Starts `fluxrig rack run $1` in the background and waits (at most 30 s) for port $2.
start_rack() {
    local scenario="$1" port="$2" log="$3"
    "$FLUXRIG" rack run "$scenario" --machine-ids "$MACHINE_IDS" >"$log" 2>&1 &
    RACK_PID=$!
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        kill -0 "$RACK_PID" 2>/dev/null || { cat "$log" >&2; echo "the rack exited" >&2; exit 1; }
        sleep 0.1
    done
    cat "$log" >&2
    echo "the rack did not listen on $port within 30 s" >&2
    exit 1
}

RESULTS="$WORK/results.jsonl"
: >"$RESULTS"

# Runs the generator against port $1 with label $2 and rate $3 (0 = saturation).
load() {
    local port="$1" label="$2" rate="$3"
    "$LOAD" --addr "127.0.0.1:$port" --connections "$CONNECTIONS" --window "$WINDOW" \
        --rate "$rate" --duration "$DURATION" --label "$label" | tee "$WORK/run.out" >&2
    tail -n 1 "$WORK/run.out" >>"$RESULTS"
}

series() {
    local port="$1" label="$2"
    # A short warm-up (connections, allocators, caches), not reported.
    "$LOAD" --addr "127.0.0.1:$port" --connections "$CONNECTIONS" --rate 1000 --duration 2s \
        --label warmup >/dev/null
    for rate in $RATES; do
        load "$port" "$label" "$rate"
    done
    load "$port" "$label" 0
}

# The switch: acquirer port and issuer-host port rewritten to free ones.
ACQ="$(free_port)"
ISS="$(free_port)"
sed -e "s/127\.0\.0\.1:18583/127.0.0.1:$ACQ/g" -e "s/127\.0\.0\.1:18584/127.0.0.1:$ISS/g" \
    examples/scenarios/payment_switch_single.yaml >"$WORK/switch.yaml"
echo "== payment_switch_single.yaml on 127.0.0.1:$ACQ (issuer host on $ISS)" >&2
start_rack "$WORK/switch.yaml" "$ACQ" "$WORK/switch.log"
series "$ACQ" switch
stop_rack

# The baseline: the echo host (decode, answer, encode on the same connection), without its
# per-message audit log, so that it is one TCP hop and two codecs.
ECHO="$(free_port)"
python3 - "$ECHO" >"$WORK/echo.yaml" <<'EOF'
import re, sys
text = open("examples/scenarios/iso8583_echo_host.yaml").read()
text = text.replace("127.0.0.1:8583", f"127.0.0.1:{sys.argv[1]}")
text = re.sub(r"\n  - name: audit\n(    .*\n)+", "\n", text)
text = text.replace("  - { from: decode.out, to: audit.in }\n  - { from: audit.out, to: answer.in }\n",
                    "  - { from: decode.out, to: answer.in }\n")
assert "audit" not in text.split("gears:")[1], "the echo host changed: update bench-switch.sh"
print(text)
EOF
echo "== iso8583_echo_host.yaml (no audit log) on 127.0.0.1:$ECHO" >&2
start_rack "$WORK/echo.yaml" "$ECHO" "$WORK/echo.log"
series "$ECHO" echo-host
stop_rack

echo
echo "ISO 8583 round trips, $CONNECTIONS connections, $DURATION per run, $(nproc) cores:"
python3 - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print("| target | offered | matched pairs/s | p50 ms | p99 ms | p99.9 ms | max ms | timeouts | unmatched | crossed | DE 39 |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for r in rows:
    offered = f"{r['rate']:,} TPS" if r["rate"] else f"saturation (window {r['window']}/conn)"
    codes = " ".join(f"{k}:{v}" for k, v in sorted(r["codes"].items()))
    print(f"| {r['label']} | {offered} | {r['matched_per_s']:,.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} "
          f"| {r['p999_ms']:.3f} | {r['max_ms']:.3f} | {r['timeouts']} | {r['unmatched']} | {r['crossed']} | {codes} |")
    if r.get("failure"):
        print(f"|   | note: {r['failure']} | | | | | | | | | |")
EOF
