#!/usr/bin/env python3
"""The workspace's rules that no compiler checks, as CI gates (.ci/run calls this script).

    scripts/check-workspace.py msrv      the MSRV: the docs state the declared one; rustc is not older
    scripts/check-workspace.py deps      crate edges: only snake uses async-nats, only gears wasmtime,
                                         no tokio under fluxmsg or idgen
    scripts/check-workspace.py doc-tests every member's lib.rs denies warnings in its doc tests
    scripts/check-workspace.py unsafe    the files that allow unsafe_code are those CONTRIBUTING.md lists
    scripts/check-workspace.py logs      log messages are sentences: a capital letter, a period, no
                                         interpolated values (those go in key/value fields)
    scripts/check-workspace.py features  `cargo check` of each feature combination in FEATURE_CHECKS
    scripts/check-workspace.py           all six, in that order

Each check prints what it checked and exits non-zero with the offending file, edge or command.
"""

import json
import pathlib
import re
import shlex
import subprocess
import sys
import time
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Docs that must state the MSRV (with its number); any other doc that states one must agree.
DOCS_STATING_MSRV = ["README.md", "CONTRIBUTING.md"]
OTHER_DOCS = ["ARCHITECTURE.md"]
# How a doc states a minimum Rust version: the number each pattern captures must be the MSRV.
# "MSRV: the workspace's `rust-version`." (no number) states it by reference and always agrees.
MSRV_STATEMENTS = [
    re.compile(r"\bMSRV\b[^\n\d]{0,20}\b(1\.\d+)"),
    re.compile(r"rust-version`?\s*(?:=\s*\"|\(|is\s+)(1\.\d+)"),
    re.compile(r"\b(1\.\d+)(?:\.\d+)? or newer"),
    re.compile(r"\bdeclares (1\.\d+)"),
]

# Normal (and build) dependencies that only one member may have; dev-dependencies are free (the
# umbrella's benches use async-nats and wasmtime directly as baselines).
ONLY_DEPENDENT = {"async-nats": {"snake"}, "wasmtime": {"gears"}}
# Crates that stay free of an async runtime, whatever their features.
NO_TOKIO_UNDER = ["fluxmsg", "idgen"]

# Every member's lib.rs carries it; `make test` runs the doc tests.
DOC_TESTS_DENY_WARNINGS = "#![doc(test(attr(deny(warnings))))]"

# Every feature combination that CI checks, as (package, features); each runs as
# `cargo check -p <package> --no-default-features [--features <features>]`, which checks the
# library target only, so dev-dependencies neither build nor lend their features
# (`cargo hack --each-feature --no-dev-deps check`, without installing cargo-hack).
# The default and all-features combinations are clippy's (.ci/run), so they are not repeated.
FEATURE_CHECKS = [
    ("fluxmsg", []),  # no json: as sdk and the wasm guests use it
    ("fluxmsg", ["json"]),
    ("sdk", []),  # neither side: the ABI constants alone
    ("sdk", ["host"]),
    ("sdk", ["guest"]),  # what a wasm guest builds (make guests builds it for wasm32 too)
    ("gears", []),  # no wasm: no wasmtime
    ("testkit", []),  # as the guests' tests use it
    ("testkit", ["gears"]),
    ("fluxrig", ["json"]),
    ("mixer-lib", []),  # the memory store alone: no sqlx
    ("mixer-lib", ["sqlite"]),
    ("mixer-lib", ["postgres"]),
]
# Features that only switch tests on: the library is the same with or without them, and
# `make test` (all features) runs those tests.
TEST_ONLY_FEATURES = {
    ("snake", "nats-server-tests"),
    ("rack-lib", "nats-server-tests"),
    ("gears", "nats-server-tests"),  # coatcheck and the durable valet over a real nats-server
    ("fluxrig", "nats-server-tests"),  # the chaos test of tests/cli.rs
    ("mixer-lib", "postgres-tests"),  # the SQL store tests on a PostgreSQL server they start
    ("mixer-lib", "nats-server-tests"),  # a mixer and its agents over a real nats-server
}
# Features that are a member's default, checked by clippy's default build.
# (Not sdk's `host`: in a workspace build the guests turn `guest` on too, so it has its own check.)
DEFAULT_FEATURES_CHECKED_BY_CLIPPY = {
    ("gears", "wasm"),
}


def fail(message: str) -> None:
    sys.stdout.flush()
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def run(command: list[str]) -> str:
    """Runs `command` at the root and returns its standard output; fails when it fails."""
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        fail(f"`{shlex.join(command)}` failed (exit status {done.returncode})")
    return done.stdout


def cargo_metadata(*args: str) -> dict:
    return json.loads(run(["cargo", "metadata", "--format-version", "1", *args]))


