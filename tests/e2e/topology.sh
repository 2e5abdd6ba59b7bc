# Test topology for meshlb, sourced by tests/e2e/*.sh and scripts/demo.
#
#   mlb-client (198.18.0.10) --veth-- [p0] meshlbd in mlb-lb [p1] --veth-- mlb-seg (bridge)
#                                     twins: lb0 198.18.0.1/24          |-- mlb-t1 198.18.1.11
#                                            lb1 198.18.1.1/24          |-- mlb-t2 198.18.1.12
#                                                                       '-- mlb-t3 198.18.1.13
# Each task serves HTTP on :80 answering "processed by task N" (8080 and 8090 are
# redirected to it, as in a Swarm task), a large file for long downloads, an iperf3
# server and a UDP echo on :7. Addresses are from
# 198.18.0.0/15 only. Everything is torn down by topo_down, also on failure.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MLB_NS=(mlb-lb mlb-client mlb-seg mlb-t1 mlb-t2 mlb-t3 mlb-huge)
MLB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MLB_BUILD=${MLB_BUILD:-$MLB_ROOT/build}
MLB_RUN=${MLB_RUN:-/tmp/meshlb-e2e}
MLB_SOCK=$MLB_RUN/meshlb.sock
MLB_VIP=198.18.0.1

lbx() { ip netns exec mlb-lb "$@"; }

# The task numbers answering COUNT HTTP requests to VIP:PORT, in order ("123123").
task_sequence() {  # port, count
  local seq="" _
  for _ in $(seq "$2"); do
    seq+=$(ip netns exec mlb-client curl -s -m 5 "http://$MLB_VIP:$1/" | sed -n 's/^processed by task //p')
  done
  echo "$seq"
}
ctl() { ip netns exec mlb-lb "$MLB_BUILD/control/meshlbctl" --socket "$MLB_SOCK" "$@"; }
client() { ip netns exec mlb-client "$@"; }

topo_down() {
  teardown "$MLB_RUN/meshlbd.pid" "${MLB_NS[@]}"
  rm -rf /etc/netns/mlb-lb
}

topo_up() {
  topo_down
  mkdir -p "$MLB_RUN"
  # The appliance namespace's own /etc/hosts (ip netns exec mounts it there): names for
  # the tasks, as an operator's resolver would give them (ipvsadm without -n).
  mkdir -p /etc/netns/mlb-lb
  printf '127.0.0.1 localhost\n198.18.1.11 task-one\n198.18.1.12 task-two\n198.18.1.13 task-three\n' \
    >/etc/netns/mlb-lb/hosts
  rm -f "$MLB_RUN/meshlbd.log"  # appended to by every meshlbd start of this run
  for ns in "${MLB_NS[@]}"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
  # client <-> appliance port 0
  ip link add c0 netns mlb-client type veth peer name p0 netns mlb-lb
  # .10 is the usual client; .11 and .12 are for checks that must not meet a tracked
  # connection left by an earlier check (a new SYN from the same client port reuses
  # a TIME_WAIT entry and its server, as IPVS does with Swarm's conn_reuse_mode=0).
  for a in 10 11 12; do ip -n mlb-client addr add "198.18.0.$a/24" dev c0; done
  ip -n mlb-client link set c0 up
  ip netns exec mlb-client ethtool -K c0 tx off >/dev/null
  # appliance port 1 <-> the task segment
  ip link add p1 netns mlb-lb type veth peer name s0 netns mlb-seg
  ip -n mlb-seg link add br0 type bridge
  ip -n mlb-seg link set br0 up
  ip -n mlb-seg link set s0 master br0 up
  for i in 1 2 3; do
    ip link add eth0 netns "mlb-t$i" type veth peer name "s$i" netns mlb-seg
    ip -n mlb-seg link set "s$i" master br0 up
    ip -n "mlb-t$i" addr add "198.18.1.1$i/24" dev eth0
    ip -n "mlb-t$i" link set eth0 up
    ip -n "mlb-t$i" route add default via 198.18.1.1
    ip netns exec "mlb-t$i" ethtool -K eth0 tx off >/dev/null
  done
}

