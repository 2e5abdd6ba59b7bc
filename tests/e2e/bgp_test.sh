#!/usr/bin/env bash
# Scale-out behind BGP ECMP (issue 15, docs/scale-out.md), with real daemons in
# namespaces: a router running BIRD 2 with kernel ECMP over L4 hashes
# (fib_multipath_hash_policy=1), a client behind it, and two appliances, each a meshlbd
# (one worker) with BIRD beside it exporting what meshlbd puts in its announce table,
# both balancing 198.18.100.1:80 (mh, hashing client ports too: -b mh-port) to the same
# three tasks with full NAT, each to an SNAT address of its own (198.18.9.1, 198.18.9.2)
# that it announces, and its peer's with a higher metric (MED) as the backup; each runs
# IPVS's master and backup sync daemons, so either carries on the other's connections.
# The tasks answer through the router. BFD runs on each session (3 s to detect here, BGP's
# hold time 9 s, the daemons at nice -10; 300 ms in docs/scale-out.md for an appliance with
# cores of its own). The two appliances' workers share this VM's two cores with everything
# else, so they sleep when idle (meshlbd --idle-sleep). Root only.
#
#   bg-client 198.18.0.10 -- bg-router 198.18.0.1 | 198.18.2.1 -- bridge (bg-up)
#       -- [p0] bg-a1 lb0 198.18.2.11 (+ VIP 198.18.100.1/32) [p1] lb1 198.18.1.1 -- bridge (bg-seg)
#       -- [p0] bg-a2 lb0 198.18.2.12 (+ VIP)                 [p1] lb1 198.18.1.2 --   tasks .11-.13
#                                             bg-router 198.18.1.254 (the tasks' gateway) --
set -uo pipefail
if [[ $EUID -ne 0 ]]; then echo "1..0 # SKIP needs root (network namespaces)"; exit 0; fi
source "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${MLB_BUILD:-$ROOT/build}
RUN=${MLB_RUN:-/tmp/meshlb-e2e-bgp}-bgp
VIP=198.18.100.1
VIP6=2001:db8:100::1
NS=(bg-client bg-router bg-up bg-a1 bg-a2 bg-seg bg-t1 bg-t2 bg-t3)
APPS=(a1 a2)
command -v bird >/dev/null || { echo "1..0 # SKIP bird (bird2) is not installed: scripts/setup installs it"; exit 0; }

ctl() { local a=$1; shift; ip netns exec "bg-$a" "$BUILD/control/meshlbctl" --socket "$RUN/$a.sock" "$@"; }
client() { ip netns exec bg-client "$@"; }
num() { echo "${1#a}"; }  # a1 -> 1

down() {
  local a
  for a in "${APPS[@]}"; do
    [[ -f $RUN/$a.bird.pid ]] && kill "$(cat "$RUN/$a.bird.pid")" 2>/dev/null
    teardown "$RUN/$a.pid"
  done
  [[ -f $RUN/router.bird.pid ]] && kill "$(cat "$RUN/router.bird.pid")" 2>/dev/null
  teardown /dev/null "${NS[@]}"
}
trap down EXIT

bird_conf_app() {  # app
  local n
  n=$(num "$1")
  cat <<CONF
router id 198.18.2.1$n;
log "$RUN/$1.bird.log" all;
debug protocols { states };
protocol device { scan time 1; }
# What meshlbd puts in its announce table (routes through its twin lb0, gone with it).
protocol kernel vips {
  kernel table 4242;
  learn;
  scan time 1;
  ipv4 { import all; export none; };
}
protocol kernel vips6 {
  kernel table 4242;
  learn;
  scan time 1;
  ipv6 { import all; export none; };
}
protocol bfd { interface "lb0" { min rx interval 300 ms; min tx interval 300 ms; multiplier 10; }; }
protocol bgp uplink {
  local 198.18.2.1$n as 65001;
  neighbor 198.18.2.1 as 65000;
  hold time 9;
  error wait time 1, 5;
  connect retry time 2;
  bfd on;
  # The announce table's metric as the MED: a peer's SNAT address is the backup path.
  ipv4 { import none; export filter { if source != RTS_INHERIT then reject; bgp_med = krt_metric; accept; }; };
}
# IPv6 prefixes over a session of their own, between the IPv6 addresses.
protocol bgp uplink6 {
  local 2001:db8:2::1$n as 65001;
  neighbor 2001:db8:2::1 as 65000;
  hold time 9;
  error wait time 1, 5;
  connect retry time 2;
  bfd on;
  ipv6 { import none; export filter { if source != RTS_INHERIT then reject; bgp_med = krt_metric; accept; }; };
}
CONF
}

