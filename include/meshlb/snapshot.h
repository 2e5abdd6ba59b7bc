// The immutable configuration a worker reads: services and their backends with
// scheduler tables, SNAT rules, and the mirrored addresses, routes and neighbours
// of the kernel twins. Built by the control thread, published with one atomic
// pointer store, freed through rte_rcu_qsbr once every worker has passed a
// quiescent state. Workers never write it. (IPv4 dataplane; see docs/operations.md.)
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "meshlb/flow_table.h"
#include "meshlb/maglev.h"

namespace meshlb {

enum class Scheduler : uint8_t { kRr, kWrr, kMh };

struct BackendSnap {
  uint32_t addr = 0;  // network order
  uint16_t port = 0;  // network order; 0 keeps the packet's destination port
  uint32_t weight = 0;
  uint32_t id = 0;    // RealServer::id
};

// Workers keep scheduler positions per slot, across snapshots.
constexpr uint32_t kServiceSlots = 65536;

struct ServiceSnap {
  uint32_t slot = 0;  // < kServiceSlots, stable while the service exists
  uint32_t fwmark = 0;  // non-zero: a firewall-mark service (any protocol; vip/vport unused)
  uint8_t proto = 0;
  uint32_t vip = 0;    // network order
  uint16_t vport = 0;  // network order
  Scheduler sched = Scheduler::kRr;
  std::vector<BackendSnap> backends;  // sorted by address and port
  uint32_t max_weight = 0, weight_gcd = 1;
  // ids are backend index + 1. Shared between snapshots while the backends are
  // unchanged: a neighbour or route change must not rebuild every Maglev table.
  std::shared_ptr<const MaglevTable> maglev;
};

struct SnatRule {
  uint32_t net = 0, mask = 0;  // network order; mask 0 matches everything
  bool masquerade = false;     // source = the egress twin's first IPv4 address
  uint32_t to_source = 0;      // network order
};

// A mangle MARK rule: packets it matches belong to the firewall-mark service `mark`.
struct MarkRule {
  uint32_t src_net = 0, src_mask = 0, dst_net = 0, dst_mask = 0;  // network order
  uint8_t proto = 0;                                              // 0 = any
  uint16_t sport = 0, dport = 0;                                  // network order, 0 = any
  uint32_t mark = 0;
  bool matches(uint32_t src, uint32_t dst, uint8_t p, uint16_t sp, uint16_t dp) const {
    return (src & src_mask) == src_net && (dst & dst_mask) == dst_net && (!proto || proto == p) &&
           (!sport || sport == sp) && (!dport || dport == dp);
  }
};

struct PortSnap {
  std::array<uint8_t, 6> mac{};
  uint32_t ipv4 = 0;  // first IPv4 address of the twin, 0 if none
};

struct RouteSnap {
  uint32_t prefix = 0, mask = 0;  // network order
  uint8_t len = 0;
  uint32_t gateway = 0;           // 0: directly connected
  uint16_t port = 0;              // data port index
};

// Neighbours by neighKey (port, IPv4): open addressing with linear probing, at
// most half full, built by the control thread with the snapshot and read by every
// forwarded packet. (An absl::flat_hash_map lookup here measured about a fifth of
// the worker's time at 1K flows: its hash and group probe cost more than this.)
class NeighTable {
 public:
  using Mac = std::array<uint8_t, 6>;
  void set(uint64_t key, const Mac& mac) {
    if (2 * (size_ + 1) > entries_.size()) grow();
    Entry& e = entries_[probe(key)];
    if (e.key == kEmpty) ++size_;
    e = {key, mac};
  }
  const Mac* find(uint64_t key) const {
    if (entries_.empty()) return nullptr;
    const Entry& e = entries_[probe(key)];
    return e.key == key ? &e.mac : nullptr;
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~0ull;  // no neighKey: ports are < 2^16
  struct Entry {
    uint64_t key = kEmpty;
    Mac mac{};
  };
  // The slot holding `key`, or the empty slot where it would go.
  size_t probe(uint64_t key) const {
    const size_t mask = entries_.size() - 1;
    size_t i = static_cast<size_t>((key * 0x9e3779b97f4a7c15ull) >> 32) & mask;
    while (entries_[i].key != key && entries_[i].key != kEmpty) i = (i + 1) & mask;
    return i;
  }
  void grow() {
    std::vector<Entry> old = std::move(entries_);
    entries_.assign(old.empty() ? 16 : 2 * old.size(), Entry{});
    for (const Entry& e : old) {
      if (e.key != kEmpty) entries_[probe(e.key)] = e;
    }
  }
  std::vector<Entry> entries_;
  size_t size_ = 0;
};

struct Snapshot {
  uint64_t generation = 0;
  std::vector<ServiceSnap> services;
  absl::flat_hash_map<uint64_t, uint32_t> service_index;  // serviceKey() -> index
  // Live real servers: by id slot (id & 0xffff), the id's generation + 1; 0 = none.
  // An array, not a set: every packet of every connection asks.
  std::vector<uint16_t> live_backend = std::vector<uint16_t>(65536, 0);
  std::vector<SnatRule> snat;
  std::vector<MarkRule> marks;  // mangle PREROUTING, then INPUT; first match wins
  absl::flat_hash_set<uint32_t> snat_addrs;  // every address SNAT may write, network order
  std::vector<PortSnap> ports;
  std::vector<RouteSnap> routes;  // longest prefix first
  NeighTable neigh;  // neighKey() -> MAC
  ConnTimeouts timeouts;

  static uint64_t serviceKey(uint8_t proto, uint32_t vip, uint16_t vport) {
    return (uint64_t{proto} << 48) | (uint64_t{vport} << 32) | vip;
  }
  static uint64_t fwmarkKey(uint32_t mark) { return (uint64_t{1} << 63) | mark; }
  static uint64_t neighKey(uint16_t port, uint32_t ip) { return (uint64_t{port} << 32) | ip; }

  void setBackendLive(uint32_t id) {
    live_backend[id & 0xffff] = static_cast<uint16_t>((id >> 16) + 1);
  }
  bool backendLive(uint32_t id) const {
    return live_backend[id & 0xffff] == static_cast<uint16_t>((id >> 16) + 1);
  }

  const ServiceSnap* findService(uint8_t proto, uint32_t vip, uint16_t vport) const {
    auto it = service_index.find(serviceKey(proto, vip, vport));
    return it == service_index.end() ? nullptr : &services[it->second];
  }
  // The service a new packet belongs to: an address service, else the firewall-mark
  // service of the first MARK rule that matches it (Swarm's ingress).
  const ServiceSnap* classify(uint8_t proto, uint32_t src, uint32_t dst, uint16_t sport,
                              uint16_t dport) const {
    if (const ServiceSnap* s = findService(proto, dst, dport)) return s;
    for (const MarkRule& r : marks) {
      if (r.matches(src, dst, proto, sport, dport)) {
        auto it = service_index.find(fwmarkKey(r.mark));
        return it == service_index.end() ? nullptr : &services[it->second];
      }
    }
    return nullptr;
  }
  const RouteSnap* route(uint32_t dst) const {
    for (const RouteSnap& r : routes) {
      if ((dst & r.mask) == r.prefix) return &r;
    }
    return nullptr;
  }
};

}  // namespace meshlb
