#!/usr/bin/env bash
# bench/http-kv.sh -- KV PUT/GET req/s and p99 of `tribune agent -dev`
# side by side with a 1-member etcd, in one run, through the shared anchor
# script (../shared/bench/anchors/etcd3.sh: wrk, closed loop, uniform keys).
#
#   bench/http-kv.sh                 # defaults: 16 and 128 connections, 10 s, 1 rep
#   DURATION=20 REPS=3 bench/http-kv.sh
#
# Needs: wrk, curl, jq, bc, etcd-server, etcd-client (Debian packages), and a
# release build (`cargo build --release`). Loopback only. Prints both summary
# tables; report the ratios, not absolute numbers (the machine is shared).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ANCHORS="${ANCHORS:-$ROOT/../shared/bench/anchors}"
BIN="$ROOT/target/release/tribune"
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
export DURATION="${DURATION:-10}" REPS="${REPS:-1}" PREFILL_SECS="${PREFILL_SECS:-5}"
export WRITE_CONNS="${WRITE_CONNS:-16 128}" READ_CONNS="${READ_CONNS:-16 128}"
export CLUSTER_SIZES=1
PORT="${PORT:-18511}"

echo "## etcd (1 member)"
READ_MODES="linearizable serializable" KV_API=etcd3 "$ANCHORS/etcd3.sh"

echo
echo "## tribune agent -dev"
KV_API=consul READ_MODES="${TRIBUNE_READ_MODES:-default stale}" \
  TARGET_URL="http://127.0.0.1:$PORT" \
  SERVER_START_CMD="'$BIN' agent -dev -http-port $PORT -log-level warn >\$DATA_ROOT/tribune.log 2>&1 & echo \$! >> \$PID_FILE" \
  "$ANCHORS/etcd3.sh"