# Serves HTTP, a 64 MiB file, iperf3 and UDP echo in every task.
tasks_serve() {
  for i in 1 2 3; do
    local dir=$MLB_RUN/t$i
    mkdir -p "$dir"
    echo "processed by task $i" > "$dir/index.html"
    [[ -f $dir/big ]] || head -c $((64 << 20)) /dev/zero > "$dir/big"
    # As Docker does inside a task of a service published with fwmark routing (the
    # real server is TASK_IP:0, so the published port arrives): published -> target.
    ip netns exec "mlb-t$i" nft -f - <<'NFT'
table ip mlb_task {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    tcp dport { 8080, 8090 } redirect to :80
  }
}
NFT
    # Subshells, so the servers are no jobs of the caller (topo_down kills them).
    (ip netns exec "mlb-t$i" /usr/bin/python3 -u -m http.server 80 --bind 198.18.1.1$i \
      --directory "$dir" >"$MLB_RUN/http-t$i.log" 2>&1 &)
    ip netns exec "mlb-t$i" iperf3 -s -D -B "198.18.1.1$i" --logfile "$MLB_RUN/iperf-t$i.log"
    (ip netns exec "mlb-t$i" /usr/bin/python3 -u -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 7))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(b"task %s: " % sys.argv[2].encode() + data, peer)
' "198.18.1.1$i" "$i" >"$MLB_RUN/udp-t$i.log" 2>&1 &)
  done
  for i in 1 2 3; do
    for _ in $(seq 50); do
      ip netns exec "mlb-t$i" bash -c "echo > /dev/tcp/198.18.1.1$i/80" 2>/dev/null && break
      sleep 0.1
    done
  done
}

# The EAL arguments of data port N: MLB_PMD=af_packet (default) or af_xdp.
port_args() {  # port, queues
  case ${MLB_PMD:-af_packet} in
    af_packet) echo "--vdev net_af_packet$1,iface=p$1,qpairs=$2" ;;
    af_xdp) echo "--vdev net_af_xdp$1,iface=p$1,start_queue=0,queue_count=$2" ;;
    *) echo "unknown MLB_PMD '$MLB_PMD'" >&2; return 1 ;;
  esac
}

# Starts meshlbd in mlb-lb. $1: number of workers (1 or 2); more args go to meshlbd.
lb_start() {
  local workers=${1:-1}
  if (($#)); then shift; fi
  local lcores='0@0,1@1' qpairs=1
  if ((workers == 2)); then lcores='0@0,1@1,2@1'; qpairs=2; fi
  rm -f "$MLB_SOCK"
  # Not through lbx: $! must be meshlbd itself (ip netns exec execs it), not a subshell.
  ip netns exec mlb-lb "$MLB_BUILD/control/meshlbd" --lcores "$lcores" --no-huge -m 512 --no-pci \
    --file-prefix "mlb-e2e-$$" --log-level 'pmd.*:error' \
    $(port_args 0 "$qpairs") $(port_args 1 "$qpairs") \
    -- --control-socket "$MLB_SOCK" "$@" >>"$MLB_RUN/meshlbd.log" 2>&1 &
  echo $! > "$MLB_RUN/meshlbd.pid"
  for _ in $(seq 100); do
    [[ -S $MLB_SOCK ]] && break
    if ! kill -0 "$(cat "$MLB_RUN/meshlbd.pid")" 2>/dev/null; then
      echo "meshlbd died:" >&2; cat "$MLB_RUN/meshlbd.log" >&2; return 1
    fi
    sleep 0.1
  done
  [[ -S $MLB_SOCK ]] || { echo "meshlbd did not open its socket" >&2; return 1; }
  # The operator's side, and all of it: addresses on the twins (meshlbd keeps the
  # kernel off p0 and p1, sets the twins' own sysctls and resolves next hops itself).
  lbx ip addr add 198.18.0.1/24 dev lb0
  lbx ip addr add 198.18.1.1/24 dev lb1
  lbx ip link set lb0 up
  lbx ip link set lb1 up
}
