#!/usr/bin/env bash
# The routing mesh over VXLAN: tasks on two nodes behind kernel vxlan devices,
# reached through the appliance's overlay, configured only with what a Swarm node
# runs (ip link ... type vxlan, bridge fdb, ip neigh, ipvsadm, iptables). TAP.
#
#   ov-client 198.18.0.10 --veth-- [p0] meshlbd in ov-lb [p1] --veth-- ov-under (bridge)
#     twins: lb0 198.18.0.1/24, lb1 198.19.0.1/24           |-- ov-n1 198.19.0.2 (VTEP)
#     vxlan4097 (VNI 4097, local 198.19.0.1) 198.18.128.2/24 |     br0: vxlan0, t11 .11, t12 .12
#                                                          '-- ov-n2 198.19.0.3 (VTEP)
#                                                                br0: vxlan0, t21 .21, t22 .22
# Tasks (198.18.128.0/24, MTU 1450 as Docker's overlay) serve HTTP naming themselves.
set -uo pipefail
if [[ $EUID -ne 0 ]]; then echo "1..0 # SKIP needs root (network namespaces)"; exit 0; fi
source "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${MLB_BUILD:-$ROOT/build}
RUN=${MLB_RUN:-/tmp/meshlb-e2e-overlay}-ov
SOCK=$RUN/meshlb.sock
NODES=(n1 n2)
TASKS=(t11 t12 t21 t22)
NS=(ov-lb ov-client ov-under ov-n1 ov-n2 ov-t11 ov-t12 ov-t21 ov-t22 ov-t23)
APP_OV_MAC=02:42:c6:12:80:02
taskip() { echo "198.18.128.${1#t}"; }      # t11 -> 198.18.128.11
taskmac() { echo "02:42:c6:12:80:${1#t}"; }  # t11 -> 02:42:c6:12:80:11
nodeip() { echo "198.19.0.$((${1#n} + 1))"; }
nodeof() { echo "n${1:1:1}"; }              # t21 -> n2

lbx() { ip netns exec ov-lb "$@"; }
ctl() { ip netns exec ov-lb "$BUILD/control/meshlbctl" --socket "$SOCK" "$@"; }
client() { ip netns exec ov-client "$@"; }

down() {
  if [[ -f $RUN/meshlbd.pid ]]; then
    local pid
    pid=$(cat "$RUN/meshlbd.pid")
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    rm -f "$RUN/meshlbd.pid"
  fi
  local ns pid existing
  existing=$(ip netns list | awk '{print $1}')
  for ns in "${NS[@]}"; do
    grep -qx "$ns" <<<"$existing" || continue
    for pid in $(ip netns pids "$ns"); do kill -KILL "$pid" 2>/dev/null; done
    ip netns del "$ns"
  done
}
trap down EXIT

