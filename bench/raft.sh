#!/usr/bin/env bash
# bench/raft.sh -- a 3-server tribune cluster side by side with a 3-member
# etcd, in one run, through the shared anchor (../shared/bench/anchors/
# etcd3.sh: wrk, closed loop, uniform keys, fsync on for both):
#   1. KV PUT req/s and p50/p99 at 1, 16, 128 connections; default,
#      consistent and stale GET at 16 and 128 (etcd: linearizable and
#      serializable), both driven at the leader;
#   2. leader failover: kill -9 of the leader, time to the first write
#      acknowledged by a survivor (FAILOVER_TRIALS times, median);
#   3. disk use after WRITES_TOTAL (1,000,000) writes to 10,000 keys,
#      with the Raft log's entries per fsync under load.
#
#   bench/raft.sh                         # defaults: DURATION=10 REPS=1
#   DURATION=20 REPS=3 bench/raft.sh
#   PHASES="failover disk" bench/raft.sh  # only some phases
#
# Needs: wrk, curl, jq, etcd, etcdctl, python3, a release build
# (`cargo build --release`). Loopback only. Report ratios, not absolute
# numbers: the machine is shared.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ANCHORS="${ANCHORS:-$ROOT/../shared/bench/anchors}"
BIN="$ROOT/target/release/tribune"
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
export DURATION="${DURATION:-10}" REPS="${REPS:-1}" PREFILL_SECS="${PREFILL_SECS:-5}"
export WRITE_CONNS="${WRITE_CONNS:-1 16 128}" READ_CONNS="${READ_CONNS:-16 128}"
export CLUSTER_SIZES=3
PHASES="${PHASES:-throughput failover disk}"
FAILOVER_TRIALS="${FAILOVER_TRIALS:-5}"
WRITES_TOTAL="${WRITES_TOTAL:-1000000}"
BASE="${BASE:-18600}"   # server i: HTTP BASE+10i, RPC BASE+10i+1, LAN BASE+10i+2, WAN BASE+10i+3
WORK="${WORK:-/tmp/tribune-bench-raft}"

# Starts servers 1..3 under $1 (data root; their PIDs go to $1/pids, which
# is the anchor's PID_FILE when $1 is its DATA_ROOT); s1 bootstraps alone and leads,
# s2 and s3 join it, so the leader's HTTP port is known in advance.
start_cluster() {
  local root=$1 i
  for i in 1 2 3; do
    local args=(agent -server -node "s$i" -data-dir "$root/s$i" -dns-port -1
      -http-port $((BASE+10*i)) -server-port $((BASE+10*i+1)) -serf-lan-port $((BASE+10*i+2)) -serf-wan-port $((BASE+10*i+3))
      -log-level warn)
    if [ "$i" = 1 ]; then args+=(-bootstrap-expect 1); else args+=(-retry-join "127.0.0.1:$((BASE+12))"); fi
    "$BIN" "${args[@]}" >"$root/s$i.log" 2>&1 &
    echo $! >> "$root/pids"
  done
  for _ in $(seq 1 120); do
    local n; n=$(curl -s "http://127.0.0.1:$((BASE+10))/v1/status/peers" | jq 'length' 2>/dev/null || echo 0)
    [ "$n" = 3 ] && return 0
    sleep 0.5
  done
  echo "tribune cluster did not form" >&2; exit 1
}
export -f start_cluster
export BIN BASE

if [[ " $PHASES " == *" throughput "* ]]; then
  echo "## etcd (3 members)"
  READ_MODES="linearizable serializable" KV_API=etcd3 "$ANCHORS/etcd3.sh"
  echo
  echo "## tribune (3 servers)"
  KV_API=consul READ_MODES="default consistent stale" \
    TARGET_URL="http://127.0.0.1:$((BASE+10))" \
    SERVER_START_CMD='start_cluster "$DATA_ROOT"' \
    "$ANCHORS/etcd3.sh"
fi

stop_all() { [ -f "$WORK/pids" ] && xargs -r kill -9 < "$WORK/pids" 2>/dev/null || true; rm -f "$WORK/pids"; }
trap stop_all EXIT

if [[ " $PHASES " == *" failover "* ]]; then
  echo
  echo "## failover: kill -9 of the leader -> first acknowledged write (ms)"
  times=()
  for t in $(seq 1 "$FAILOVER_TRIALS"); do
    stop_all; rm -rf "$WORK"; mkdir -p "$WORK"
    start_cluster "$WORK"
    leader=$(curl -s "http://127.0.0.1:$((BASE+10))/v1/status/leader" | tr -d '"')
    i=$(( (${leader##*:} - BASE - 1) / 10 ))
    pid=$(sed -n "${i}p" "$WORK/pids")
    other=$(( i % 3 + 1 ))
    ms=$(python3 - "$pid" "http://127.0.0.1:$((BASE+10*other))/v1/kv/failover" <<'PY'
import os, signal, sys, time, urllib.request
pid, url = int(sys.argv[1]), sys.argv[2]
time.sleep(1)
t0 = time.monotonic()
os.kill(pid, signal.SIGKILL)
while True:
    try:
        req = urllib.request.Request(url, data=b"x", method="PUT")
        if urllib.request.urlopen(req, timeout=10).read().strip() == b"true":
            break
    except Exception:
        time.sleep(0.005)
print(int((time.monotonic() - t0) * 1000))
PY
)
    echo "trial $t: leader s$i killed, write through s$other after $ms ms"
    times+=("$ms")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print "median failover: " a[int((NR+1)/2)] " ms (min " a[1] ", max " a[NR] ")"}'
fi

if [[ " $PHASES " == *" disk "* ]]; then
  echo
  echo "## disk use after $WRITES_TOTAL writes to 10,000 keys"
  stop_all; rm -rf "$WORK"; mkdir -p "$WORK"
  start_cluster "$WORK"
  url="http://127.0.0.1:$((BASE+10))"
  start=$(date +%s)
  while :; do
    last=$(curl -s "$url/v1/operator/raft/configuration" | jq '.Servers[0].LastIndex')
    [ "$last" -ge "$WRITES_TOTAL" ] && break
    KV_MODE=write KV_KEYS=10000 KV_VALUE_SIZE=256 KV_THREADS=2 KV_LABEL=disk \
      wrk -t2 -c128 -d10s --timeout 10s -s "$ANCHORS/kv-consul.lua" "$url" | grep '^RESULT' || true
  done
  secs=$(( $(date +%s) - start ))
  echo "raft index $last after ${secs}s"
  curl -s "$url/v1/agent/self" | jq -r '.Stats.raft | "leader WAL under 128 connections: \(.wal_records) records in \(.wal_fsyncs) fsyncs = \(.wal_records_per_fsync) per fsync"' 
  for i in 1 2 3; do
    echo "s$i: $(du -sh "$WORK/s$i" | cut -f1) total; log $(du -sh "$WORK/s$i/raft/wal" | cut -f1); snapshot $(du -sh "$WORK/s$i/raft/snapshots" | cut -f1)"
  done
  echo "live data: 10,000 keys x 256 B values = 2.6 MB"
fi
