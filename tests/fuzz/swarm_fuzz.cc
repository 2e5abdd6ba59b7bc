// libFuzzer harness: what meshlb-swarm takes from the outside, a Swarm manager's
// JSON documents and the appliance's listings. The input is eight parts separated by
// "\n\x1e\n" (record separator): /swarm, /networks/NAME, /nodes, /services, /tasks,
// then `ipvsadm -L -n`, `iptables -t mangle -S`, `iptables -t nat -S`. Oracles: no
// crash or exception; every planned command is a well-formed meshlbctl command; every
// served task is inside the network's subnet.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "cluster.h"
#include "fuzz_check.h"
#include "plan.h"

using namespace meshlb;
using namespace meshlb::swarm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string in(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts = absl::StrSplit(in, "\n\x1e\n");
  parts.resize(8);
  auto cluster = parseCluster({parts[0], parts[1], parts[2], parts[3], parts[4]});
  Options o;
  o.overlay_addr = *IpAddr::parse("198.18.128.250");
  o.publish = {*IpAddr::parse("198.18.0.1")};
  auto applied = parseApplied(parts[5], parts[6], parts[7], o);
  if (!cluster.ok() || !applied.ok()) return 0;
  Draining draining;
  const Plan plan = makePlan(*cluster, *applied, o, draining, Clock::time_point{});
  for (const auto& c : plan.commands) {
    FUZZ_CHECK(c.size() >= 3);
    FUZZ_CHECK(c[0] == "ipvsadm" || c[0] == "iptables");
    for (const auto& w : c) FUZZ_CHECK(!w.empty() && w.find(' ') == std::string::npos);
  }
  for (const auto& s : cluster->services) {
    for (const auto& t : s.tasks) FUZZ_CHECK(cluster->network.subnet.contains(t.addr));
  }
  return 0;
}