bird_conf_router() {
  cat <<CONF
router id 198.18.2.1;
log "$RUN/router.bird.log" all;
debug protocols { states };
protocol device { scan time 1; }
# Equal BGP paths become one multipath route in the kernel.
protocol kernel { merge paths on; ipv4 { import none; export all; }; }
protocol kernel { merge paths on; ipv6 { import none; export all; }; }
protocol bfd { interface "r1" { min rx interval 300 ms; min tx interval 300 ms; multiplier 10; }; }
template bgp appliance {
  local 198.18.2.1 as 65000;
  hold time 9;
  error wait time 1, 5;
  connect retry time 2;
  bfd on;
  ipv4 { import all; export none; };
}
protocol bgp a1 from appliance { neighbor 198.18.2.11 as 65001; }
protocol bgp a2 from appliance { neighbor 198.18.2.12 as 65001; }
template bgp appliance6 {
  local 2001:db8:2::1 as 65000;
  hold time 9;
  error wait time 1, 5;
  connect retry time 2;
  bfd on;
  ipv6 { import all; export none; };
}
protocol bgp a1v6 from appliance6 { neighbor 2001:db8:2::11 as 65001; }
protocol bgp a2v6 from appliance6 { neighbor 2001:db8:2::12 as 65001; }
CONF
}

up() {
  down
  mkdir -p "$RUN"
  local ns a i
  for ns in "${NS[@]}"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
  ip link add c0 netns bg-client type veth peer name r0 netns bg-router
  ip -n bg-client addr add 198.18.0.10/24 dev c0
  ip -n bg-client link set c0 up
  ip -n bg-client route add default via 198.18.0.1
  ip -n bg-client addr add 2001:db8::10/64 dev c0 nodad
  ip -n bg-client -6 route add default via 2001:db8::1
  ip netns exec bg-client ethtool -K c0 tx off >/dev/null
  # A receive buffer of at most 256 KiB: curl's --limit-rate paces the transfer itself,
  # not only its reading from a socket that has taken the whole file (this kernel grows
  # one to 32 MiB), so that downloads are still under way when an appliance goes.
  ip netns exec bg-client sysctl -qw net.ipv4.tcp_rmem="4096 131072 262144"
  ip -n bg-router addr add 198.18.0.1/24 dev r0
  ip -n bg-router addr add 2001:db8::1/64 dev r0 nodad
  ip -n bg-router link set r0 up
  for ns in bg-up bg-seg; do ip -n "$ns" link add br0 type bridge; ip -n "$ns" link set br0 up; done
  ip link add r1 netns bg-router type veth peer name u0 netns bg-up
  ip -n bg-up link set u0 master br0 up
  ip -n bg-router addr add 198.18.2.1/24 dev r1
  ip -n bg-router addr add 2001:db8:2::1/64 dev r1 nodad
  ip -n bg-router link set r1 up
  ip netns exec bg-router ethtool -K r1 tx off >/dev/null
  ip netns exec bg-router sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1 \
    net.ipv6.conf.all.forwarding=1 net.ipv6.fib_multipath_hash_policy=1
  ip link add r2 netns bg-router type veth peer name rt netns bg-seg
  ip -n bg-seg link set rt master br0 up
  ip -n bg-router addr add 198.18.1.254/24 dev r2
  ip -n bg-router addr add 2001:db8:1::fe/64 dev r2 nodad
  ip -n bg-router link set r2 up
  ip netns exec bg-router ethtool -K r2 tx off >/dev/null
  for a in "${APPS[@]}"; do
    ip link add p0 netns "bg-$a" type veth peer name "u$(num "$a")" netns bg-up
    ip -n bg-up link set "u$(num "$a")" master br0 up
    ip link add p1 netns "bg-$a" type veth peer name "s$(num "$a")" netns bg-seg
    ip -n bg-seg link set "s$(num "$a")" master br0 up
  done
  for i in 1 2 3; do
    ip link add eth0 netns "bg-t$i" type veth peer name "t$i" netns bg-seg
    ip -n bg-seg link set "t$i" master br0 up
    ip -n "bg-t$i" addr add "198.18.1.1$i/24" dev eth0
    ip -n "bg-t$i" link set eth0 up
    ip -n "bg-t$i" route add default via 198.18.1.254
    ip -n "bg-t$i" addr add "2001:db8:1::1$i/64" dev eth0 nodad
    ip -n "bg-t$i" -6 route add default via 2001:db8:1::fe
    ip netns exec "bg-t$i" ethtool -K eth0 tx off >/dev/null
    mkdir -p "$RUN/t$i"
    echo "processed by task $i" >"$RUN/t$i/index.html"
    head -c $((12 * 1048576)) /dev/zero >"$RUN/t$i/big"
    (ip netns exec "bg-t$i" /usr/bin/python3 -u -m http.server 80 --bind "198.18.1.1$i" \
      --directory "$RUN/t$i" >"$RUN/http-t$i.log" 2>&1 &)
    http6_serve "bg-t$i" "2001:db8:1::1$i" "$RUN/t$i" "$RUN/http6-t$i.log" || return 1
    # UDP echo on :7, naming the task (the consistency check).
    (ip netns exec "bg-t$i" /usr/bin/python3 -u -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 7))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(sys.argv[2].encode(), peer)
