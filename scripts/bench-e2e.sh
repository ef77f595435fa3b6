#!/usr/bin/env bash
# Runs the end-to-end benchmark (benches/e2e.rs) and keeps its table.
#
#   bash scripts/bench-e2e.sh [OUT]        OUT: where the table goes (default target/bench-e2e.md)
#
# Checks what the benchmark needs (PostgreSQL server binaries, curl, s3s-fs when the S3 store is
# measured; ffmpeg is optional: without it the media are synthetic MP4s and the table says so;
# `bash scripts/test.sh` installs all of them), prints the machine and its load, then runs
# `cargo bench --bench e2e` (release build). The bench starts its own throwaway PostgreSQL
# cluster unless DW_TEST_DATABASE_URL is set, its own s3s-fs, the fixture server and the CDN.
# Every BENCH_* variable passes through (see the header of benches/e2e.rs), e.g.
#   BENCH_QUICK=1 BENCH_STORES=local bash scripts/bench-e2e.sh
set -euo pipefail

ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd -P)"
cd "$ROOT"
OUT="${1:-$ROOT/target/bench-e2e.md}"

die() { printf 'error: %s\n' "$*" >&2; exit 1; }

bash tests/support/pg-cluster.sh bindir >/dev/null 2>&1 || [ -n "${DW_TEST_DATABASE_URL:-}" ] ||
    die "no PostgreSQL server binaries (run bash scripts/test.sh, or set DW_TEST_DATABASE_URL)"
command -v curl >/dev/null || die "curl not found"
case ",${BENCH_STORES:-local,s3}," in
    *,s3,*)
        [ -x "$HOME/.cargo/bin/s3s-fs" ] || command -v s3s-fs >/dev/null ||
            die "s3s-fs not found (run bash scripts/test.sh, or set BENCH_STORES=local)"
        ;;
esac
command -v ffmpeg >/dev/null || echo "note: no ffmpeg; the media will be synthetic MP4s" >&2

avail_gb="$(df -BG --output=avail "${TMPDIR:-/tmp}" | tail -n 1 | tr -dc 0-9)"
[ "${avail_gb:-0}" -ge 10 ] || echo "warning: ${avail_gb} GB free in ${TMPDIR:-/tmp}; 200 MB cells need about 8 GB" >&2

{
    echo "cpu: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -n 1)"
    echo "memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
    echo "disk: $(df -h --output=source,size,avail "${TMPDIR:-/tmp}" | tail -n 1 | tr -s ' ')"
    echo "uptime: $(uptime)"
} >&2

mkdir -p "$(dirname "$OUT")"
cargo bench --bench e2e | tee "$OUT"
echo "table kept in $OUT" >&2
