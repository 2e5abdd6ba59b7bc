// What the daemon lists, as pure functions of what it read from the dataplane:
// ipvsadm -L -c's entries from the workers' connection copies, and
// `meshlbctl stats` (text and JSON from one list of names and values).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "ipvsadm.h"
#include "meshlb/counters.h"
#include "meshlb/flow_table.h"
#include "meshlb/persist.h"
#include "service_model.h"

namespace meshlb {

// One worker's copied connections, `now_ms` being its clock when it copied them.
template <class Addr>
void appendConnEntries(const Flow<Addr>* flows, uint32_t count, uint32_t now_ms,
                       std::vector<ConnEntry>& out) {
  for (uint32_t i = 0; i < count; ++i) {
    const Flow<Addr>& f = flows[i];
    ConnEntry c;
    c.protocol = f.proto();
    c.client = IpAddr::of(f.client), c.virt = IpAddr::of(f.vip), c.dest = IpAddr::of(f.backend);
    c.cport = __builtin_bswap16(f.cport), c.vport = __builtin_bswap16(f.vport);
    c.dport = __builtin_bswap16(f.bport);
    c.state = connStateName(f.connState());
    const auto left = static_cast<int32_t>(f.expires_ms - now_ms);
    c.expires_s = left > 0 ? static_cast<uint32_t>(left) / 1000 : 0;
    out.push_back(std::move(c));
  }
}

// The persistence templates, as /proc/net/ip_vs_conn lists them: the masked client
// address with port 0; the service's address and port (0 for a port-0 service, the
// mark as an address for a firewall mark's, whose protocol is IP); the real server's
// (port 0 for those two); state NONE (UDP for a UDP service's, as the kernel names
// state 0 of each protocol).
void appendTemplates(const PersistTable& templates, const ServiceModel& model, uint32_t now_ms,
                     std::vector<ConnEntry>& out);
// By real server (BackendId::raw()), how many live templates name it: ipvsadm
// --persistent-conn's PersistConn.
absl::flat_hash_map<uint32_t, uint32_t> templateCounts(const PersistTable& templates,
                                                       uint32_t now_ms);

// `meshlbctl stats`: named groups of named counters.
struct StatsGroup {
  std::string kind;                                         // "port", "worker", "control"
  std::vector<std::pair<std::string, std::string>> labels;  // e.g. {"name", "net_af_packet0"}
  std::vector<std::pair<std::string, uint64_t>> values;
};

// A worker's group: its index, lcore and every counter it has (forEachCounter).
StatsGroup workerStats(uint16_t worker, unsigned lcore, const WorkerCounters& c);

// Text: "KIND INDEX LABELS" then one "  name value" line per counter. JSON:
// {"ports":[...],"workers":[...],"control":{...}}, numbers as numbers; labels and
// counters of a group are the keys of its object.
std::string renderStats(const std::vector<StatsGroup>& groups, bool json);

}  // namespace meshlb