' "198.18.1.1$i" "$i" >"$RUN/udp-t$i.log" 2>&1 &)
  done
  bird_conf_router >"$RUN/router.bird.conf"
  ip netns exec bg-router nice -n -10 bird -c "$RUN/router.bird.conf" -s "$RUN/router.bird.ctl" \
    -P "$RUN/router.bird.pid" || return 1
}

# meshlbd in bg-APP with its state file, its twins addressed, BIRD beside it.
start() {  # app
  local a=$1 n lcores
  n=$(num "$a")
  lcores='0@0,1@1'
  [[ $a == a2 ]] && lcores='0@1,1@0'  # the two workers on different cores
  rm -f "$RUN/$a.sock"
  ip netns exec "bg-$a" "$BUILD/control/meshlbd" --lcores "$lcores" --no-huge -m 512 --no-pci \
    --file-prefix "mlb-bgp-$a-$$" --log-level 'pmd.*:error' \
    --vdev net_af_packet0,iface=p0 --vdev net_af_packet1,iface=p1 \
    -- --control-socket "$RUN/$a.sock" --state-file "$RUN/$a.state" --idle-sleep 100 \
    >>"$RUN/$a.log" 2>&1 &
  echo $! >"$RUN/$a.pid"
  disown  # killed on purpose later: no job notice
  for _ in $(seq 100); do [[ -S $RUN/$a.sock ]] && break; sleep 0.1; done
  [[ -S $RUN/$a.sock ]] || { tail "$RUN/$a.log" >&2; return 1; }
  ip -n "bg-$a" addr add "198.18.2.1$n/24" dev lb0
  ip -n "bg-$a" addr add "$VIP/32" dev lb0
  ip -n "bg-$a" addr add "198.18.1.$n/24" dev lb1
  ip -n "bg-$a" link set lb0 up
  ip -n "bg-$a" link set lb1 up
  ip -n "bg-$a" route add default via 198.18.2.1
  ip -n "bg-$a" addr add "2001:db8:2::1$n/64" dev lb0 nodad
  ip -n "bg-$a" addr add "$VIP6/128" dev lb0 nodad
  ip -n "bg-$a" addr add "2001:db8:1::$n/64" dev lb1 nodad
  ip -n "bg-$a" -6 route add default via 2001:db8:2::1
  if [[ ! -f $RUN/$a.bird.pid ]] || ! kill -0 "$(cat "$RUN/$a.bird.pid")" 2>/dev/null; then
    bird_conf_app "$a" >"$RUN/$a.bird.conf"
    ip netns exec "bg-$a" nice -n -10 bird -c "$RUN/$a.bird.conf" -s "$RUN/$a.bird.ctl" -P "$RUN/$a.bird.pid" ||
      return 1
  fi
}

