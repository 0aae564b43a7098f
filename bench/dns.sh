#!/usr/bin/env bash
# bench/dns.sh -- DNS queries/s and p50/p99 latency of `tribune agent -dev`
# side by side with NSD, in one run, through the shared anchor script
# (../shared/bench/anchors/dns.sh: dnsperf, UDP, 127.0.0.1, closed loop with
# up to 100 queries outstanding).
#
#   bench/dns.sh                              # defaults: 10 s passes, 1 rep
#   DURATION=20 LAT_DURATION=10 REPS=3 bench/dns.sh
#   SAME_QUERIES=1 bench/dns.sh               # + tribune on NSD's own queries
#
# Run 1, NSD 4 with the anchor's built-in zone: node001..node100.node.dc1.consul
#   A 127.1.0.N and svc01..svc20.service.consul SRV 1 1 80NN nodeNNN.node.dc1.consul.
#   Queries: the 100 node names (A) and the 20 service names (SRV).
# Run 2, tribune (target/release/tribune agent -dev -dns-port P -http-port H),
#   filled through /v1/catalog/register with the same nodes (node001..node100
#   at 127.1.0.N), each running one instance of service `web` (ID web-NNN,
#   port 8000+N, one passing check); plus svc01..svc20 on node001..node020
#   (port 80NN, passing) so that NSD's zone exists in tribune too.
#   Queries (QUERY_PRESET=consul-web): `web.service.consul` A and SRV, i.e.
#   Consul's hot path: health filter + shuffle over 100 instances. dnsperf
#   sends no EDNS, so each answer carries at most 3 records (Consul's
#   udp_answer_limit), 512 bytes at most; NSD's answers carry 1 record.
# Run 3 (SAME_QUERIES=1): tribune on NSD's own query files (node A, svcNN
#   SRV): the like-for-like comparison.
#
# Report ratios, not absolute numbers: the machine (2 cores) is shared and
# dnsperf runs on it too. Needs: nsd, dnsperf, dig (dnsutils), curl, bc
# (Debian packages) and a release build (`cargo build --release`). Every
# process this script starts is stopped by PID.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ANCHORS="${ANCHORS:-$ROOT/../shared/bench/anchors}"
BIN="${BIN:-$ROOT/target/release/tribune}"
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
for c in nsd dnsperf dig curl bc; do
  command -v "$c" >/dev/null 2>&1 || { echo "missing command: $c (apt-get install nsd dnsperf dnsutils curl bc)" >&2; exit 2; }
done
export DURATION="${DURATION:-10}" LAT_DURATION="${LAT_DURATION:-5}" REPS="${REPS:-1}"
NSD_PORT="${NSD_PORT:-15353}"
DNS_PORT_TRIBUNE="${DNS_PORT_TRIBUNE:-18600}"
HTTP_PORT="${HTTP_PORT:-18501}"
INSTANCES=100
SERVICES=20
SAME_QUERIES="${SAME_QUERIES:-0}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tribune-bench-dns.XXXXXX")"
TRIBUNE_PID=""
cleanup() {
  if [ -n "$TRIBUNE_PID" ]; then
    kill -TERM "$TRIBUNE_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$TRIBUNE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$TRIBUNE_PID" 2>/dev/null || true
    wait "$TRIBUNE_PID" 2>/dev/null || true
    TRIBUNE_PID=""
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ------------------------------------------------------------------ NSD
echo "## NSD (anchor's built-in zone: 100 node A, 20 service SRV)"
echo
DNS_PORT="$NSD_PORT" "$ANCHORS/dns.sh"

# ------------------------------------------------------------------ tribune
start_tribune() {
  log "starting $BIN agent -dev -dns-port $DNS_PORT_TRIBUNE -http-port $HTTP_PORT"
  "$BIN" agent -dev -dns-port "$DNS_PORT_TRIBUNE" -http-port "$HTTP_PORT" -log-level warn \
    >"$WORK/tribune.log" 2>&1 &
  TRIBUNE_PID=$!
  local i
  for i in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$HTTP_PORT/v1/status/leader" >/dev/null 2>&1; then return 0; fi
    kill -0 "$TRIBUNE_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "tribune did not start; log:" >&2; cat "$WORK/tribune.log" >&2; exit 1
}

# register NODE ADDR SERVICE ID PORT
register() {
  local body out
  body=$(printf '{"Node":"%s","Address":"%s","Service":{"ID":"%s","Service":"%s","Port":%d},"Check":{"CheckID":"%s-check","Name":"%s","Status":"passing","ServiceID":"%s"}}' \
    "$1" "$2" "$4" "$3" "$5" "$4" "$4" "$4")
  out=$(curl -sf -X PUT --data "$body" "http://127.0.0.1:$HTTP_PORT/v1/catalog/register") \
    || { echo "register $4 on $1 failed" >&2; exit 1; }
  [ "$out" = true ] || { echo "register $4 on $1: $out" >&2; exit 1; }
}

fill_catalog() {
  local i
  for i in $(seq 1 "$INSTANCES"); do
    register "$(printf 'node%03d' "$i")" "127.1.0.$i" web "$(printf 'web-%03d' "$i")" $((8000 + i))
  done
  for i in $(seq 1 "$SERVICES"); do
    register "$(printf 'node%03d' "$i")" "127.1.0.$i" "$(printf 'svc%02d' "$i")" "$(printf 'svc%02d' "$i")" $((8000 + i))
  done
  # Sanity: all instances healthy and served (over TCP: no UDP cap).
  local n
  n=$(dig +tcp +short +time=2 +tries=1 -p "$DNS_PORT_TRIBUNE" @127.0.0.1 web.service.consul A | grep -c '^127\.1\.0\.' || true)
  [ "$n" = "$INSTANCES" ] || { echo "tribune serves $n of $INSTANCES web instances over TCP" >&2; exit 1; }
  n=$(dig +short +time=2 +tries=1 -p "$DNS_PORT_TRIBUNE" @127.0.0.1 svc07.service.consul SRV)
  [ "$n" = "1 1 8007 node007.node.dc1.consul." ] || { echo "svc07 SRV from tribune: '$n'" >&2; exit 1; }
  log "tribune serves $INSTANCES web instances and $SERVICES svcNN services on 127.0.0.1:$DNS_PORT_TRIBUNE"
}

VERSION=$("$BIN" version 2>/dev/null | sed -n 's/^[^0-9]*\([0-9][0-9.]*\).*/\1/p' | head -1)
TARGET="tribune-${VERSION:-dev}"

start_tribune
fill_catalog

echo
echo "## tribune agent -dev (web.service.consul: $INSTANCES instances)"
echo
TARGET_NAME="$TARGET" DNS_TARGET=external DNS_PORT="$DNS_PORT_TRIBUNE" QUERY_PRESET=consul-web \
  "$ANCHORS/dns.sh"

if [ "$SAME_QUERIES" = 1 ]; then
  echo
  echo "## tribune agent -dev (NSD's queries: node A, svcNN SRV)"
  echo
  TARGET_NAME="$TARGET" DNS_TARGET=external DNS_PORT="$DNS_PORT_TRIBUNE" \
    "$ANCHORS/dns.sh"
fi
