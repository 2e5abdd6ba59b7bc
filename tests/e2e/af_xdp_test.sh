#!/usr/bin/env bash
# The same appliance on AF_XDP ports (net_af_xdp on the veths): the dataplane is
# PMD-agnostic, and this PMD takes frames away from the kernel. Root only (a TAP skip otherwise).
set -uo pipefail
if [[ $EUID -ne 0 ]]; then echo "1..0 # SKIP needs root (network namespaces)"; exit 0; fi
source "$(dirname "$0")/topology.sh"
trap topo_down EXIT
export MLB_PMD=af_xdp

topo_up
tasks_serve
lb_start 1 || exit 1
ctl ipvsadm -A -t $MLB_VIP:8080 -s rr || exit 1
for i in 1 2 3; do ctl ipvsadm -a -t $MLB_VIP:8080 -r 198.18.1.1$i:80 -m || exit 1; done
ctl iptables -t nat -A POSTROUTING -m ipvs --ipvs -d 198.18.1.0/24 -j SNAT --to-source 198.18.1.1 || exit 1

rr_nine() { local seq; seq=$(task_sequence 8080 9); echo "# $seq"; [[ $seq == 123123123 ]]; }
check "af_xdp: rr over three tasks" rr_nine
ctl ipvsadm -A -t $MLB_VIP:5201 -s rr && ctl ipvsadm -a -t $MLB_VIP:5201 -r 198.18.1.11:5201 -m
iperf_tcp() {
  local bytes
  bytes=$(iperf_received 2 $MLB_VIP client) || return 1
  echo "# iperf3 received $bytes bytes in 2 s"
  ((bytes > 1000000))
}
check "af_xdp: iperf3 TCP" iperf_tcp
((failed == 0)) || tail -20 "$MLB_RUN/meshlbd.log" | sed 's/^/# /'
tap_end "e2e af_xdp"