configure() {  # app: the services, full NAT to its own address, announcements, sync
  local a=$1 i n other
  n=$(num "$a") other=$((3 - $(num "$a")))
  ctl "$a" ipvsadm -A -t "$VIP:80" -s mh -b mh-port &&
    for i in 1 2 3; do ctl "$a" ipvsadm -a -t "$VIP:80" -r "198.18.1.1$i:80" -m || return 1; done &&
    ctl "$a" ipvsadm -A -u "$VIP:7" -s mh -b mh-port &&
    for i in 1 2 3; do ctl "$a" ipvsadm -a -u "$VIP:7" -r "198.18.1.1$i:7" -m || return 1; done &&
    ctl "$a" iptables -t nat -A POSTROUTING -m ipvs --ipvs -j SNAT --to-source "198.18.9.$n" &&
    ctl "$a" announce -a "$VIP/32" &&
    ctl "$a" announce -a "198.18.9.$n/32" --always &&
    ctl "$a" announce -a "198.18.9.$other/32" --always --metric 100 &&
    ctl "$a" ipvsadm -A -t "[$VIP6]:80" -s mh -b mh-port &&
    for i in 1 2 3; do ctl "$a" ipvsadm -a -t "[$VIP6]:80" -r "[2001:db8:1::1$i]:80" -m || return 1; done &&
    ctl "$a" ip6tables -t nat -A POSTROUTING -m ipvs --ipvs -j SNAT --to-source "2001:db8:9::$n" &&
    ctl "$a" announce -a "$VIP6" &&
    ctl "$a" announce -a "2001:db8:9::$n" --always &&
    ctl "$a" announce -a "2001:db8:9::$other" --always --metric 100 &&
    ctl "$a" sysctl net.ipv4.vs.sync_refresh_period=2 >/dev/null &&
    ctl "$a" ipvsadm --start-daemon master --mcast-interface lb0 --syncid 1 &&
    ctl "$a" ipvsadm --start-daemon backup --mcast-interface lb0 --syncid 1
}

# The router's next hops for the VIP, one per line (198.18.2.11, 198.18.2.12).
paths() { ip -n bg-router route show "$VIP" | grep -oE 'via 198\.18\.2\.1[12]' | awk '{print $2}' | sort; }
wait_paths() {  # expected (space-separated), seconds: echoes the time it took
  local want=$1 start=$EPOCHREALTIME
  for _ in $(seq $(($2 * 20))); do
    if [[ $(paths | tr '\n' ' ' | sed 's/ $//') == "$want" ]]; then
      awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.2f", b - a}'
      return 0
    fi
    sleep 0.05
  done
  echo "never (paths: $(paths | tr '\n' ' '))"
  return 1
}
new_conns() { ctl "$1" stats --json | /usr/bin/python3 -c "import json,sys; print(sum(w['new_connections'] for w in json.load(sys.stdin)['workers']))"; }
# COUNT requests; prints the tasks that answered, one character each ("x": no answer).
requests() {  # count [first local port]
  local i out seq=""
  for i in $(seq "$1"); do
    if [[ -n ${2:-} ]]; then
      out=$(client curl -s -m 3 --local-port "$(($2 + i))" "http://$VIP/")
    else
      out=$(client curl -s -m 3 "http://$VIP/")
    fi
    seq+=$(sed -n 's/^processed by task //p' <<<"$out" | grep . || echo x)
  done
  echo "$seq"
}

