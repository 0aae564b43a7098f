#!/usr/bin/env bash
# bench/catchup.sh -- a follower far behind catches up from a large state store by one
# snapshot install, without looping (Consul's pain point: followers that re-receive a large
# snapshot forever).
#
# 3 servers (s1 bootstraps and leads). s3 is SIGSTOPped, STORE_MB of values (VALUE_KB each)
# are written through the leader with a small snapshot threshold so the leader snapshots and
# purges its log behind s3; s3 is SIGCONTinued. Measured: seconds from SIGCONT until s3 has
# applied the leader's last index, how many snapshots s3 installed (1 = no loop), the peak
# RSS of s3 and of the leader (VmHWM), and the snapshot file's size.
#
#   cargo build --release && bench/catchup.sh            # STORE_MB=1024
#   STORE_MB=256 bench/catchup.sh                        # quicker
#
# Needs: curl, jq, a release build. Loopback only.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/target/release/tribune"
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
STORE_MB="${STORE_MB:-1024}"
VALUE_KB="${VALUE_KB:-256}"
WRITERS="${WRITERS:-8}"
BASE="${BASE:-19600}"   # server i: HTTP BASE+10i, RPC +1, LAN +2, WAN +3
WORK="${WORK:-/tmp/tribune-bench-catchup}"
CATCHUP_TIMEOUT="${CATCHUP_TIMEOUT:-600}"

rm -rf "$WORK"; mkdir -p "$WORK"
pids=()
stop_all() { for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done; }
trap stop_all EXIT

for i in 1 2 3; do
  args=(agent -server -node "s$i" -data-dir "$WORK/s$i" -dns-port -1 -log-level info
    -http-port $((BASE+10*i)) -server-port $((BASE+10*i+1)) -serf-lan-port $((BASE+10*i+2))
    -serf-wan-port $((BASE+10*i+3))
    -hcl 'raft_snapshot_threshold = 512' -hcl 'raft_trailing_logs = 128')
  if [ "$i" = 1 ]; then args+=(-bootstrap-expect 1); else args+=(-retry-join "127.0.0.1:$((BASE+12))"); fi
  "$BIN" "${args[@]}" >"$WORK/s$i.log" 2>&1 &
  pids+=($!)
done
leader_url="http://127.0.0.1:$((BASE+10))"
for _ in $(seq 1 120); do
  n=$(curl -s "$leader_url/v1/status/peers" | jq 'length' 2>/dev/null || echo 0)
  [ "$n" = 3 ] && break
  sleep 0.5
done
[ "$n" = 3 ] || { echo "cluster did not form" >&2; exit 1; }
s3=${pids[2]}
kill -STOP "$s3"

# Values are random (incompressible) bytes, base64 in the request body.
count=$(( STORE_MB * 1024 / VALUE_KB ))
head -c $((VALUE_KB * 1024)) /dev/urandom > "$WORK/value"
echo "writing $count values of $VALUE_KB KiB (${STORE_MB} MiB) with s3 stopped..." >&2
t0=$(date +%s.%N)
# A write that fails (no leader for a moment) is retried; failures are counted.
: > "$WORK/failures"
seq 1 "$count" | xargs -P "$WRITERS" -I{} sh -c '
  for try in 1 2 3 4 5 6 7 8 9 10; do
    curl -sf -o /dev/null -X PUT --data-binary @"$1" "$2/v1/kv/big/$3" && exit 0
    echo "$3" >> "$4"; sleep 1
  done; exit 1' _ "$WORK/value" "$leader_url" {} "$WORK/failures" || true
failures=$(wc -l < "$WORK/failures")
t1=$(date +%s.%N)
stat_of() { curl -s "$1/v1/agent/self" | jq -r ".Stats.raft.$2"; }
target=$(stat_of "$leader_url" last_log_index)
snap_index=$(stat_of "$leader_url" last_snapshot_index)
echo "wrote in $(echo "$t1 - $t0" | bc) s; leader last index $target, snapshot at $snap_index" >&2

s3_url="http://127.0.0.1:$((BASE+30))"
kill -CONT "$s3"
c0=$(date +%s.%N)
applied=0
while :; do
  applied=$(stat_of "$s3_url" applied_index 2>/dev/null || echo 0)
  [ "${applied:-0}" -ge "$target" ] 2>/dev/null && break
  if [ "$(echo "$(date +%s.%N) - $c0 > $CATCHUP_TIMEOUT" | bc)" = 1 ]; then
    echo "s3 did not catch up in ${CATCHUP_TIMEOUT}s (applied $applied of $target)" >&2; break
  fi
  sleep 0.2
done
c1=$(date +%s.%N)
installs=$(grep -c "installed a snapshot" "$WORK/s3.log" || true)
hwm() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
snap_bytes=$(stat -c %s "$WORK/s1/raft/snapshots/snapshot" 2>/dev/null || echo 0)
echo
echo "| measure | value |"
echo "|---|---:|"
echo "| store written | ${STORE_MB} MiB in $count values |"
echo "| write time | $(printf '%.1f' "$(echo "$t1 - $t0" | bc)") s ($failures failed attempts, retried) |"
echo "| snapshot file | $(( snap_bytes / 1024 / 1024 )) MiB |"
echo "| s3 catch-up after SIGCONT | $(printf '%.1f' "$(echo "$c1 - $c0" | bc)") s |"
echo "| s3 applied / target index | $applied / $target |"
echo "| snapshots installed by s3 | $installs |"
echo "| peak RSS leader / s3 | $(hwm "${pids[0]}") / $(hwm "$s3") MiB |"
