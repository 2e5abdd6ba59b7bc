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
  uint64_t seed = 1;            // the core's (meshlbd: random per start)
  bool task_route = true;       // a route towards the tasks' network
  bool task_neighbours = true;  // their MACs resolved
  bool vip_local = true;        // the VIP 198.18.0.100 an address of lb0's
  bool default_route = false;   // 0.0.0.0/0 via the client 198.18.0.10 on lb0
  // A master sync daemon runs (Snapshot::sync_master); what the core queues for it
  // goes into *synced (null: no queue).
  bool sync_master = false;
  std::vector<SyncRecord>* synced = nullptr;
  // The overlay network of the golden packets: vxlan4097 (VTEP 198.19.0.1, MAC
  // 02:42:c6:12:80:02, 198.18.128.2/24), task 198.18.128.11 on node 198.19.0.2, as
  // `ip link add ... type vxlan`, `bridge fdb add`, `ip neigh add` program it.
  bool overlay = false;
  bool overlay_fdb = true;
  // The overlay over an IPv6 underlay instead: its VTEP 2001:db8:1::1 on lb1, the node
  // 2001:db8:1::2.
  bool overlay_v6_underlay = false;
  // A second overlay network beside it: vxlan4098 (VNI 4098, the same VTEP, MAC
  // 02:42:c6:12:81:02, 198.18.129.2/24), task 198.18.129.11 on node 198.19.0.3.
  bool second_overlay = false;
  // Their UDP ports (Swarm's --data-path-port; 4789 unless set).
  uint16_t overlay_port = 4789, second_overlay_port = 4789;
  // Persistence templates shared with other appliances' cores (as meshlbd's workers
  // share them); null: the core keeps its own.
  PersistTable* templates = nullptr;
  // The core counts its connections per real server (ActiveConn/InActConn), which the
  // connection-count schedulers read; off: they see none.
  bool count_connections = false;
};

class Appliance {
 public:
  explicit Appliance(std::vector<std::string> config, ApplianceOptions o = {})
      : opt_(o),
        stats_(BackendId::kSlots, Backing::kLazy),
        counts_(o.count_connections ? 2 * BackendId::kSlots : 0, Backing::kLazy),
        core_(counters_, coreConfig(o, stats_.get(), counts_.get())) {
    for (const std::string& line : config) run(line);
    auto ip = [](const char* s) { return IpAddr::parse(s).value(); };
    // The VIP is an alias on lb0, as IPVS needs it local (ip addr add 198.18.0.100/32 dev lb0).
    kernel_.addrs = {{10, ip("198.18.0.1"), 24}, {11, ip("198.19.0.1"), 16}};
    if (o.vip_local) kernel_.addrs.push_back({10, ip("198.18.0.100"), 32});
    kernel_.routes = {{ip("198.18.0.0"), 24, {}, 10}};
    if (o.task_route) kernel_.routes.push_back({ip("198.19.0.0"), 16, {}, 11});
    if (o.default_route) kernel_.routes.push_back({ip("0.0.0.0"), 0, ip("198.18.0.10"), 10});
    kernel_.neighs = {{10, ip("198.18.0.10"), mac(0, 1)}};
    if (o.task_neighbours) {
      for (uint8_t t = 1; t <= 3; ++t) {
        kernel_.neighs.push_back(
            {11, ip(("198.19.1." + std::to_string(t)).c_str()), mac(1, 0x10 + t)});
      }
    }
    // IPv6 beside it (tests/data/gen_golden.py's core6_*): lb0 2001:db8::1/64 with the
    // VIP 2001:db8::100/128, lb1 2001:db8:1::1/64 towards tasks 2001:db8:1::11-13.
    // Each device's link-local address first, as the kernel lists it (up before any other).
    kernel_.addrs.push_back({10, ip("fe80::1"), 64});
    kernel_.addrs.push_back({11, ip("fe80::2"), 64});
    kernel_.addrs.push_back({10, ip("2001:db8::1"), 64});
    kernel_.addrs.push_back({11, ip("2001:db8:1::1"), 64});
    if (o.vip_local) kernel_.addrs.push_back({10, ip("2001:db8::100"), 128});
    kernel_.routes.push_back({ip("2001:db8::"), 64, {}, 10});
    if (o.task_route) kernel_.routes.push_back({ip("2001:db8:1::"), 64, {}, 11});
    kernel_.neighs.push_back({10, ip("2001:db8::10"), mac(0, 1)});
    if (o.task_neighbours) {
      for (uint8_t t = 1; t <= 3; ++t) {
        kernel_.neighs.push_back(
            {11, ip(("2001:db8:1::1" + std::to_string(t)).c_str()), mac(1, 0x10 + t)});
      }
    }
    if (o.overlay) {
      constexpr int kVxlan = 20;
      kernel_.links = {{10, 1500}, {11, 1500}, {kVxlan, 1450}};
      kernel_.vxlans = {{kVxlan,
                         4097,
                         o.overlay_port,
                         ip(o.overlay_v6_underlay ? "2001:db8:1::1" : "198.19.0.1"),
                         {2, 0x42, 0xc6, 0x12, 0x80, 2},
                         1450,
                         true}};
      kernel_.addrs.push_back({kVxlan, ip("198.18.128.2"), 24});
      // IPv6 inside the same overlay: 2001:db8:80::2/64, task 2001:db8:80::11 (its MAC).
      kernel_.addrs.push_back({kVxlan, ip("fe80::42:c6ff:fe12:8002"), 64});
      kernel_.addrs.push_back({kVxlan, ip("2001:db8:80::2"), 64});
      kernel_.routes.push_back({ip("2001:db8:80::"), 64, {}, kVxlan});
      kernel_.neighs.push_back({kVxlan, ip("2001:db8:80::11"), {2, 0x42, 0xc6, 0x12, 0x80, 0x0b}});
      kernel_.routes.push_back({ip("198.18.128.0"), 24, {}, kVxlan});
      const std::array<uint8_t, 6> task{2, 0x42, 0xc6, 0x12, 0x80, 0x0b};
      kernel_.neighs.push_back({kVxlan, ip("198.18.128.11"), task});
      const char* node = o.overlay_v6_underlay ? "2001:db8:1::2" : "198.19.0.2";
      if (o.overlay_fdb) kernel_.fdb.push_back({kVxlan, task, ip(node)});
      kernel_.neighs.push_back({11, ip(node), mac(0, 3)});  // the node, on the underlay
    }
    if (o.second_overlay) {
      constexpr int kVxlan2 = 21;
      kernel_.links.push_back({kVxlan2, 1450});
      kernel_.vxlans.push_back({kVxlan2,
                                4098,
                                o.second_overlay_port,
                                ip("198.19.0.1"),
                                {2, 0x42, 0xc6, 0x12, 0x81, 2},
                                1450,
                                true});
      kernel_.addrs.push_back({kVxlan2, ip("198.18.129.2"), 24});
      kernel_.routes.push_back({ip("198.18.129.0"), 24, {}, kVxlan2});
      const std::array<uint8_t, 6> task{2, 0x42, 0xc6, 0x12, 0x81, 0x0b};
      kernel_.neighs.push_back({kVxlan2, ip("198.18.129.11"), task});
      kernel_.fdb.push_back({kVxlan2, task, ip("198.19.0.3")});
      kernel_.neighs.push_back({11, ip("198.19.0.3"), mac(0, 4)});
    }
    publish();
  }

