// The usage texts of meshlbctl and its commands, shared by meshlbctl (which prints
// them for `meshlbctl COMMAND --help` without asking meshlbd) and the commands
// themselves (`meshlbctl ipvsadm -h` through the daemon, as ipvsadm answers -h).
#pragma once

namespace meshlb {

inline constexpr char kMeshlbctlUsage[] =
    "usage: meshlbctl [--socket PATH] COMMAND [ARGS...]\n"
    "  ipvsadm ...      IPVS services and real servers (ipvsadm 1.31 syntax)\n"
    "  iptables ...     the mangle MARK and nat SNAT/MASQUERADE/DNAT rules Docker Swarm uses\n"
    "                   (iptables syntax)\n"
    "  sysctl ...       IPVS's net.ipv4.vs.* settings (sysctl syntax: NAME[=VALUE], -a, -n)\n"
    "  healthcheck ...  real servers' health checks (TCP connect, HTTP GET)\n"
    "  announce ...     the prefixes announced for BGP ECMP scale-out, drain\n"
    "  stats [--json]   per-port and per-worker counters, every drop by reason\n"
    "`meshlbctl COMMAND --help` shows a command's options; man meshlbctl(8) has them all.\n"
    "default socket: $MESHLB_SOCKET, else /run/meshlb/meshlb.sock\n"
    "as `ipvsadm` (a link named so): the ipvsadm command itself\n";

// ipvsadm -h: what meshlb's ipvsadm takes (ipvsadm's usage, less what is not here).
inline constexpr char kIpvsadmUsage[] =
    "Usage:\n"
    "  ipvsadm -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags]\n"
    "  ipvsadm -D virtual-service\n"
    "  ipvsadm -C\n"
    "  ipvsadm -R\n"
    "  ipvsadm -S [-n]\n"
    "  ipvsadm -a|e virtual-service -r server-address [options]\n"
    "  ipvsadm -d virtual-service -r server-address\n"
    "  ipvsadm -L|l [virtual-service] [options]\n"
    "  ipvsadm -Z [-t|u|f service-address]\n"
    "  ipvsadm --set tcp tcpfin udp\n"
    "  ipvsadm --start-daemon {master|backup} [daemon-options]\n"
    "  ipvsadm --stop-daemon {master|backup}\n"
    "  ipvsadm -h\n"
    "\n"
    "Commands:\n"
    "Either long or short options are allowed.\n"
    "  --add-service     -A        add virtual service with options\n"
    "  --edit-service    -E        edit virtual service with options\n"
    "  --delete-service  -D        delete virtual service\n"
    "  --clear           -C        clear the whole table\n"
    "  --restore         -R        restore rules from stdin\n"
    "  --save            -S        save rules to stdout\n"
    "  --add-server      -a        add real server with options\n"
    "  --edit-server     -e        edit real server with options\n"
    "  --delete-server   -d        delete real server\n"
    "  --list            -L|-l     list the table\n"
    "  --zero            -Z        zero counters in a service or all services\n"
    "  --set tcp tcpfin udp        set connection timeout values\n"
    "  --start-daemon              start connection sync daemon\n"
    "  --stop-daemon               stop connection sync daemon\n"
    "  --help            -h        display this help message\n"
    "\n"
    "virtual-service:\n"
    "  --tcp-service|-t  service-address   service-address is host[:port]\n"
    "  --udp-service|-u  service-address   service-address is host[:port]\n"
    "  --fwmark-service|-f fwmark          fwmark is an integer greater than zero\n"
    "\n"
    "Options:\n"
    "  --scheduler    -s scheduler         one of "
    "rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh|\n"
    "                                      twos,\n"
    "                                      the default scheduler is wlc.\n"
    "  --real-server  -r server-address    server-address is host (and port)\n"
    "  --persistent   -p [timeout]         persistent service\n"
    "  --netmask      -M netmask           persistent granularity mask\n"
    "  --gatewaying   -g                   gatewaying (direct routing) (default)\n"
    "  --ipip         -i                   ipip encapsulation (tunneling)\n"
    "  --masquerading -m                   masquerading (NAT)\n"
    "  --tun-type      type                one of ipip|gue|gre,\n"
    "                                      the default tunnel type is ipip.\n"
    "  --tun-port      port                tunnel destination port\n"
    "  --tun-nocsum                        tunnel encapsulation without checksum\n"
    "  --tun-csum                          tunnel encapsulation with checksum\n"
    "  --tun-remcsum                       tunnel encapsulation with remote checksum\n"
    "  --sched-flags  -b flags             scheduler flags (comma-separated)\n"
    "  --weight       -w weight            capacity of real server\n"
    "  --u-threshold  -x uthreshold        upper threshold of connections\n"
    "  --l-threshold  -y lthreshold        lower threshold of connections\n"
    "  --connection   -c                   output of current IPVS connections\n"
    "  --timeout                           output of timeout (tcp tcpfin udp)\n"
    "  --daemon                            output of daemon information\n"
    "  --stats                             output of statistics information\n"
    "  --rate                              output of rate information\n"
    "  --exact                             expand numbers (display exact values)\n"
    "  --thresholds                        output of thresholds information\n"
    "  --persistent-conn                   output of persistent connection info\n"
    "  --tun-info                          output of tunnel information\n"
    "  --nosort                            disable sorting output of service/server entries\n"
    "  --sort                              does nothing, for backwards compatibility\n"
    "  --ops          -o                   one-packet scheduling\n"
    "  --numeric      -n                   numeric output of addresses and ports\n"
    "  --mcast-interface interface         multicast interface for connection sync\n"
    "  --syncid sid                        syncid for connection sync (default=0)\n"
    "  --sync-maxlen length                Max sync message length (default=1472)\n"
    "  --mcast-group address               IPv4 group (default=224.0.0.81)\n"
    "  --mcast-port port                   UDP port (default=8848)\n"
    "  --mcast-ttl ttl                     Multicast TTL (default=1)\n";

inline constexpr char kIptablesUsage[] =
    "usage: meshlbctl iptables [-t mangle|nat] COMMAND [CHAIN] [MATCHES] [-j TARGET ...]\n"
    "Commands: -A CHAIN, -I CHAIN [N], -D CHAIN RULE|N, -C CHAIN RULE, -F [CHAIN], -N CHAIN,\n"
    "          -X [CHAIN], -S [CHAIN], -L [CHAIN] [-n] [-v]\n"
    "  -t mangle PREROUTING, INPUT:\n"
    "      [-s NET] [-d NET] [-p tcp|udp [--sport P] [--dport P]]\n"
    "      -j MARK --set-mark V[/M] | --set-xmark V[/M] | --and-mark V | --or-mark V | --xor-mark "
    "V\n"
    "  -t nat POSTROUTING:\n"
    "      [-m ipvs --ipvs] [-d NET] -j SNAT --to-source ADDR | -j MASQUERADE\n"
    "  -t nat PREROUTING, OUTPUT and user chains (-N, -X):\n"
    "      [-s NET] [-d NET] [-p tcp|udp [--sport P] [--dport P]] [-m addrtype --dst-type LOCAL]\n"
    "      -j DNAT --to-destination ADDR[:PORT] | -j CHAIN | -j RETURN\n"
    "-w/--wait is accepted (there is no lock to wait for); anything else is refused, named.\n";

inline constexpr char kSysctlUsage[] =
    "usage: meshlbctl sysctl [-n] [-a] [-w] net.ipv4.vs.NAME[=VALUE]...\n"
    "  -a   every setting meshlb has, with its value\n"
    "  -n   values only\n"
    "  -w   (sysctl's; NAME=VALUE writes)\n"
    "Names: expire_nodest_conn, expire_quiescent_template, conn_reuse_mode, sloppy_tcp,\n"
    "nat_icmp_send, schedule_icmp, lblc_expiration, lblcr_expiration, run_estimation\n"
    "(net.ipv4.vs. or net/ipv4/vs/ in front); the kernel's others are refused with a reason.\n";

inline constexpr char kStatsUsage[] =
    "usage: meshlbctl stats [--json]\n"
    "Per port, per worker and control-thread counters, every drop by reason "
    "(docs/operations.md).\n";

inline constexpr char kHealthcheckUsage[] =
    "usage: meshlbctl healthcheck -a|-e SERVICE -r SERVER [--tcp | --http PATH] [--expect STATUS]\n"
    "                             [--check-port PORT] [--interval SECONDS] [--timeout SECONDS]\n"
    "                             [--rise N] [--fall N]\n"
    "       meshlbctl healthcheck -d SERVICE -r SERVER\n"
    "       meshlbctl healthcheck --state SERVICE -r SERVER up|down\n"
    "       meshlbctl healthcheck -L [SERVICE] | -S\n"
    "SERVICE: -t|-u ADDR:PORT or -f MARK (as ipvsadm's); SERVER: -r ADDR[:PORT].\n"
    "A check is a TCP connect (--tcp, the default) or an HTTP GET of PATH expecting STATUS\n"
    "(200); every --interval (2 s) with --timeout (2 s); --fall failures in a row (3) take\n"
    "the server to weight 0, --rise successes (2) bring it back.\n";

inline constexpr char kAnnounceUsage[] =
    "usage: meshlbctl announce -a PREFIX [-t|-u ADDR:PORT | -f MARK]...\n"
    "       meshlbctl announce -d PREFIX\n"
    "       meshlbctl announce --drain | --undrain\n"
    "       meshlbctl announce -L | -S\n"
    "PREFIX (a VIP/32, or a wider prefix) is announced while one of its services (the named\n"
    "ones, else every address service inside it) has a real server of weight above 0: as a\n"
    "route through lb0 in meshlbd's announce table (--announce-table, 4242), which the\n"
    "routing daemon exports (docs/scale-out.md) and which goes when meshlbd goes. --drain\n"
    "withdraws every prefix (kept across restarts) and says how many connections remain.\n";

}  // namespace meshlb
