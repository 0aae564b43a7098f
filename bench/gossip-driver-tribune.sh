# shellcheck shell=bash
# bench/gossip-driver-tribune.sh -- the shared serf.sh anchor's driver for tribune agents
# (sourced by ../shared/bench/anchors/serf.sh; contract in gossip-driver-serf.sh's header).
#
#   AGENT_DRIVER=$PWD/bench/gossip-driver-tribune.sh ../shared/bench/anchors/serf.sh
#
# Agent 1 is a server (`-server -bootstrap`, a Raft cluster of one); every other agent is a
# client agent, as in a Consul datacenter. Membership is polled over /v1/agent/members
# (consul-http backend); events are fired at agent 1 (`PUT /v1/event/fire`) and detected by
# polling each agent's /v1/event/list.
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
  local role=()
  [ "$i" -eq 1 ] && role=(-server -bootstrap)
  "$TRIBUNE_BIN" agent "${role[@]}" -node "tb$i" -data-dir "$RUN_DIR/data-$i" -bind 127.0.0.1 \
    -serf-lan-port $((TRIBUNE_LAN_BASE+i)) -http-port $((TRIBUNE_HTTP_BASE+i)) \
    -server-port $((TRIBUNE_RPC_BASE+i)) -serf-wan-port -1 -dns-port -1 -log-level warn \
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
