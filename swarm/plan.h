// The reconciler's pure part: from what the Swarm wants (Cluster) and what the
// appliance has (its own listings, parsed), the meshlbctl commands that move the
// appliance to the Swarm's state, in an order that never drops traffic:
//   new port:      service, its real servers, then the MARK rule that steers to it;
//   new task:      real server (weight 1) once its overlay entries exist;
//   leaving task:  weight 0 while Docker stops it (no new connections, existing ones
//                  continue), deleted once it has no connections, once its task has
//                  stopped, or at the drain timeout; a task that is gone: deleted;
//   removed port:  MARK rule first, then the service.
// The agent owns the fwmark services and MARK rules with marks in its range, and its
// SNAT rule; everything else on the appliance is left alone.
#pragma once

#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cluster.h"

namespace meshlb::swarm {

struct Options {
  IpAddr overlay_addr;          // the appliance's address on the served network
  std::vector<IpAddr> publish;  // published addresses (-d of the MARK rules); empty: any
  std::string scheduler = "rr";
  uint32_t mark_base = 0x100000;  // tcp: base + port, udp: base + 0x10000 + port
  std::chrono::seconds drain_timeout{60};
};

uint32_t markOf(const Options& o, Proto p, uint16_t published);
bool ownsMark(const Options& o, uint32_t mark);

// The appliance's state as far as the agent owns it.
struct Applied {
  struct Dest {
    uint32_t weight = 0;
    uint64_t active = 0, inactive = 0;
  };
  struct Service {
    std::string scheduler;
    std::map<std::string, Dest> dests;  // "IP:PORT"
  };
  std::map<uint32_t, Service> services;                  // fwmark -> service
  std::map<uint32_t, std::set<std::string>> mark_rules;  // fwmark -> PREROUTING rule specs
  std::set<std::string> snat_rules;                      // POSTROUTING rule specs
};

// From `ipvsadm -L -n`, `iptables -t mangle -S` and `iptables -t nat -S`.
absl::StatusOr<Applied> parseApplied(absl::string_view ipvs_list, absl::string_view mangle_rules,
                                     absl::string_view nat_rules, const Options& o);

using Clock = std::chrono::steady_clock;
// Real servers at weight 0 that the Swarm no longer has, and since when.
using Draining = std::map<std::string, Clock::time_point>;  // "MARK IP:PORT"

struct Plan {
  std::vector<std::vector<std::string>> commands;  // each one meshlbctl argument vector
  // Tasks whose overlay entries (FDB, neighbour) must exist: the Swarm's, and those
  // still draining on the appliance. Address -> node.
  std::map<IpAddr, IpAddr> overlay;
  size_t ports = 0, servers = 0, draining = 0;
};

Plan makePlan(const Cluster& c, const Applied& a, const Options& o, Draining& draining,
              Clock::time_point now);

// The MARK rule spec for a port, as `iptables -S` prints it (without "-A CHAIN").
std::string markRuleSpec(const Options& o, Proto p, uint16_t port, const IpAddr* dst);
std::string snatRuleSpec(const Options& o, const Prefix& subnet);

}  // namespace meshlb::swarm
