#!/usr/bin/env python3
"""Prints the codec benchmark as a Markdown table, from criterion's results.

Run `cargo bench --bench codec` first; this reads target/criterion/<op>/<codec>/<shape>/new/
estimates.json and prints, for each operation and shape, the median time of every codec and
its ratio to fluxmsg (how many times slower the other codec is).
"""

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
CODECS = ["fluxmsg", "fluxmsg-borrowed", "ciborium", "cbor4ii", "serde_json", "copy"]
SHAPES = ["minimal", "payment", "nested", "raw64k"]


def median_ns(op: str, codec: str, shape: str):
    path = ROOT / op / codec / shape / "new" / "estimates.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["median"]["point_estimate"]


def fmt(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def main() -> int:
    if not ROOT.exists():
        print("no results: run `cargo bench --bench codec` first", file=sys.stderr)
        return 1
    print("| op | shape | " + " | ".join(CODECS) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in CODECS) + " |")
    for op in ["encode", "decode"]:
        for shape in SHAPES:
            base = median_ns(op, "fluxmsg", shape)
            cells = []
            for codec in CODECS:
                ns = median_ns(op, codec, shape)
                if ns is None:
                    cells.append("")
                elif base and codec != "fluxmsg":
                    cells.append(f"{fmt(ns)} ({ns / base:.2f}x)")
                else:
                    cells.append(fmt(ns))
            print(f"| {op} | {shape} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
