#!/usr/bin/env bash
# Runs the whole test suite, installing what the tests need on a fresh machine.
#
#   bash scripts/test.sh [extra cargo-nextest args]
#
# - installs missing test dependencies (one `ensure_*` function each; apt needs root);
# - starts one throwaway PostgreSQL cluster (tests/support/pg-cluster.sh) and exports
#   DW_TEST_DATABASE_URL; the cluster is stopped and removed on exit;
# - runs `cargo nextest run` over all targets and features (falls back to `cargo test` when
#   cargo-nextest cannot be installed), then the doc tests.
#
# Exits with the nextest status (or, if that passed, the doc-test status).
set -euo pipefail

ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd -P)"
cd "$ROOT"

PG_CLUSTER="$ROOT/tests/support/pg-cluster.sh"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

APT_UPDATED=0
# apt_install PKG... : install Debian packages (root only; `apt-get update` at most once per run).
apt_install() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# --- dependencies -------------------------------------------------------------------------------

ensure_postgres() {
    if bash "$PG_CLUSTER" bindir >/dev/null 2>&1; then
        return 0
    fi
    if ! is_root; then
        die "PostgreSQL server binaries (initdb, pg_ctl) not found. Install them, e.g.
    sudo apt-get install -y postgresql
and re-run: bash scripts/test.sh"
    fi
    say "installing postgresql"
    apt_install postgresql
    bash "$PG_CLUSTER" bindir >/dev/null || die "postgresql was installed but initdb is still not found"
}

# ffmpeg makes the real, playable MP4 files the validation tests check.
ensure_ffmpeg() {
    if command -v ffmpeg >/dev/null 2>&1; then
        return 0
    fi
    if ! is_root; then
        die "ffmpeg not found. Install it, e.g.
    sudo apt-get install -y ffmpeg
and re-run: bash scripts/test.sh"
    fi
    say "installing ffmpeg"
    apt_install ffmpeg
}

# s3s-fs: a small S3-compatible server (checks SigV4 signatures) for the object-store tests.
# 0.14.1 is the newest release that builds with this toolchain.
ensure_s3s_fs() {
    if command -v s3s-fs >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/s3s-fs" ]; then
        return 0
    fi
    say "installing s3s-fs (an S3-compatible test server; compiles for a few minutes)"
    cargo install s3s-fs@0.14.1 --locked --features binary >&2 || die "could not install s3s-fs"
}

USE_NEXTEST=1
ensure_nextest() {
    if cargo nextest --version >/dev/null 2>&1; then
        return 0
    fi
    say "installing cargo-nextest"
    if cargo install cargo-nextest --locked >&2; then
        return 0
    fi
    say "cargo-nextest could not be installed; falling back to cargo test"
    USE_NEXTEST=0
}

# --- services -----------------------------------------------------------------------------------

PG_DIR=""
start_postgres() {
    say "starting postgresql"
    PG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/dw-test-pg.XXXXXX")"
    # $$ as the watch pid: if this script is killed hard, the watchdog still removes the cluster.
    DW_TEST_DATABASE_URL="$(bash "$PG_CLUSTER" start "$PG_DIR" "$$")"
    export DW_TEST_DATABASE_URL
    say "postgresql at $DW_TEST_DATABASE_URL"
}

stop_postgres() {
    if [ -n "$PG_DIR" ]; then
        say "stopping postgresql"
        bash "$PG_CLUSTER" stop "$PG_DIR" >/dev/null 2>&1 || true
        PG_DIR=""
    fi
}

cleanup() { stop_postgres; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- main ---------------------------------------------------------------------------------------

has_lib() {
    [ -f "$ROOT/src/lib.rs" ] || grep -q '^\[lib\]' "$ROOT/Cargo.toml"
}

main() {
    command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust (https://rustup.rs)"

    ensure_postgres
    ensure_ffmpeg
    ensure_s3s_fs
    ensure_nextest

    start_postgres

    export RUST_BACKTRACE=1
    # CI (if set) is inherited by cargo and the tests.

    local status=0 doc_status=0
    say "cargo build --benches (benchmarks must keep compiling)"
    cargo build --benches --all-features || status=$?
    if [ "$USE_NEXTEST" -eq 1 ]; then
        say "cargo nextest run"
        cargo nextest run --workspace --lib --bins --tests --all-features --no-fail-fast "$@" || status=$?
    else
        say "cargo test"
        cargo test --workspace --lib --bins --tests --all-features --no-fail-fast "$@" || status=$?
    fi

    if has_lib; then
        say "cargo test --doc"
        cargo test --doc --all-features || doc_status=$?
    fi

    if [ "$status" -ne 0 ]; then
        say "tests failed (status $status)"
        exit "$status"
    fi
    if [ "$doc_status" -ne 0 ]; then
        say "doc tests failed (status $doc_status)"
        exit "$doc_status"
    fi
    say "all tests passed"
}

main "$@"