def members(metadata: dict) -> list[dict]:
    ids = set(metadata["workspace_members"])
    return sorted(
        (p for p in metadata["packages"] if p["id"] in ids), key=lambda p: p["name"]
    )


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def check_msrv(metadata: dict) -> None:
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    msrv = manifest["workspace"]["package"]["rust-version"]
    print(f"msrv: Cargo.toml declares rust-version {msrv}")

    for package in members(metadata):
        if package["rust_version"] != msrv:
            fail(
                f"{package['manifest_path']}: rust-version {package['rust_version']!r}, not the "
                f"workspace's {msrv} (write `rust-version.workspace = true`)"
            )

    lib_docs = [
        pathlib.Path(target["src_path"]).relative_to(ROOT)
        for package in members(metadata)
        for target in package["targets"]
        if "lib" in target["kind"] or "cdylib" in target["kind"]
    ]
    docs = DOCS_STATING_MSRV + OTHER_DOCS + sorted({str(p) for p in lib_docs})
    for doc in docs:
        path = ROOT / doc
        if not path.exists():
            continue
        stated = [
            (text.count("\n", 0, m.start()) + 1, m.group(1))
            for text in [path.read_text()]
            for pattern in MSRV_STATEMENTS
            for m in pattern.finditer(text)
        ]
        for line, version in stated:
            if version != msrv:
                fail(f"{doc}:{line}: states MSRV {version}, but Cargo.toml declares {msrv}")
        if doc in DOCS_STATING_MSRV and not stated:
            fail(f"{doc}: does not state the MSRV ({msrv})")
        if stated:
            print(f"msrv: {doc} states {msrv}")

    out = run(["rustc", "--version"])
    m = re.match(r"rustc (\d+\.\d+\.\d+)", out)
    if not m:
        fail(f"cannot read rustc's version from {out!r}")
    installed = m.group(1)
    if version_tuple(installed) < version_tuple(msrv):
        fail(f"rustc {installed} is older than the MSRV {msrv}")
    if version_tuple(installed)[:2] == version_tuple(msrv)[:2]:
        print(f"msrv: rustc {installed} is the MSRV, so every build of this run is an MSRV build")
    else:
        print(
            f"msrv: rustc {installed} is newer than the MSRV {msrv}; "
            f"`cargo +{msrv} check --workspace` is the MSRV build where that toolchain is installed"
        )


def check_deps(metadata: dict) -> None:
    names = {p["id"]: p["name"] for p in metadata["packages"]}
    bad = []
    for node in metadata["resolve"]["nodes"]:
        for dep in node["deps"]:
            dep_name = names[dep["pkg"]]
            allowed = ONLY_DEPENDENT.get(dep_name)
            if allowed is None or names[node["id"]] in allowed:
                continue
            kinds = {k["kind"] or "normal" for k in dep["dep_kinds"]} - {"dev"}
            for kind in sorted(kinds):
                bad.append(
                    f"{names[node['id']]} -> {dep_name} ({kind} dependency): only "
                    f"{', '.join(sorted(allowed))} may depend on {dep_name}"
                )
    if bad:
        fail("forbidden dependency edges:\n  " + "\n  ".join(bad))
    for dep_name, allowed in ONLY_DEPENDENT.items():
        print(f"deps: only {', '.join(sorted(allowed))} depends on {dep_name}")

    for leaf in NO_TOKIO_UNDER:
        tree = run(
            ["cargo", "tree", "-p", leaf, "-e", "normal", "--all-features", "--target", "all",
             "--prefix", "none", "--format", "{p}"]
        )
        if any(line.split(" ")[0] == "tokio" for line in tree.splitlines()):
            path = subprocess.run(
                ["cargo", "tree", "-p", leaf, "-e", "normal", "--all-features", "--target",
                 "all", "-i", "tokio"],
                cwd=ROOT, stdout=subprocess.PIPE, text=True,
            ).stdout
            fail(f"{leaf} depends on tokio; the leaves have no async runtime:\n{path}")
        print(f"deps: no tokio under {leaf}")


def check_doc_tests(metadata: dict) -> None:
    for package in members(metadata):
        for target in package["targets"]:
            if "lib" not in target["kind"] and "cdylib" not in target["kind"]:
                continue
            path = pathlib.Path(target["src_path"])
            if DOC_TESTS_DENY_WARNINGS not in path.read_text():
                fail(
                    f"{path.relative_to(ROOT)}: add `{DOC_TESTS_DENY_WARNINGS}` after the crate "
                    f"docs, so that its doc tests compile with warnings denied"
                )
    print(f"doc-tests: every member's lib.rs has {DOC_TESTS_DENY_WARNINGS}")