up() {
  down
  mkdir -p "$RUN"
  rm -f "$RUN/meshlbd.log"
  for ns in "${NS[@]}"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
  ip link add c0 netns ov-client type veth peer name p0 netns ov-lb
  ip -n ov-client addr add 198.18.0.10/24 dev c0
  ip -n ov-client link set c0 up
  ip netns exec ov-client ethtool -K c0 tx off >/dev/null
  ip -n ov-under link add br0 type bridge
  ip -n ov-under link set br0 up
  ip link add p1 netns ov-lb type veth peer name u0 netns ov-under
  ip -n ov-under link set u0 master br0 up
  for n in "${NODES[@]}"; do
    local ns=ov-$n ip
    ip=$(nodeip "$n")
    ip link add eth0 netns "$ns" type veth peer name "u$n" netns ov-under
    ip -n ov-under link set "u$n" master br0 up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip netns exec "$ns" ethtool -K eth0 tx off >/dev/null
    # As Docker's overlay driver sets a node up: a bridge with the vxlan device on it,
    # in proxy mode, no learning; the appliance's overlay address programmed.
    ip -n "$ns" link add br0 type bridge
    ip -n "$ns" link set br0 up
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
  guard_ports ov-lb p0 p1
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
  ip netns exec ov-lb "$BUILD/control/meshlbd" --lcores "$lcores" --no-huge -m 512 --no-pci \
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
  twin_sysctls ov-lb lb0 lb1
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


# 40 requests reach all four tasks on both nodes in rr order; each task saw the
# appliance's overlay address as its client.
test_rr_over_overlay() {
  local seq="" _ i
  for _ in $(seq 40); do
    seq+=$(client curl -s -m 5 http://198.18.0.1:8080/ | sed -n 's/^processed by task t//p')" "
  done
  echo "# tasks in order: $seq"
  local -a got=($seq)
  ((${#got[@]} == 40)) || { echo "# not every request was answered"; return 1; }
  for ((i = 4; i < 40; i++)); do
    [[ ${got[i]} == "${got[i - 4]}" ]] || { echo "# not a rotation at $i"; return 1; }
  done
  [[ $(printf '%s\n' "${got[@]:0:4}" | sort -u | wc -l) == 4 ]] || return 1
  local peers
  peers=$(cat "$RUN"/http-t*.log | awk '/GET \/ /{print $1}' | sort -u | tr '\n' ' ')
  echo "# peers the tasks saw: $peers; vxlan_encap $(stat_sum vxlan_encap), vxlan_decap $(stat_sum vxlan_decap)"
  [[ $peers == "198.18.128.2 " ]]
}

# 64 MiB from the client with DF set, full-size segments into the 1450-byte overlay:
# the appliance answers fragmentation-needed, the client's TCP lowers its segment
# size, and the transfer completes: the task counts every byte and says so.
test_path_mtu() {
  local before got
  before=$(stat_sum icmp_too_big_sent)
  # The task advertises an MSS of 1460 (its MTU left at 1500), so the client sends
  # full 1500-byte segments, as it would to a host on its own LAN.
  ip -n ov-n2 link set vt21 mtu 1500
  ip -n ov-t21 link set eth0 mtu 1500
  (ip netns exec ov-t21 timeout 90 /usr/bin/python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("198.18.128.21", 9000)); s.listen(1)
c, _ = s.accept(); n = 0
while True:
    b = c.recv(1 << 16)
    if not b: break
    n += len(b)
c.sendall(str(n).encode()); c.close()
' >"$RUN/sink.log" 2>&1 &)
  sleep 0.5
  got=$(client timeout 60 /usr/bin/python3 -c '
import socket
s = socket.create_connection(("198.18.0.1", 9000), timeout=30)
chunk = b"m" * (1 << 20)
for _ in range(64): s.sendall(chunk)
s.shutdown(socket.SHUT_WR)
print(s.recv(64).decode())
')
  echo "# 64 MiB through the overlay: the task received ${got:-nothing} bytes; icmp_too_big_sent $before -> $(stat_sum icmp_too_big_sent)"
  [[ $got == $((64 << 20)) ]] && (($(stat_sum icmp_too_big_sent) > before))
}

test_iperf3() {
  ctl ipvsadm -A -t 198.18.0.1:5201 -s rr && ctl ipvsadm -a -t 198.18.0.1:5201 -r 198.18.128.22:5201 -m ||
    return 1
  local out bytes
  out=$(client timeout 30 iperf3 -c 198.18.0.1 -t 3 -J) || { echo "$out" | tail -3; return 1; }
  bytes=$(echo "$out" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bytes"])')
  echo "# iperf3 through the overlay to task 22: $bytes bytes in 3 s"
  ((bytes > 1000000))
}

# Drain, as Swarm drains a task: weight 0 while 8 downloads of 8 MiB run (two on each
# task): no new connection goes to it, every download completes; then -d.
test_drain() {
  local i pids=() t=11
  for i in $(seq 8); do
    client curl -s -m 60 --limit-rate 2M -o "$RUN/dl$i" http://198.18.0.1:8080/big &
    pids+=($!)
  done
  sleep 1
  ctl ipvsadm -e -f 256 -r "198.18.128.$t:80" -m -w 0 || return 1
  local during
  during=$(answers 8)
  echo "# answers while task $t is at weight 0: $during"
  local ok=0
  for i in "${pids[@]}"; do wait "$i" && ok=$((ok + 1)); done
  local sizes
  sizes=$(stat -c %s "$RUN"/dl? | sort -u | tr '\n' ' ')
  echo "# $ok/8 downloads completed, sizes: $sizes"
  ((ok == 8)) && [[ $sizes == "$((8 << 20)) " ]] || return 1
  [[ $(echo "$during" | wc -w) == 8 && $during != *$t* ]] || return 1
  ctl ipvsadm -d -f 256 -r "198.18.128.$t:80" || return 1
  local after
  after=$(answers 8)
  echo "# answers after -d: $after"
  [[ $(echo "$after" | wc -w) == 8 && $after != *$t* ]]
}

# Scale up: a task started on node 2 (FDB, neighbour, -a) gets new connections
# within a second.
test_scale_up() {
  task_up t23 && serve_task t23 || return 1  # its namespace exists from up()
  lbx bridge fdb add "$(taskmac t23)" dev vxlan4097 dst "$(nodeip n2)"
  lbx ip neigh add "$(taskip t23)" lladdr "$(taskmac t23)" dev vxlan4097
  ctl ipvsadm -a -f 256 -r "$(taskip t23):80" -m -w 1 || return 1
  sleep 1
  local seq
  seq=$(answers 8)
  echo "# after scaling up: $seq"
  [[ $(echo "$seq" | wc -w) == 8 && $seq == *23* ]]
}

# Traffic not for the appliance is routed, also into the overlay: a task's own
# connection to an outside host's published port (8080, marked) reaches that host
# with the task's address, and the answer comes back to the task through VXLAN.
test_transit_overlay() {
  (ip netns exec ov-client /usr/bin/python3 -u -m http.server 8080 --bind 198.18.0.10 \
    --directory "$RUN" >"$RUN/http-outside.log" 2>&1 &)
  echo "outside host" >"$RUN/outside.html"
  client ip route replace 198.18.128.0/24 via 198.18.0.1
  for _ in $(seq 50); do
    client bash -c "echo > /dev/tcp/198.18.0.10/8080" 2>/dev/null && break
    sleep 0.1
  done
  local got peers
  got=$(ip netns exec ov-t12 curl -s -m 5 http://198.18.0.10:8080/outside.html)
  peers=$(awk '/GET \/outside/ {print $1}' "$RUN/http-outside.log" | sort -u | tr '\n' ' ')
  echo "# task 12 -> outside host :8080: '$got'; the host saw $peers; routed $(stat_sum routed)"
  [[ $got == "outside host" && $peers == "198.18.128.12 " ]]
}

# Direct routing over the overlay (-g, Swarm's dsr mode): the task holds the VIP and
# answers the client itself, through its node; the appliance only encapsulates.
test_dsr_overlay() {
  ip -n ov-t21 addr add 198.18.0.1/32 dev lo
  local dir=$RUN/dsr
  mkdir -p "$dir"
  echo "processed by task t21 directly" >"$dir/index.html"
  (ip netns exec ov-t21 /usr/bin/python3 -u -m http.server 8081 --bind 198.18.0.1 \
    --directory "$dir" >"$RUN/http-dsr.log" 2>&1 &)
  for _ in $(seq 50); do
    ip netns exec ov-t21 bash -c "echo > /dev/tcp/198.18.0.1/8081" 2>/dev/null && break
    sleep 0.1
  done
  ctl ipvsadm -A -t 198.18.0.1:8081 -s rr && ctl ipvsadm -a -t 198.18.0.1:8081 -r 198.18.128.21:8081 -g ||
    return 1
  local got i ok=0
  for i in 1 2 3; do
    got=$(client curl -s -m 5 http://198.18.0.1:8081/)
    [[ $got == "processed by task t21 directly" ]] && ok=$((ok + 1))
  done
  local peers
  peers=$(awk '/GET \/ /{print $1}' "$RUN/http-dsr.log" | sort -u | tr '\n' ' ')
  echo "# DSR: $ok/3 answered by task 21 from the VIP; it saw $peers"
  ((ok == 3)) && [[ $peers == "198.18.0.10 " ]]
}

# A missing FDB entry for a task (a node lost): new connections go to the tasks that
# are left once its real server is gone, and none fails.
test_node_loss() {
  local t
  for t in t21 t22 t23; do
    ctl ipvsadm -d -f 256 -r "$(taskip $t):80" || return 1
    lbx bridge fdb del "$(taskmac $t)" dev vxlan4097
  done
  sleep 1
  local seq
  seq=$(answers 12)
  echo "# after node 2 left: $seq"
  [[ $(echo "$seq" | wc -w) == 12 && $seq != *2[123]* ]]
}

up
serve
start 1 || exit 1
publish || { echo "Bail out! service setup failed"; exit 1; }
check "the published port over VXLAN: all four tasks on two nodes in rr order, full NAT" test_rr_over_overlay
ctl ipvsadm -A -t 198.18.0.1:9000 -s rr >/dev/null &&
  ctl ipvsadm -a -t 198.18.0.1:9000 -r 198.18.128.21:9000 -m >/dev/null
check "path MTU: 64 MiB with DF into the 1450-byte overlay completes" test_path_mtu
check "iperf3 through the overlay" test_iperf3
check "drain: weight 0 during 8 downloads of 8 MiB, all complete; then -d; no request fails" test_drain
check "scale up: a task added on node 2 gets new connections within a second" test_scale_up
check "transit: a task's connection to an outside host's published port is routed, untouched" test_transit_overlay
check "direct routing (-g) over the overlay: the task answers the client itself" test_dsr_overlay
check "node loss: its real servers and FDB entries gone, no request fails" test_node_loss

# Two workers: replies from the nodes reach the worker that owns their connection
# (the SNAT port says which), whichever queue they land on.
test_two_workers() {
  local pid ok=0 _
  pid=$(cat "$RUN/meshlbd.pid")
  kill -TERM "$pid"
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  start 2 && publish || return 1
  for _ in $(seq 60); do
    client curl -s -m 5 http://198.18.0.1:8080/ | grep -q '^processed by task' && ok=$((ok + 1))
  done
  local handoffs
  handoffs=$(stat_sum handoff_out)
  echo "# $ok/60 answered with two workers; handoff_out $handoffs, vxlan_decap $(stat_sum vxlan_decap)"
  ((ok == 60 && handoffs > 0))
}
check "two workers: replies from the nodes reach the owning worker" test_two_workers

test_clean_log() { ! grep -E 'AddressSanitizer|runtime error|LeakSanitizer|PANIC' "$RUN/meshlbd.log"; }
check "meshlbd's log has no sanitizer report or panic" test_clean_log
if ((failed)); then
  tail -20 "$RUN/meshlbd.log" | sed 's/^/# /'
  ctl stats 2>/dev/null | awk '!/ 0$/' | sed 's/^/# /'
fi
tap_end "overlay e2e"
