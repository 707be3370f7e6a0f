#!/usr/bin/env bash
# Makes sure PostgreSQL's server binaries (initdb, postgres) exist for the tests that start a
# server of their own (mixer-lib's feature `postgres-tests`, through testkit::postgres),
# installing Debian's `postgresql` package when they are missing.
#
# Idempotent: does nothing when FLUXRIG_POSTGRES_BIN names a directory with both binaries, or
# when they are on PATH or in /usr/lib/postgresql/<version>/bin (where Debian puts them, off
# PATH). testkit looks in the same places, so nothing needs exporting.
# Installing the package may also create and start Debian's own cluster on port 5432; the
# tests do not use it (they run their servers as `nobody` on free ports in temporary
# directories).

set -euo pipefail

say() { echo "setup-postgres: $*"; }

has_bins() { [[ -x "$1/initdb" && -x "$1/postgres" ]]; }

find_bins() {
    if [[ -n "${FLUXRIG_POSTGRES_BIN:-}" ]]; then
        has_bins "$FLUXRIG_POSTGRES_BIN" && echo "$FLUXRIG_POSTGRES_BIN"
        return
    fi
    local dir
    local IFS=:
    for dir in $PATH; do
        if [[ -n "$dir" ]] && has_bins "$dir"; then
            echo "$dir"
            return
        fi
    done
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -rn); do
        if has_bins "$dir"; then
            echo "$dir"
            return
        fi
    done
}

if [[ -n "${FLUXRIG_POSTGRES_BIN:-}" ]] && ! has_bins "$FLUXRIG_POSTGRES_BIN"; then
    say "FLUXRIG_POSTGRES_BIN=$FLUXRIG_POSTGRES_BIN has no initdb and postgres; unset it or fix it" >&2
    exit 1
fi
if dir="$(find_bins)" && [[ -n "$dir" ]]; then
    say "using $dir ($("$dir/postgres" --version)); nothing to do"
    exit 0
fi

if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    start=$SECONDS
    say "installing Debian's postgresql package with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
    if dir="$(find_bins)" && [[ -n "$dir" ]]; then
        say "installed $dir ($("$dir/postgres" --version)) in $((SECONDS - start)) s"
        exit 0
    fi
    say "apt-get installed postgresql, but initdb and postgres are still not found" >&2
    exit 1
fi

say "could not install PostgreSQL: install its server yourself (apt-get install postgresql, or your system's package) and put initdb and postgres on PATH or set FLUXRIG_POSTGRES_BIN to their directory" >&2
exit 1
