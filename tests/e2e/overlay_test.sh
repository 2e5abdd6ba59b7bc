#!/usr/bin/env bash
# The routing mesh over VXLAN: tasks on two nodes behind kernel vxlan devices,
# reached through the appliance's overlay (tests/e2e/overlay_topology.sh). TAP.
set -uo pipefail
if [[ $EUID -ne 0 ]]; then echo "1..0 # SKIP needs root (network namespaces)"; exit 0; fi
source "$(dirname "$0")/overlay_topology.sh"
trap down EXIT

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
  peers=$(for t in "${TASKS[@]}"; do cat "$RUN/http-$t.log"; done | awk '/GET \/ /{print $1}' | sort -u | tr '\n' ' ')
  echo "# peers the tasks saw: $peers; vxlan_encap $(stat_sum vxlan_encap), vxlan_decap $(stat_sum vxlan_decap)"
  [[ $peers == "198.18.128.2 " ]]
}

# An address VIP (-t) over the overlay as well: the four tasks in rr order.
test_address_vip() {
  ctl ipvsadm -A -t 198.18.0.1:8088 -s rr || return 1
  local t
  for t in "${TASKS[@]}"; do ctl ipvsadm -a -t 198.18.0.1:8088 -r "$(taskip "$t"):80" -m || return 1; done
  local seq="" _
  for _ in $(seq 8); do
    seq+=$(client curl -s -m 5 http://198.18.0.1:8088/ | sed -n 's/^processed by task t//p')" "
  done
  echo "# 198.18.0.1:8088 (an address service): $seq"
  [[ $seq == "11 12 21 22 11 12 21 22 " ]]
}

# Masquerading without the full-NAT SNAT rule: the tasks see the client's own address
# and answer it through their node's route back to the appliance, which un-NATs them.
test_masq_without_snat() {
  ctl iptables -t nat -D POSTROUTING -m ipvs --ipvs -d 198.18.128.0/24 -j SNAT \
    --to-source 198.18.128.2 || return 1
  local n=0 _ seen
  seen=$(wc -l <"$RUN/http-t12.log")
  for _ in $(seq 8); do
    client curl -s -m 5 http://198.18.0.1:8088/ | grep -q '^processed by task' && n=$((n + 1))
  done
  local peers
  peers=$(tail -n +$((seen + 1)) "$RUN/http-t12.log" | awk '/GET \/ /{print $1}' | sort -u |
    tr '\n' ' ')
  echo "# without SNAT: $n/8 answered; task 12 saw $peers"
  ctl iptables -t nat -A POSTROUTING -m ipvs --ipvs -d 198.18.128.0/24 -j SNAT \
    --to-source 198.18.128.2 || return 1
  ((n == 8)) && [[ $peers == "198.18.0.10 " ]]
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
  local bytes
  bytes=$(iperf_received 3 198.18.0.1 client) || return 1
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
  # A direct-routing real server holds the VIP without announcing it (as every LVS-DR
  # real server must: the VIP is the appliance's on the client's side).
  ip netns exec ov-t21 sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
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
  [[ $(echo "$seq" | wc -w) == 12 && $seq != *2[123]* ]] && return 0
  # What became of the unanswered ones: the drops and hand-offs that moved.
  ctl stats | awk '$2 != 0 && $1 ~ /drop|unresolved|kernel|handoff|reused|nodest/' | sed 's/^/# /'
  return 1
}

up
serve
start 1 || exit 1
publish || { echo "Bail out! service setup failed"; exit 1; }
check "the published port over VXLAN: all four tasks on two nodes in rr order, full NAT" test_rr_over_overlay
ctl ipvsadm -A -t 198.18.0.1:9000 -s rr >/dev/null &&
  ctl ipvsadm -a -t 198.18.0.1:9000 -r 198.18.128.21:9000 -m >/dev/null
check "an address VIP over the overlay: all four tasks in rr order" test_address_vip
check "masquerading without SNAT over the overlay: tasks see the client, replies un-NAT'd" test_masq_without_snat
check "path MTU: 64 MiB with DF into the 1450-byte overlay completes" test_path_mtu
check "iperf3 through the overlay" test_iperf3
check "drain: weight 0 during 8 downloads of 8 MiB, all complete; then -d; no request fails" test_drain
check "scale up: a task added on node 2 gets new connections within a second" test_scale_up
check "transit: a task's connection to an outside host's published port is routed, untouched" test_transit_overlay
check "direct routing (-g) over the overlay: the task answers the client itself" test_dsr_overlay
check "node loss: its real servers and FDB entries gone, no request fails" test_node_loss

# IPv6 tasks inside the overlay (issue 12), programmed as Docker programs an IPv6 overlay:
# the vxlan device's address 2001:db8:80::2/64, the task's neighbour entry on it, the
# node's proxy entry for the appliance's address. curl -6 through full NAT66, then 64 MiB
# from a client whose MTU is 1500 to a task that advertises one of 1500 too: the
# appliance answers Packet Too Big (the overlay carries 1450), and the upload completes.
test_ipv6_overlay() {
  local before got
  lbx sysctl -qw net.ipv6.conf.all.forwarding=1
  client ip addr add 2001:db8::10/64 dev c0 nodad
  lbx ip addr add 2001:db8::1/64 dev lb0 nodad
  lbx ip addr add 2001:db8::100/128 dev lb0 nodad
  lbx ip addr add 2001:db8:80::2/64 dev vxlan4097 nodad
  lbx ip -6 neigh add 2001:db8:80::11 lladdr "$(taskmac t11)" dev vxlan4097
  ip -n ov-n1 -6 neigh add 2001:db8:80::2 lladdr "$APP_OV_MAC" dev vxlan0
  ip -n ov-t11 addr add 2001:db8:80::11/64 dev eth0 nodad
  http6_serve ov-t11 2001:db8:80::11 "$RUN/t11" "$RUN/http6-t11.log" || return 1
  ctl ipvsadm -A -t "[2001:db8::100]:80" -s rr &&
    ctl ipvsadm -a -t "[2001:db8::100]:80" -r "[2001:db8:80::11]:80" -m &&
    ctl ipvsadm -A -t "[2001:db8::100]:9000" -s rr &&
    ctl ipvsadm -a -t "[2001:db8::100]:9000" -r "[2001:db8:80::11]:9000" -m &&
    ctl ip6tables -t nat -A POSTROUTING -m ipvs --ipvs -d 2001:db8:80::/64 -j MASQUERADE || return 1
  got=$(client curl -6 -s -m 5 "http://[2001:db8::100]/")
  echo "# curl -6 through the overlay: ${got:-nothing}; the task saw $(awk '/GET/ {print $1}' "$RUN/http6-t11.log" | sort -u | tr '\n' ' ')"
  if [[ $got != "processed by task t11" ]]; then
    ctl stats | awk '$2 != 0 && $1 ~ /drop|unresolved|kernel|vxlan|nat_|new_conn/' | sed 's/^/# /'
    lbx ip -6 neigh | sed 's/^/# neighbour: /'
    return 1
  fi
  before=$(stat_sum icmp_too_big_sent)
  ip -n ov-n1 link set vt11 mtu 1500
  ip -n ov-t11 link set eth0 mtu 1500
  (ip netns exec ov-t11 timeout 90 /usr/bin/python3 -c '
import socket
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("2001:db8:80::11", 9000)); s.listen(1)
c, _ = s.accept(); n = 0
while True:
    b = c.recv(1 << 16)
    if not b: break
    n += len(b)
c.sendall(str(n).encode()); c.close()
' >"$RUN/sink6.log" 2>&1 &)
  sleep 0.5
  got=$(client timeout 60 /usr/bin/python3 -c '
import socket
s = socket.create_connection(("2001:db8::100", 9000), timeout=30)
chunk = b"m" * (1 << 20)
for _ in range(64): s.sendall(chunk)
s.shutdown(socket.SHUT_WR)
print(s.recv(64).decode())
')
  ip -n ov-t11 link set eth0 mtu 1450
  ip -n ov-n1 link set vt11 mtu 1450
  echo "# 64 MiB over IPv6 into the overlay: the task received ${got:-nothing} bytes; icmp_too_big_sent $before -> $(stat_sum icmp_too_big_sent)"
  [[ $got == $((64 << 20)) ]] && (($(stat_sum icmp_too_big_sent) > before))
}
check "IPv6 tasks inside the overlay: curl -6 through full NAT66; 64 MiB with Packet Too Big" \
  test_ipv6_overlay

# An overlay over an IPv6 underlay, as `ip link add ... type vxlan local IPV6` makes one:
# VNI 4200 between the appliance (2001:db8:19::1 on lb1) and node n2 (2001:db8:19::3),
# task t61 (198.18.200.61, MTU 1430: 70 bytes of outer headers) behind the node's own
# bridge. The node's kernel drops a datagram whose UDP checksum is wrong or zero.
test_ipv6_underlay() {
  local mac=02:42:c6:12:c8:02 tmac=02:42:c6:12:c8:61 got up
  lbx ip addr add 2001:db8:19::1/64 dev lb1 nodad
  ip -n ov-n2 addr add 2001:db8:19::3/64 dev eth0 nodad
  ip -n ov-n2 link add br6 type bridge
  ip -n ov-n2 link set br6 address 02:42:c6:13:c8:fe up
  ip -n ov-n2 link add vxlan6 type vxlan id 4200 dstport 4789 local 2001:db8:19::3 nolearning proxy
  ip -n ov-n2 link set vxlan6 mtu 1430 master br6 up
  ip netns exec ov-n2 bridge fdb add "$mac" dev vxlan6 dst 2001:db8:19::1
  ip -n ov-n2 neigh add 198.18.200.2 lladdr "$mac" dev vxlan6
  ip link add eth0 netns ov-t61 type veth peer name vt61 netns ov-n2
  ip -n ov-n2 link set vt61 mtu 1430 master br6 up
  ip -n ov-t61 link set eth0 address "$tmac" mtu 1430 up
  ip -n ov-t61 addr add 198.18.200.61/24 dev eth0
  ip netns exec ov-t61 ethtool -K eth0 tx off >/dev/null
  mkdir -p "$RUN/t61"
  echo "processed by task t61" >"$RUN/t61/index.html"
  (ip netns exec ov-t61 /usr/bin/python3 -u -m http.server 80 --bind 198.18.200.61 \
    --directory "$RUN/t61" >"$RUN/http-t61.log" 2>&1 &)
  ip netns exec ov-t61 iperf3 -s -D -B 198.18.200.61 --logfile "$RUN/iperf-t61.log"
  lbx ip link add vxlan4200 type vxlan id 4200 dstport 4789 local 2001:db8:19::1 nolearning
  lbx ip link set vxlan4200 address "$mac" mtu 1430 up
  lbx ip addr add 198.18.200.2/24 dev vxlan4200
  lbx bridge fdb add "$tmac" dev vxlan4200 dst 2001:db8:19::3
  lbx ip neigh add 198.18.200.61 lladdr "$tmac" dev vxlan4200
  ctl ipvsadm -A -t 198.18.0.1:8200 -s rr && ctl ipvsadm -a -t 198.18.0.1:8200 -r 198.18.200.61:80 -m &&
    ctl ipvsadm -A -t 198.18.0.1:8201 -s rr && ctl ipvsadm -a -t 198.18.0.1:8201 -r 198.18.200.61:5201 -m &&
    ctl iptables -t nat -A POSTROUTING -m ipvs --ipvs -d 198.18.200.0/24 -j SNAT --to-source 198.18.200.2 ||
    return 1
  for _ in $(seq 30); do
    got=$(client curl -s -m 2 http://198.18.0.1:8200/) && [[ -n $got ]] && break
    sleep 0.2
  done
  # iperf3 upload: full-size packets into the tunnel, each one's checksum checked by n2.
  up=$(client timeout 20 iperf3 -c 198.18.0.1 -p 8201 -t 2 -J 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bytes"])' 2>/dev/null)
  echo "# over the IPv6 underlay: ${got:-nothing}; iperf3 upload: ${up:-nothing} bytes received by t61; vxlan_encap $(stat_sum vxlan_encap), vxlan_decap $(stat_sum vxlan_decap); n2's vxlan6 rx errors: $(ip -n ov-n2 -s link show vxlan6 | awk '/RX:/ {getline; print $3}')"
  if [[ $got != "processed by task t61" ]]; then
    ctl stats | awk '$2 != 0 && $1 ~ /drop|unresolved|kernel|vxlan|new_conn/' | sed 's/^/# /'
    return 1
  fi
  ((${up:-0} > 10000000))
}
check "an overlay over an IPv6 underlay (vxlan local 2001:db8:19::1): curl and an iperf3 upload to its task" \
  test_ipv6_underlay

# An overlay that comes (ip link add ... type vxlan) on the port of a UDP service that
# already exists takes that port's packets: meshlbd says which service it cut off.
test_overlay_on_a_udp_service_port() {
  ctl ipvsadm -A -u 198.18.0.1:4800 -s rr || return 1
  lbx ip link add vxlan77 type vxlan id 77 dstport 4800 local 198.19.0.1 nolearning &&
    lbx ip link set vxlan77 up || return 1
  local _ said=""
  for _ in $(seq 30); do
    said=$(grep -m1 "takes UDP port 4800" "$RUN/meshlbd.log") && break
    sleep 0.1
  done
  lbx ip link del vxlan77
  ctl ipvsadm -D -u 198.18.0.1:4800
  echo "# ${said:-nothing said}"
  [[ $said == *"UDP service 198.18.0.1:4800 can no longer be reached"* ]]
}
check "an overlay on an existing UDP service's port: the service it cuts off is named" \
  test_overlay_on_a_udp_service_port

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
