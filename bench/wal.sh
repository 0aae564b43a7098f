#!/usr/bin/env bash
# bench/wal.sh -- the WAL's fsync'd appends/s and ack latency at 1, 16 and 128
# concurrent appenders (256-byte entries), with appends per fdatasync (group
# commit); then, on the same disk and in the same run, etcd's put throughput at
# the same connection counts (the anchor script), and the ratios.
#
#   bench/wal.sh                          # SECS=10 per point
#   SECS=5 SKIP_ETCD=1 bench/wal.sh       # WAL only
#
# The WAL directory goes under /var/tmp, or under /tmp when /tmp is not tmpfs
# (fsync on tmpfs is a no-op and would measure nothing); the script prints the
# filesystem. etcd's figure includes its HTTP/gRPC-gateway path and its Raft
# (one member), so the ratio overstates what the WAL alone buys: it says how
# far the log is from being the bottleneck of a tribune write.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SECS="${SECS:-10}"
CONCURRENCY="${CONCURRENCY:-1 16 128}"
ANCHOR="${ANCHOR:-/work/shared/bench/anchors/etcd3.sh}"

base=/var/tmp
if [ "$(stat -f -c %T /tmp)" != "tmpfs" ]; then base=/tmp; fi
fs_line="$(df -T "$base" | tail -1 | awk '{print $1" ("$2") mounted on "$7}')"
echo "WAL directory under $base: $fs_line"
echo "loadavg before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

cd "$ROOT"
cargo bench -p tribune --bench wal --no-run >/dev/null 2>&1 || cargo bench -p tribune --bench wal --no-run
wal_out="$(WAL_BENCH_DIR="$base" WAL_BENCH_SECS="$SECS" WAL_BENCH_CONCURRENCY="$CONCURRENCY" \
  cargo bench -q -p tribune --bench wal 2>/dev/null)"
echo "$wal_out"
echo

[ -n "${SKIP_ETCD:-}" ] && exit 0
etcd_md="$(CLUSTER_SIZES=1 REPS=1 DURATION="$SECS" WRITE_CONNS="$CONCURRENCY" READ_MODES=" " \
  PREFILL_SECS=3 MAX_LOAD_WAIT="${MAX_LOAD_WAIT:-60}" QUIET_MAX_WAIT="${QUIET_MAX_WAIT:-30}" \
  DATA_ROOT="$base/tribune-wal-bench-etcd" bash "$ANCHOR")"
echo "etcd anchor (1 member, data under $base):"
echo "$etcd_md"
echo
# Ratios: WAL appends/s over etcd puts/s at the same concurrency.
echo "| concurrency | WAL appends/s | etcd puts/s | WAL / etcd |"
echo "|---:|---:|---:|---:|"
for c in $CONCURRENCY; do
  wal_rps="$(echo "$wal_out" | awk -F'|' -v c="$c" '$2+0==c && $3 ~ /[0-9]/ {r=$3; gsub(/ /,"",r); print r}')"
  etcd_rps="$(echo "$etcd_md" | awk -F'|' -v c="$c" '{m=$4; gsub(/ /,"",m); if (m=="write" && $5+0==c) {r=$6; gsub(/ /,"",r); print r}}')"
  ratio="$(awk -v w="$wal_rps" -v e="$etcd_rps" 'BEGIN{ if (e+0>0) printf "%.1f", w/e; else print "NA" }')"
  echo "| $c | $wal_rps | $etcd_rps | $ratio |"
done
