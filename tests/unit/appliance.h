// A PacketCore over a snapshot built the production way: meshlbctl commands into
// Commands, a kernel view of the twins, buildSnapshot. No EAL, no root. Shared by
// the packet-core and scheduler tests.
//
// The appliance: port 0 (twin lb0, 198.18.0.1/24, MAC 02:00:00:00:00:02) towards
// the client 198.18.0.10; port 1 (twin lb1, 198.19.0.1/16, MAC 02:00:00:00:01:02)
// towards the tasks 198.19.1.1-3 (MACs 02:00:00:00:01:11-13). The VIP is
// 198.18.0.100, as in tests/data/gen_golden.py.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "commands.h"
#include "golden.h"
#include "meshlb/packet_core.h"
#include "snapshot_builder.h"

namespace meshlb::test {

inline std::array<uint8_t, 6> mac(uint8_t a, uint8_t b) { return {2, 0, 0, 0, a, b}; }

struct ApplianceOptions {
  uint16_t index = 0, workers = 1;
  uint32_t flow_capacity = 1024;
  bool task_route = true;       // a route towards the tasks' network
  bool task_neighbours = true;  // their MACs resolved
};

class Appliance {
 public:
  explicit Appliance(std::vector<std::string> config, ApplianceOptions o = {})
      : opt_(o),
        stats_(std::make_unique<BackendStats[]>(BackendId::kSlots)),
        core_(counters_, coreConfig(o, stats_.get())) {
    for (const std::string& line : config) run(line);
    auto ip = [](const char* s) { return IpAddr::parse(s).value(); };
    // The VIP is an alias on lb0, as IPVS needs it local (ip addr add 198.18.0.100/32 dev lb0).
    kernel_.addrs = {
        {10, ip("198.18.0.1"), 24}, {10, ip("198.18.0.100"), 32}, {11, ip("198.19.0.1"), 16}};
    kernel_.routes = {{ip("198.18.0.0"), 24, {}, 10}};
    if (o.task_route) kernel_.routes.push_back({ip("198.19.0.0"), 16, {}, 11});
    kernel_.neighs = {{10, ip("198.18.0.10"), mac(0, 1)}};
    if (o.task_neighbours) {
      for (uint8_t t = 1; t <= 3; ++t) {
        kernel_.neighs.push_back(
            {11, ip(("198.19.1." + std::to_string(t)).c_str()), mac(1, 0x10 + t)});
      }
    }
    publish();
  }

  // A meshlbctl command ("ipvsadm ...", "iptables ..."), then a new snapshot.
  void run(const std::string& line) {
    bool changed;
    auto r = commands_.run(absl::StrSplit(line, ' ', absl::SkipEmpty()), "", &changed);
    ASSERT_TRUE(r.ok()) << line << ": " << r.status();
    if (snap_) publish();
  }

  Verdict send(Bytes& frame, uint16_t in_port, uint32_t now_ms = 1000) {
    core_.setNow(now_ms);
    return core_.process(frame.data(), static_cast<uint32_t>(frame.size()), in_port);
  }

  const WorkerCounters& counters() const { return counters_; }
  const BackendStats& stats(BackendId id) const { return stats_[id.slot()]; }
  const Snapshot& snapshot() const { return *snap_; }
  const Commands& commands() const { return commands_; }
  PacketCore& core() { return core_; }

 private:
  static CoreConfig coreConfig(const ApplianceOptions& o, BackendStats* stats) {
    CoreConfig c;
    c.backend_stats = stats;
    c.index = o.index;
    c.workers = o.workers;
    c.flow_capacity = o.flow_capacity;
    c.seed = 1;
    return c;
  }
  void publish() {
    auto next = buildSnapshot(commands_.services(), commands_.nat(), kernel_,
                              {{10, mac(0, 2)}, {11, mac(1, 2)}}, ++generation_, snap_.get());
    core_.setSnapshot(next.get());
    old_ = std::move(snap_);  // a real worker may read the old one until its next burst
    snap_ = std::move(next);
  }

  ApplianceOptions opt_;
  Commands commands_;
  KernelView kernel_;
  std::unique_ptr<Snapshot> snap_, old_;
  uint64_t generation_ = 0;
  WorkerCounters counters_;
  std::unique_ptr<BackendStats[]> stats_;
  PacketCore core_;
};

// The Swarm-style published service of the golden packets: VIP:8080 -> tasks :80.
inline std::vector<std::string> httpService(const char* sched = "rr", bool snat = true,
                                            const char* weights = "1 1 1") {
  std::vector<std::string> c{std::string("ipvsadm -A -t 198.18.0.100:8080 -s ") + sched};
  std::vector<std::string> w = absl::StrSplit(weights, ' ');
  for (int t = 1; t <= 3; ++t) {
    c.push_back("ipvsadm -a -t 198.18.0.100:8080 -r 198.19.1." + std::to_string(t) + ":80 -m -w " +
                w[t - 1]);
  }
  if (snat) {
    c.push_back(
        "iptables -t nat -A POSTROUTING -m ipvs --ipvs -d 198.19.0.0/16 -j SNAT "
        "--to-source 198.19.0.1");
  }
  return c;
}

}  // namespace meshlb::test