def check_unsafe(metadata: dict) -> None:
    section = re.search(r"^## unsafe\n(.*?)(?=^## |\Z)", (ROOT / "CONTRIBUTING.md").read_text(),
                        re.MULTILINE | re.DOTALL)
    if not section:
        fail("CONTRIBUTING.md has no `## unsafe` section listing the files that allow unsafe_code")
    listed = set(re.findall(r"^- `([^`]+\.rs)`", section.group(1), re.MULTILINE))
    found = set()
    for path in ROOT.rglob("*.rs"):
        relative = path.relative_to(ROOT)
        if relative.parts[0] == "target" or "target" in relative.parts or any(
            part.startswith(".") for part in relative.parts
        ):
            continue
        if re.search(r"allow\(\s*unsafe_code\s*\)", path.read_text()):
            found.add(str(relative))
    for path in sorted(found - listed):
        fail(f"{path} allows unsafe_code but CONTRIBUTING.md's `unsafe` section does not list it")
    for path in sorted(listed - found):
        fail(f"CONTRIBUTING.md's `unsafe` section lists {path}, which does not allow unsafe_code")
    print(f"unsafe: {len(found)} files allow unsafe_code, as CONTRIBUTING.md lists")


LOG_MACRO = re.compile(r"\b(?:tracing::)?(?:info|warn|error|debug|trace)!\(")
STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


def log_calls(text: str):
    """Yields (line, arguments) of each tracing event macro in `text`."""
    for m in LOG_MACRO.finditer(text):
        i, depth, in_string = m.end(), 1, False
        while depth and i < len(text):
            c = text[i]
            if in_string:
                if c == "\\":
                    i += 1
                elif c == '"':
                    in_string = False
            elif c == '"':
                in_string = True
            elif c in "([{":
                depth += 1
            elif c in ")]}":
                depth -= 1
            i += 1
        yield text.count("\n", 0, m.start()) + 1, text[m.end() : i - 1]


def check_logs(metadata: dict) -> None:
    bad, count = [], 0
    for package in members(metadata):
        src = pathlib.Path(package["manifest_path"]).parent / "src"
        for path in sorted(src.rglob("*.rs")):
            for line, args in log_calls(path.read_text()):
                count += 1
                strings = STRING.findall(args)
                message = strings[-1] if strings else ""
                if not re.match(r"[A-Z]", message) or not message.endswith(".") or "{" in message:
                    bad.append(f"{path.relative_to(ROOT)}:{line}: {message!r}")
    if bad:
        fail(
            "log messages start with a capital letter and end with a period; values go in "
            "fields (`error = %e`), not in the message:\n  " + "\n  ".join(bad)
        )
    print(f"logs: {count} log messages are sentences with their values in fields")


def check_features(metadata: dict) -> None:
    covered = {(p, f) for p, fs in FEATURE_CHECKS for f in fs}
    covered |= TEST_ONLY_FEATURES | DEFAULT_FEATURES_CHECKED_BY_CLIPPY
    for package in members(metadata):
        for feature in package["features"]:
            if feature != "default" and (package["name"], feature) not in covered:
                fail(
                    f"{package['name']}'s feature {feature!r} is not in FEATURE_CHECKS of "
                    f"{pathlib.Path(__file__).relative_to(ROOT)}: add the combinations that use it"
                )
    for package, features in FEATURE_CHECKS:
        command = ["cargo", "check", "-p", package, "--no-default-features"]
        if features:
            command += ["--features", ",".join(features)]
        print(f"features: {shlex.join(command)}", flush=True)
        start = time.monotonic()
        done = subprocess.run(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        sys.stderr.write(done.stderr)
        if done.returncode != 0:
            fail(f"`{shlex.join(command)}` failed: a feature combination does not build")
        # Warnings are denied as in clippy's runs (cargo replays a cached crate's warnings);
        # through the output rather than RUSTFLAGS, which would rebuild every dependency.
        if re.search(r"^warning: .* generated \d+ warnings?", done.stderr, re.MULTILINE):
            fail(f"`{shlex.join(command)}` warns: a feature combination has unused code")
        print(f"features: ok in {time.monotonic() - start:.0f} s", flush=True)


CHECKS = {
    "msrv": check_msrv,
    "deps": check_deps,
    "doc-tests": check_doc_tests,
    "unsafe": check_unsafe,
    "logs": check_logs,
    "features": check_features,
}


def main(argv: list[str]) -> int:
    unknown = [a for a in argv if a not in CHECKS]
    if unknown:
        print(__doc__, file=sys.stderr)
        fail(f"unknown check {unknown[0]!r}")
    metadata = cargo_metadata("--all-features")
    sys.stdout.reconfigure(line_buffering=True)
    for name in argv or list(CHECKS):
        CHECKS[name](metadata)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
