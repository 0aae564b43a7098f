# shellcheck shell=bash
# bench/gossip-driver-tribune.sh -- the shared serf.sh anchor's driver for tribune servers
# (sourced by ../shared/bench/anchors/serf.sh; contract in gossip-driver-serf.sh's header).
#
#   AGENT_DRIVER=$PWD/bench/gossip-driver-tribune.sh EVENTS_PER_REP=0 ../shared/bench/anchors/serf.sh
#
# Each agent is `tribune agent -server` (the only agents that gossip today) with no
# -bootstrap-expect, so no Raft cluster forms: the processes gossip on the LAN pool and idle
# otherwise. Membership is polled over /v1/agent/members (consul-http backend). User events
# do not travel over gossip yet, so run with EVENTS_PER_REP=0.
# Ports: agent I gossips on 127.0.0.1:$((TRIBUNE_LAN_BASE+I)), HTTP on TRIBUNE_HTTP_BASE+I,
# server RPC on TRIBUNE_RPC_BASE+I.
: "${TRIBUNE_BIN:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/release/tribune}"
: "${TRIBUNE_LAN_BASE:=27000}"
: "${TRIBUNE_HTTP_BASE:=28000}"
: "${TRIBUNE_RPC_BASE:=29000}"
DRV_POLL_BACKEND=consul-http
DRV_EVENT_DETECT=poll

drv_require() {
  [ -x "$TRIBUNE_BIN" ] || { echo "build first: cargo build --release ($TRIBUNE_BIN)" >&2; exit 2; }
  require curl
}
drv_name() { echo "tb$1"; }
drv_poll_addr() { echo "127.0.0.1:$((TRIBUNE_HTTP_BASE+$1))"; }
drv_start() {
  local i=$1
  "$TRIBUNE_BIN" agent -server -node "tb$i" -data-dir "$RUN_DIR/data-$i" -bind 127.0.0.1 \
    -serf-lan-port $((TRIBUNE_LAN_BASE+i)) -http-port $((TRIBUNE_HTTP_BASE+i)) \
    -server-port $((TRIBUNE_RPC_BASE+i)) -dns-port -1 -log-level warn \
    >"$RUN_DIR/agent-$i.log" 2>&1 &
  DRV_PID=$!
  local _
  for _ in $(seq 1 100); do
    curl -sf -m 1 "http://127.0.0.1:$((TRIBUNE_HTTP_BASE+i))/v1/agent/self" >/dev/null && return 0
    sleep 0.05
  done
}
drv_join() {
  curl -sf -m 10 -X PUT "http://127.0.0.1:$((TRIBUNE_HTTP_BASE+$1))/v1/agent/join/127.0.0.1:$((TRIBUNE_LAN_BASE+$2))" >/dev/null
}
drv_fire_event() {
  curl -sf -m 5 -X PUT --data "$2" "http://127.0.0.1:$((TRIBUNE_HTTP_BASE+1))/v1/event/fire/$1" \
    | sed -n 's/.*"ID":"\([^"]*\)".*/\1/p'
}