# Both sessions established and the multipath route in place, and still so 3 s later
# (the sessions' first seconds, BFD coming up, are not what is measured).
settled() {
  local t
  for _ in 1 2 3; do
    t=$(wait_paths "198.18.2.11 198.18.2.12" 60) || { echo "# multipath: $t"; return 1; }
    sleep 3
    [[ $(paths | wc -l) == 2 ]] && return 0
  done
  echo "# the sessions keep flapping"
  return 1
}
test_both_announce() {
  settled || return 1
  echo "# the router's route: $(ip -n bg-router route show "$VIP" | tr '\n' ' ' | tr -s ' ')"
  local before1 before2 seq
  before1=$(new_conns a1) before2=$(new_conns a2)
  seq=$(requests 100)
  local n1=$(($(new_conns a1) - before1)) n2=$(($(new_conns a2) - before2))
  echo "# 100 connections: appliance 1 took $n1, appliance 2 took $n2; tasks: $(fold -w1 <<<"$seq" | sort | uniq -c | tr -s ' \n' ' ')"
  [[ $seq != *x* ]] && ((n1 > 10 && n2 > 10 && n1 + n2 == 100)) &&
    [[ $seq == *1* && $seq == *2* && $seq == *3* ]]
}

# Dual stack: the IPv6 VIP announced by both over their IPv6 sessions; the router's IPv6
# multipath route spreads curl -6 connections over both appliances and every task.
test_ipv6_announced() {
  local route _ seq="" out i s1 s2
  for _ in $(seq 100); do
    route=$(ip -n bg-router -6 route show "$VIP6")
    [[ $route == *2001:db8:2::11* && $route == *2001:db8:2::12* ]] && break
    sleep 0.2
  done
  echo "# the router's IPv6 route: $(tr '\n' ' ' <<<"$route" | tr -s ' ')"
  # BFD watches the IPv6 sessions as the IPv4 ones.
  local bfd6
  bfd6=$(ip netns exec bg-router birdc -s "$RUN/router.bird.ctl" show bfd sessions |
    grep -cE '^2001:db8:2::1[12] .* Up ')
  echo "# the router's BFD sessions over IPv6 that are up: $bfd6"
  conns6() { ctl "$1" ipvsadm -L -n --stats -t "[$VIP6]:80" | awk 'NR == 3 {print $3 + 0}'; }
  s1=$(conns6 a1) s2=$(conns6 a2)
  for i in $(seq 40); do
    out=$(client curl -6 -s -m 3 --local-port "$((46000 + i))" "http://[$VIP6]/")
    seq+=$(sed -n 's/^processed by task //p' <<<"$out" | grep . || echo x)
  done
  s1=$(($(conns6 a1) - ${s1:-0})) s2=$(($(conns6 a2) - ${s2:-0}))
  echo "# 40 curl -6 connections: appliance 1 took $s1, appliance 2 took $s2; tasks: $(fold -w1 <<<"$seq" | sort | uniq -c | tr -s ' \n' ' ')"
  [[ $route == *2001:db8:2::11* && $route == *2001:db8:2::12* && $seq != *x* && $bfd6 == 2 ]] &&
    ((s1 > 3 && s2 > 3 && s1 + s2 == 40)) && [[ $seq == *1* && $seq == *2* && $seq == *3* ]]
}

# Maglev §3.3: both appliances' mh tables are identical, so a flow ECMP moves to the
# other appliance reaches the same task. UDP from 40 client ports through both (each
# datagram's answer names its task), then from the same ports with appliance 1 drained:
# every one through appliance 2, which schedules afresh those appliance 1 had: the same
# tasks. (UDP: TCP would meet its own TIME_WAITs reusing the ports at once.)
udp_tasks() {  # the task answering a datagram from each of 40 client ports
  client /usr/bin/python3 - "$VIP" <<'PY'
import socket, sys
out = ""
for port in range(43001, 43041):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("198.18.0.10", port))
    s.settimeout(2)
    try:
        s.sendto(b"who", (sys.argv[1], 7))
        out += s.recv(64).decode()
    except OSError:
        out += "x"
    s.close()
