// IPVS's sysctls (net.ipv4.vs.*) that change what meshlb does: set through
// `meshlbctl sysctl` (control/sysctl.cc), kept in the service model and its state
// file, read by the workers from the snapshot.
#pragma once

#include <cstdint>

namespace meshlb {

// With the kernel's defaults (docs/ipvsadm.md, "Sysctls").
struct IpvsSysctls {
  friend bool operator==(const IpvsSysctls&, const IpvsSysctls&) = default;
  uint32_t expire_nodest_conn = 0;         // 1: a packet for a deleted server ends its connection
  uint32_t expire_quiescent_template = 0;  // 1: a template to a weight-0 server is void
  uint32_t conn_reuse_mode = 1;            // a SYN on a closing connection: bit 0 reschedules,
                                           // bit 1 also FIN_WAIT of -g/-i connections
  uint32_t sloppy_tcp = 0;                 // 1: any TCP packet may start a connection
  uint32_t nat_icmp_send = 0;              // 1: a -m server's packet no connection has gets
                                           // ICMP port unreachable (and is dropped)
  uint32_t schedule_icmp = 0;              // 1: a client's ICMP error no connection has is
                                           // scheduled to a real server
  uint32_t lblc_expiration = 24 * 60 * 60, lblcr_expiration = 24 * 60 * 60;  // seconds
  uint32_t run_estimation = 1;  // 0: --rate is not estimated (control thread)
  // Seconds between a master's re-sends of a connection that had packets meanwhile
  // (0: kSyncRefreshMs, a minute); IPVS's counts packets instead unless it is set.
  uint32_t sync_refresh_period = 0;
};

}  // namespace meshlb
