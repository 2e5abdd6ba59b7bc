# The two-node overlay topology (sourced by tests/e2e/overlay_test.sh and scripts/demo):
#
#   ov-client 198.18.0.10 --veth-- [p0] meshlbd in ov-lb [p1] --veth-- ov-under (bridge)
#     twins: lb0 198.18.0.1/24, lb1 198.19.0.1/24           |-- ov-n1 198.19.0.2 (VTEP)
#     vxlan4097 (VNI 4097, local 198.19.0.1) 198.18.128.2/24 |     br0: vxlan0, t11 .11, t12 .12
#                                                          '-- ov-n2 198.19.0.3 (VTEP)
#                                                                br0: vxlan0, t21 .21, t22 .22
# Tasks (198.18.128.0/24, MTU 1450 as Docker's overlay) serve HTTP naming themselves.
# The appliance and the nodes are programmed only with what a Swarm node runs:
# ip link ... type vxlan, bridge fdb, ip neigh, ipvsadm, iptables. Addresses are
# from 198.18.0.0/15 only; `down` removes everything, also on failure.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${MLB_BUILD:-$ROOT/build}
# The programs: the build's, or others (scripts/demo --installed: the package's).
MESHLBD=${MLB_MESHLBD:-$BUILD/control/meshlbd}
MESHLBCTL=${MLB_MESHLBCTL:-$BUILD/control/meshlbctl}
RUN=${MLB_RUN:-/tmp/meshlb-e2e-overlay}-ov
SOCK=$RUN/meshlb.sock
NODES=(n1 n2)
TASKS=(t11 t12 t21 t22)
NS=(ov-lb ov-client ov-under ov-n1 ov-n2 ov-t11 ov-t12 ov-t21 ov-t22 ov-t23 ov-t61)
APP_OV_MAC=02:42:c6:12:80:02
taskip() { echo "198.18.128.${1#t}"; }      # t11 -> 198.18.128.11
taskmac() { echo "02:42:c6:12:80:${1#t}"; }  # t11 -> 02:42:c6:12:80:11
nodeip() { echo "198.19.0.$((${1#n} + 1))"; }
nodeof() { echo "n${1:1:1}"; }              # t21 -> n2

lbx() { ip netns exec ov-lb "$@"; }
ctl() { ip netns exec ov-lb "$MESHLBCTL" --socket "$SOCK" "$@"; }
client() { ip netns exec ov-client "$@"; }

down() { teardown "$RUN/meshlbd.pid" "${NS[@]}"; }