  // A peer's master daemon started (meshlbd raises Snapshot::sync_resend).
  void peerStarted() {
    ++resend_;
    publish();
  }
  // A meshlbctl command ("ipvsadm ...", "iptables ..."), then a new snapshot.
  void run(const std::string& line) {
    bool changed;
    auto r = commands_.run(absl::StrSplit(line, ' ', absl::SkipEmpty()), "", &changed);
    ASSERT_TRUE(r.ok()) << line << ": " << r.status();
    if (snap_) publish();
  }

  // Processes `frame` as the worker does (with an mbuf's headroom in front of it) and
  // leaves in it what goes out: moved and cut as the verdict says.
  Verdict send(Bytes& frame, uint16_t in_port, uint32_t now_ms = 1000) {
    core_.setNow(now_ms);
    constexpr size_t kHeadroom = 128, kTailroom = 1024;
    Bytes buf(kHeadroom + frame.size() + kTailroom);
    std::copy(frame.begin(), frame.end(), buf.begin() + kHeadroom);
    const Verdict v = core_.process(buf.data() + kHeadroom, static_cast<uint32_t>(frame.size()),
                                    in_port, false, kHeadroom, kTailroom);
    const size_t start = kHeadroom + static_cast<ptrdiff_t>(v.head_adjust);
    const size_t len = v.length ? v.length : buf.size() - kTailroom - start;
    frame.assign(buf.begin() + static_cast<ptrdiff_t>(start),
                 buf.begin() + static_cast<ptrdiff_t>(start + len));
    return v;
  }

  const WorkerCounters& counters() const { return counters_; }
  const BackendStats& stats(BackendId id) const { return stats_[id.slot()]; }
  const Snapshot& snapshot() const { return *snap_; }
  const Commands& commands() const { return commands_; }
  PacketCore& core() { return core_; }

 private:
  static CoreConfig coreConfig(const ApplianceOptions& o, BackendStats* stats,
                               std::atomic<uint32_t>* counts) {
    CoreConfig c;
    c.conn_counts = counts;
    c.backend_stats = stats;
    c.index = o.index;
    c.workers = o.workers;
    c.flow_capacity = o.flow_capacity;
    c.seed = o.seed;
    c.templates = o.templates;
    if (o.synced) {
      c.sync_out = [](void* ctx, const SyncRecord& r) {
        static_cast<std::vector<SyncRecord>*>(ctx)->push_back(r);
        return true;
      };
      c.sync_ctx = o.synced;
    }
    return c;
  }
  void publish() {
    auto next = buildSnapshot(commands_.services(), commands_.nat(), commands_.nat6(), kernel_,
                              {{10, mac(0, 2)}, {11, mac(1, 2)}}, ++generation_, snap_.get());
    next->sync_master = opt_.sync_master;
    next->sync_resend = resend_;
    core_.setSnapshot(next.get());
    old_ = std::move(snap_);  // a real worker may read the old one until its next burst
    snap_ = std::move(next);
  }

  ApplianceOptions opt_;
  uint32_t resend_ = 0;  // Snapshot::sync_resend: peerStarted() raises it
  Commands commands_;
  KernelView kernel_;
  std::unique_ptr<Snapshot> snap_, old_;
  uint64_t generation_ = 0;
  WorkerCounters counters_;
  HugeArray<BackendStats> stats_;
  HugeArray<std::atomic<uint32_t>> counts_;
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