print(out)
PY
}
test_consistent_mh() {
  local both only2 out t a1n
  a1n=$(new_conns a1)
  both=$(udp_tasks)
  out=$(ctl a1 announce --drain)
  echo "# drain: $out"
  t=$(wait_paths "198.18.2.12" 10) || { echo "# drained appliance 1 still announced: $t"; return 1; }
  echo "# appliance 1 withdrawn ${t}s after --drain; $(ctl a1 announce -L | tail -1 | tr -s ' ')"
  only2=$(udp_tasks)
  echo "# tasks by client port through both: $both; through appliance 2 only: $only2 (appliance 1 had $(($(new_conns a1) - a1n)) of the first 40)"
  ctl a1 announce --undrain
  wait_paths "198.18.2.11 198.18.2.12" 10 >/dev/null || return 1
  [[ $out == *"connections tracked: "* && $both != *x* && $both == "$only2" ]] &&
    (($(new_conns a1) - a1n > 5))
}

# Downloads running through appliance 1 when it stops ($1: TERM or KILL) continue
# through appliance 2: ECMP moves their clients' packets to it, the router's path to
# appliance 1's SNAT address falls to appliance 2's backup announcement, and appliance 2
# has their connections from appliance 1's sync daemon. Then appliance 1 is back.
downloads_across() {  # signal
  local i n1 before ok=0 through1 pids=() t0 t start=$EPOCHREALTIME
  before=$(new_conns a1)
  for i in $(seq 12); do
    ip netns exec bg-client curl -s -o /dev/null -w '%{size_download} %{time_total}' \
      --limit-rate 1200K -m 60 \
      --local-port "$((47000 + i * 10))" "http://$VIP/big" >"$RUN/dl$i" 2>&1 &
    pids+=($!)
  done
  sleep 2
  through1=$(($(new_conns a1) - before))
  t0=$EPOCHREALTIME
  kill -"$1" "$(cat "$RUN/a1.pid")"
  t=$(wait_paths "198.18.2.12" 10) || { echo "# withdrawal: $t"; return 1; }
  # Complete, and still under way when the appliance went (they take about 10 s): each
  # ended more than a second after the signal (its start counted from before the first).
  local size secs at
  at=$(awk -v a="$t0" -v b="$start" 'BEGIN {printf "%.1f", a - b}')
  for i in $(seq 12); do
    wait "${pids[i - 1]}" || continue
    size=$(cut -d' ' -f1 "$RUN/dl$i") secs=$(cut -d' ' -f2 "$RUN/dl$i")
    ((size == 12 * 1048576)) &&
      (($(awk -v s="$secs" -v k="$at" 'BEGIN {print (s > k + 1)}'))) && ok=$((ok + 1))
  done
  echo "# SIG$1 ${at}s into 12 downloads ($through1 through appliance 1): withdrawn after ${t}s; $ok of 12 complete (bytes and seconds: $(for i in $(seq 12); do printf '%s; ' "$(cat "$RUN/dl$i")"; done)); appliance 2: $(ctl a2 stats | grep -E '^ *sync_(rx_conns|installed|replaced|install_failed) ' | tr -s ' \n' ' ')"
  start a1 || return 1
  settled || return 1
  ((ok == 12 && through1 > 0))
}
test_downloads_sigterm() { downloads_across TERM; }
test_downloads_kill9() { downloads_across KILL; }

test_sigterm() {
  local t seq a
  # A refresh period longer than the BGP path's own delay (about 4 s here), so that the
  # hold is what puts appliance 2's connections in appliance 1's table before ECMP can
  # bring it their packets (without the hold, announced after about 4 s, it lacked some).
  for a in a1 a2; do ctl "$a" sysctl net.ipv4.vs.sync_refresh_period=8 >/dev/null || return 1; done
  # An idle connection (connected, then silent until told): the refresh never sends it
  # again once it has been idle for a period, so appliance 1 gets it at its restart only
  # from appliance 2's answer to its hello (every connection once more, idle ones too).
  rm -f "$RUN/idle.go"
  ip netns exec bg-client /usr/bin/python3 - "$VIP" "$RUN/idle.go" >"$RUN/idle.out" 2>&1 <<'PY' &
import os, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("198.18.0.10", 48100))
s.connect((sys.argv[1], 80))
for _ in range(900):
    if os.path.exists(sys.argv[2]):
        break
    time.sleep(0.1)
