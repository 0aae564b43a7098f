# shellcheck shell=bash
# bench/gossip-driver-serf-consul-tags.sh -- serf agents carrying the tags a Consul (or
# tribune) client agent announces (role, dc, segment, id, vsn, vsn_min, vsn_max, build), so
# their alive messages are as large as tribune's. Sourced by ../shared/bench/anchors/serf.sh:
#
#   AGENT_DRIVER=$PWD/bench/gossip-driver-serf-consul-tags.sh ../shared/bench/anchors/serf.sh
#
# Everything but drv_start comes from the anchor's own serf driver.
# shellcheck source=/dev/null
source "$ANCHORS_DIR/gossip-driver-serf.sh"
drv_start() {
  local i=$1
  serf agent -node "tb$i" -bind "127.0.0.1:$((SERF_BIND_BASE+i))" -rpc-addr "127.0.0.1:$((SERF_RPC_BASE+i))" \
    -profile "$SERF_PROFILE" -log-level warn -event-handler "user:$EVENT_NAME=$RUN_DIR/event-handler.sh" \
    -tag role=node -tag dc=dc1 -tag segment= -tag "id=$(printf '%08x-0000-4000-8000-%012x' "$i" "$i")" \
    -tag vsn=2 -tag vsn_min=2 -tag vsn_max=3 -tag build=0.1.0 \
    >"$RUN_DIR/agent-$i.log" 2>&1 &
  DRV_PID=$!
}