up() {
  down
  mkdir -p "$RUN"
  rm -f "$RUN"/*.log  # an earlier run's (the servers' logs are read by the checks)
  for ns in "${NS[@]}"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
  wire_underlay ov "${NODES[@]}"
  for n in "${NODES[@]}"; do
    local ns=ov-$n ip
    ip=$(nodeip "$n")
    # As Docker's overlay driver sets a node up: a bridge with the vxlan device on it,
    # in proxy mode, no learning; the appliance's overlay address programmed.
    # A fixed MAC: a bridge otherwise takes its ports' lowest, which changes when a task
    # joins, and the tasks' neighbour entries for the gateway go stale.
    ip -n "$ns" link add br0 type bridge
    ip -n "$ns" link set br0 address "02:42:c6:13:00:${n#n}0" up
    ip -n "$ns" link add vxlan0 type vxlan id 4097 dstport 4789 local "$ip" nolearning proxy
    ip -n "$ns" link set vxlan0 mtu 1450 master br0 up
    ip netns exec "$ns" bridge fdb add "$APP_OV_MAC" dev vxlan0 dst 198.19.0.1
    ip -n "$ns" neigh add 198.18.128.2 lladdr "$APP_OV_MAC" dev vxlan0
    # The node's own way out for its tasks (Docker's docker_gwbridge): what a task sends
    # to an outside address, or answers directly (DSR), is routed via the underlay.
    ip -n "$ns" addr add 198.18.128.254/24 dev br0
    ip -n "$ns" route add 198.18.0.0/24 via 198.19.0.1
    ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
      net.ipv4.conf.default.rp_filter=0
  done
  for t in "${TASKS[@]}"; do task_up "$t"; done
}

# A task namespace behind its node's bridge, with an overlay address and MAC.
task_up() {
  local t=$1 n
  n=$(nodeof "$t")
  ip link add eth0 netns "ov-$t" type veth peer name "v$t" netns "ov-$n"
  ip -n "ov-$n" link set "v$t" mtu 1450 master br0 up
  ip -n "ov-$t" link set eth0 address "$(taskmac "$t")" mtu 1450 up
  ip -n "ov-$t" addr add "$(taskip "$t")/24" dev eth0
  ip -n "ov-$t" route add default via 198.18.128.254
  ip netns exec "ov-$t" ethtool -K eth0 tx off >/dev/null
}

# HTTP naming the task (and an 8 MiB file), iperf3.
serve_task() {
  local t=$1 dir=$RUN/$1
  mkdir -p "$dir"
  echo "processed by task $t" >"$dir/index.html"
  [[ -f $dir/big ]] || head -c $((8 << 20)) /dev/zero >"$dir/big"
  (ip netns exec "ov-$t" /usr/bin/python3 -u -m http.server 80 --bind "$(taskip "$t")" \
    --directory "$dir" >"$RUN/http-$t.log" 2>&1 &)
  ip netns exec "ov-$t" iperf3 -s -D -B "$(taskip "$t")" --logfile "$RUN/iperf-$t.log"
  for _ in $(seq 50); do
    ip netns exec "ov-$t" bash -c "echo > /dev/tcp/$(taskip "$t")/80" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

serve() {
  local t
  for t in "${TASKS[@]}"; do serve_task "$t"; done
}

# The task numbers answering COUNT requests to the published port, space-separated.
answers() {
  local seq="" _
  for _ in $(seq "$1"); do
    seq+=$(client curl -s -m 5 http://198.18.0.1:8080/ | sed -n 's/^processed by task t//p')" "
  done
  echo "$seq"
}

start() {  # workers
  local lcores='0@0,1@1' q=1
  if (($1 == 2)); then lcores='0@0,1@1,2@1'; q=2; fi
  rm -f "$SOCK"
  ip netns exec ov-lb "$MESHLBD" --lcores "$lcores" --no-huge -m 512 --no-pci \
    --file-prefix "mlb-ov-$$" --log-level 'pmd.*:error' \
    --vdev "net_af_packet0,iface=p0,qpairs=$q" --vdev "net_af_packet1,iface=p1,qpairs=$q" \
    -- --control-socket "$SOCK" >>"$RUN/meshlbd.log" 2>&1 &
  echo $! >"$RUN/meshlbd.pid"
  for _ in $(seq 100); do [[ -S $SOCK ]] && break; sleep 0.1; done
  [[ -S $SOCK ]] || { cat "$RUN/meshlbd.log" >&2; return 1; }
  lbx ip addr add 198.18.0.1/24 dev lb0
  lbx ip addr add 198.19.0.1/24 dev lb1
  lbx ip link set lb0 up
  lbx ip link set lb1 up
  # The overlay, exactly as Docker's overlay driver programs a node.
  lbx ip link del vxlan4097 2>/dev/null
  lbx ip link add vxlan4097 type vxlan id 4097 dstport 4789 local 198.19.0.1 nolearning
  lbx ip link set vxlan4097 address "$APP_OV_MAC" mtu 1450 up
  lbx ip addr add 198.18.128.2/24 dev vxlan4097
  local t
  for t in "${TASKS[@]}"; do
    lbx bridge fdb add "$(taskmac "$t")" dev vxlan4097 dst "$(nodeip "$(nodeof "$t")")"
    lbx ip neigh add "$(taskip "$t")" lladdr "$(taskmac "$t")" dev vxlan4097
  done
}

publish() {  # Swarm's ingress: a MARK on the published port, an fwmark service, full NAT
  ctl iptables -t mangle -A PREROUTING -p tcp --dport 8080 -j MARK --set-mark 256 &&
    ctl ipvsadm -A -f 256 -s rr || return 1
  local t
  for t in "${TASKS[@]}"; do ctl ipvsadm -a -f 256 -r "$(taskip "$t"):80" -m -w 1 || return 1; done
  ctl iptables -t nat -A POSTROUTING -m ipvs --ipvs -d 198.18.128.0/24 -j SNAT \
    --to-source 198.18.128.2
}