s.settimeout(10)
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
out = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    out += b
print(out.decode(errors="replace").splitlines()[-1] if out else "nothing")
PY
  local idle=$! idle_at=$EPOCHSECONDS
  kill -TERM "$(cat "$RUN/a1.pid")"
  t=$(wait_paths "198.18.2.12" 10) || { echo "# withdrawal: $t"; return 1; }
  seq=$(requests 30)
  echo "# SIGTERM: withdrawn after ${t}s; 30 new connections: $seq"
  [[ $seq != *x* ]] || return 1
  # Four slow downloads through appliance 2 while appliance 1 is down (stopped after the
  # check); restarted, appliance 1 receives their connections from appliance 2's sync
  # daemon (each connection with packets is sent again every sync_refresh_period, 2 s
  # here).
  local i pids=() got=0
  for i in 1 2 3 4; do
    ip netns exec bg-client curl -s -o /dev/null --limit-rate 100K -m 60 \
      --local-port "$((48000 + i * 10))" "http://$VIP/big" &
    pids+=($!)
  done
  sleep 1
  # Idle for longer than a refresh period before appliance 1 comes back.
  while ((EPOCHSECONDS < idle_at + 10)); do sleep 0.5; done
  # Back: announced once it serves again (its state file restored), and only once its
  # backup daemon has had one sync_refresh_period (8 s, and a second) to receive
  # appliance 2's connections: a flow ECMP then brings finds its connection.
  start a1 || return 1
  local held
  held=$(ctl a1 announce -L | grep -c 'withdrawn: held')
  t=$(wait_paths "198.18.2.11 198.18.2.12" 20) || { echo "# re-announce: $t"; return 1; }
  # Each download's connection, as each appliance lists it: state, client, VIP, task;
  # taken as soon as the router has both paths.
  downloads() { ctl "$1" ipvsadm -L -n -c | awk '$4 ~ /:480[1-4]0$/ {print $3, $4, $5, $6}' | sort; }
  local l1 l2 idle1 answer
  l1=$(downloads a1) l2=$(downloads a2)
  got=$(comm -12 <(echo "$l1") <(echo "$l2") | grep -c .)
  idle1=$(ctl a1 ipvsadm -L -n -c | grep -c ' ESTABLISHED .*:48100 ')
  # The idle connection wakes: its request answered, through whichever appliance ECMP picks.
  touch "$RUN/idle.go"
  wait "$idle"
  answer=$(cat "$RUN/idle.out")
  for i in 1 2 3 4; do kill "${pids[i - 1]}" 2>/dev/null; wait "${pids[i - 1]}" 2>/dev/null; done
  settled || return 1
  seq=$(requests 30)
  echo "# restarted: $held prefixes held at first; both paths ${t}s after its start, when it had appliance 2's $got running downloads in its table as appliance 2 has them, and $idle1 idle connection (then woken: $answer; appliance 2 $(ctl a2 stats | grep -E '^ *sync_rx_hellos ' | tr -s ' ')); 30 connections: $seq; log: $(grep -E 'worker\(s\)|held|hold over|announced' "$RUN/a1.log" | tail -4 | cut -c1-60 | tr '\n' ';')"
  if ((got != 4 || held == 0 || idle1 != 1)) || [[ $answer != "processed by task"* ]] ||
    (($(awk -v t="$t" 'BEGIN {print (t < 8)}'))); then
    echo "$l1" | sed 's/^/# a1: /'
    echo "$l2" | sed 's/^/# a2: /'
    echo "# appliance 1: $(ctl a1 stats | grep -E '^ *sync_(rx|installed|install_failed|socket)' | tr -s ' \n' ' '); appliance 2: $(ctl a2 stats | grep -E '^ *sync_(tx|queued)' | tr -s ' \n' ' ')"
    return 1
  fi
  # In this start's part of the log (after the last "stopping"): nothing announced
  # before the "worker(s)" line that says it serves, and something after it.
  [[ $seq != *x* ]] &&
    # And between them the hold and its end.
  awk '/meshlbd: stopping/ { serving = 0; held = 0; early = 0; late = 0 }
         /worker\(s\)/ { serving = 1 }
         /announce: held/ { held = serving }
         /announce: hold over/ { held = 2 * held }
         / announced$/ { if (serving && held == 2) late = 1; else early = 1 }
         END { exit !(late && !early) }' "$RUN/a1.log"
}

test_kill9() {
  local t seq
  kill -9 "$(cat "$RUN/a1.pid")"
  t=$(wait_paths "198.18.2.12" 10) || { echo "# withdrawal: $t"; return 1; }
  seq=$(requests 30)
  echo "# kill -9: withdrawn after ${t}s (its twin, and the route through it, went with it); 30 new connections: $seq"
  [[ $seq != *x* ]] || return 1
  start a1 || return 1
  settled
}

# One appliance loses every real server (weight 0 there only): it withdraws, the other
# serves on; back when they are.
test_no_real_server() {
  local i t seq
  for i in 1 2 3; do
    ctl a2 ipvsadm -e -t "$VIP:80" -r "198.18.1.1$i:80" -m -w 0 &&
      ctl a2 ipvsadm -e -u "$VIP:7" -r "198.18.1.1$i:7" -m -w 0 || return 1
  done
  t=$(wait_paths "198.18.2.11" 10) || { echo "# withdrawal: $t"; return 1; }
  seq=$(requests 30)
  echo "# appliance 2 without a usable real server: withdrawn after ${t}s ($(ctl a2 announce -L | tail -1 | tr -s ' ')); 30 connections: $seq"
  for i in 1 2 3; do
    ctl a2 ipvsadm -e -t "$VIP:80" -r "198.18.1.1$i:80" -m -w 1 &&
      ctl a2 ipvsadm -e -u "$VIP:7" -r "198.18.1.1$i:7" -m -w 1 || return 1
  done
  wait_paths "198.18.2.11 198.18.2.12" 10 >/dev/null && [[ $seq != *x* ]]
}

up || { echo "topology failed"; exit 1; }
for a in "${APPS[@]}"; do
  rm -f "$RUN/$a.state"
  start "$a" || { echo "meshlbd $a did not start"; exit 1; }
  configure "$a" || { echo "configuring $a failed"; exit 1; }
done

check "both appliances announce; the router's ECMP route spreads 100 connections over both and every task" test_both_announce
if ((failed)); then  # nothing after would say more
  for a in router "${APPS[@]}"; do grep -E "State changed|changed state|Error|error" "$RUN/$a.bird.log" | tail -8 | sed "s/^/# $a bird: /"; done
  for a in "${APPS[@]}"; do
    ip netns exec "bg-$a" birdc -s "$RUN/$a.bird.ctl" show protocols all uplink 2>&1 | sed "s/^/# $a: /"
  done
  tap_end bgp
  exit 1
fi
check "dual stack: the IPv6 VIP announced by both; the router's IPv6 ECMP route spreads curl -6 over both and every task" \
  test_ipv6_announced
check "consistent mh: the same client ports reach the same tasks through either appliance (drain, undrain)" test_consistent_mh
check "SIGTERM two seconds into 12 downloads: every one completes through the other appliance (synced, full NAT)" \
  test_downloads_sigterm
check "kill -9 two seconds into 12 downloads: every one completes through the other appliance" \
  test_downloads_kill9
check "SIGTERM: withdrawn, new connections served by the other; restarted, held one sync_refresh_period, then announced with the other's connections in its table" \
  test_sigterm
check "kill -9: the route goes with the twins, withdrawn; new connections served by the other" test_kill9
check "an appliance without a usable real server withdraws; the other serves on" test_no_real_server
if ((failed)); then
  for a in "${APPS[@]}"; do tail -5 "$RUN/$a.log" | sed "s/^/# $a: /"; done
  for a in router "${APPS[@]}"; do grep -E "State changed|changed state|Error|error" "$RUN/$a.bird.log" | tail -8 | sed "s/^/# $a bird: /"; done
  ip netns exec bg-router birdc -s "$RUN/router.bird.ctl" show protocols 2>&1 | sed 's/^/# router: /'
fi
tap_end bgp
