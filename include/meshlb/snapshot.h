// The immutable configuration a worker reads: services and their backends with
// scheduler tables, SNAT and MARK rules, and the mirrored addresses, routes and
// neighbours of the kernel twins. Built by the control thread, published with one
// atomic pointer store, freed through rte_rcu_qsbr once every worker has passed a
// quiescent state. Workers never write it.
//
// Everything that holds an address lives in a FamilySnap<Addr>, one per address
// family, so the packet core for a family reads its own tables
// (snapshot.v4, snapshot.v6). The IPv6 tables exist and are built, unused until
// the IPv6 dataplane fills them in.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "meshlb/flow_table.h"
#include "meshlb/maglev.h"
#include "meshlb/proto.h"
#include "meshlb/scheduler.h"
#include "meshlb/sysctls.h"
#include "meshlb/types.h"

namespace meshlb {

// How a connection reaches its real server (ipvsadm -m / -g).
enum class Forwarding : uint8_t {
  kMasq,    // -m: DNAT (and SNAT where a rule says), replies come back through meshlb
  kDirect,  // -g: the packet goes to the server unchanged but for its MAC (or its VXLAN
            // encapsulation); the server has the VIP and answers the client itself (DSR)
  kTunnel,  // -i: the packet goes to the server inside IPIP, GUE or GRE (TunnelSnap); the
            // server decapsulates it, has the VIP and answers the client itself
};

// How a -i real server's packets are encapsulated (ipvsadm --tun-type and options).
struct TunnelSnap {
  enum Type : uint8_t { kIpip, kGue, kGre };
  enum Csum : uint8_t { kNone, kCsum, kRemote };  // --tun-nocsum, --tun-csum, --tun-remcsum
  Type type = kIpip;
  Csum csum = kNone;
  uint16_t port = 0;  // GUE's UDP destination port, network order
};

template <class Addr>
struct BackendSnap {
  Addr addr;
  uint16_t port = 0;  // network order; 0 keeps the packet's destination port
  uint32_t weight = 0;
  BackendId id;
  Forwarding fwd = Forwarding::kMasq;
  TunnelSnap tunnel{};  // fwd == kTunnel
};

// A backend's stable identity for Maglev: its address bytes, then its port, both
// in network order (6 bytes for IPv4, 18 for IPv6). Two appliances with the same
// backends build the same table from it, and a restart keeps every flow where it
// was: it must never change (scheduler_test pins the tables it gives).
template <class Addr>
std::string backendKey(const BackendSnap<Addr>& b) {
  std::string k(sizeof(Addr) + 2, '\0');
  std::memcpy(k.data(), &b.addr, sizeof(Addr));
  std::memcpy(k.data() + sizeof(Addr), &b.port, 2);
  return k;
}

// A service of one family: what the scheduler reads (ServiceSched) and its backends.
template <class Addr>
struct ServiceSnap : ServiceSched {
  uint64_t version = 0;  // the model's Service::version it was built from
  uint32_t fwmark = 0;   // non-zero: a firewall-mark service (any protocol; vip/vport unused)
  uint8_t proto = 0;
  Addr vip;
  uint16_t vport = 0;                       // network order
  std::vector<BackendSnap<Addr>> backends;  // sorted by address and port; weights[i] is theirs
  // -p: persistence (0: none), the template timeout; -M as a mask of the client's address.
  uint32_t persist_ms = 0;
  Addr persist_mask{};
  // Persistent services: a backend's index by its BackendId::raw() (for a template).
  absl::flat_hash_map<uint32_t, uint32_t> index_of;
  bool ops = false;  // -o: one-packet scheduling (UDP): every datagram scheduled, none tracked
};

// A map from 64-bit keys to values, in a fixed number of chunks by the key's hash. A
// table built from the one before starts from its chunks (derive()) and copies just
// those it changes, so publishing one change costs a chunk (the entries / kChunks
// around it) and a pointer per chunk, not the whole table.
template <class V>
class ChunkedTable {
 public:
  static constexpr uint32_t kChunkBits = 10;
  static constexpr uint32_t kChunks = 1u << kChunkBits;

  ChunkedTable() : chunks_(kChunks, emptyChunk()) {}
  // A copy shares the chunks and owns none of them: changing it copies what it changes.
  ChunkedTable(const ChunkedTable& o) : chunks_(o.chunks_), size_(o.size_) {}
  ChunkedTable& operator=(const ChunkedTable& o) {
    chunks_ = o.chunks_;
    owned_.clear();
    size_ = o.size_;
    return *this;
  }
  ChunkedTable(ChunkedTable&&) = default;
  ChunkedTable& operator=(ChunkedTable&&) = default;

  const V* findValue(uint64_t key) const {
    const auto& m = chunks_[chunkOf(key)]->by_key;
    auto it = m.find(key);
    return it == m.end() ? nullptr : &it->second;
  }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Every entry, in no particular order (control thread, tests).
  template <class F>
  void forEach(F&& f) const {
    for (const auto& c : chunks_) {
      for (const auto& [k, v] : c->by_key) f(k, v);
    }
  }

  // Building (control thread, before publishing): a table starting as this one.
  ChunkedTable derive() const { return *this; }
  void put(uint64_t key, V v) {
    auto& m = own(chunkOf(key)).by_key;
    size_ += m.insert_or_assign(key, std::move(v)).second ? 1 : 0;
  }
  void erase(uint64_t key) {
    if (!findValue(key)) return;
    size_ -= own(chunkOf(key)).by_key.erase(key);
  }

 private:
  struct Chunk {
    absl::flat_hash_map<uint64_t, V> by_key;
  };
  static const std::shared_ptr<Chunk>& emptyChunk() {
    static const std::shared_ptr<Chunk> e = std::make_shared<Chunk>();
    return e;
  }
  static uint32_t chunkOf(uint64_t key) {
    return static_cast<uint32_t>((key * 0x9e3779b97f4a7c15ull) >> (64 - kChunkBits));
  }
  // The chunk, copied first unless this table already made it (copy on write).
  Chunk& own(uint32_t c) {
    if (owned_.empty()) owned_.assign(kChunks, false);
    if (!owned_[c]) {
      chunks_[c] = std::make_shared<Chunk>(*chunks_[c]);
      owned_[c] = true;
    }
    return *chunks_[c];
  }
  std::vector<std::shared_ptr<Chunk>> chunks_;  // never changed once published
  std::vector<bool> owned_;                     // while building: chunks this table made
  size_t size_ = 0;
};

// The services of a family by key (FamilySnap::serviceKey or fwmarkKey); every service
// itself is shared while it does not change.
template <class Addr>
class ServiceTable : public ChunkedTable<std::shared_ptr<const ServiceSnap<Addr>>> {
 public:
  using Ptr = std::shared_ptr<const ServiceSnap<Addr>>;
  const ServiceSnap<Addr>* find(uint64_t key) const {
    const Ptr* p = this->findValue(key);
    return p ? p->get() : nullptr;
  }
  const Ptr* findPtr(uint64_t key) const { return this->findValue(key); }
  std::vector<const ServiceSnap<Addr>*> all() const {
    std::vector<const ServiceSnap<Addr>*> out;
    out.reserve(this->size());
    this->forEach([&](uint64_t, const Ptr& s) { out.push_back(s.get()); });
    return out;
  }
  ServiceTable derive() const { return *this; }
};

// Address prefixes of either family; a prefix of length 0 matches everything.
template <class Addr>
struct Prefix;
template <>
struct Prefix<Ipv4Addr> {
  Ipv4Addr net;
  uint32_t mask = 0;  // network order
  uint8_t len = 0;
  static Prefix make(Ipv4Addr a, uint8_t len) {
    const uint32_t m = ipv4Mask(len);
    return {{a.v & m}, m, len};
  }
  bool contains(Ipv4Addr a) const { return (a.v & mask) == net.v; }
};
template <>
struct Prefix<Ipv6Addr> {
  Ipv6Addr net;
  uint8_t len = 0;
  static Prefix make(const Ipv6Addr& a, uint8_t len) {
    Prefix p{a, len};
    for (int i = 0; i < 16; ++i) p.net.b[i] &= byteMask(i, len);
    return p;
  }
  bool contains(const Ipv6Addr& a) const {
    for (int i = 0; i < 16; ++i) {
      if ((a.b[i] & byteMask(i, len)) != net.b[i]) return false;
    }
    return true;
  }
  static uint8_t byteMask(int i, uint8_t len) {
    const int bits = len - 8 * i;
    return bits >= 8 ? 0xff : bits <= 0 ? 0 : static_cast<uint8_t>(0xff00 >> bits);
  }
};

template <class Addr>
struct SnatRule {
  Prefix<Addr> dst;         // length 0 matches everything
  bool masquerade = false;  // source = the egress twin's first address of the family
  bool ipvs_only = false;   // -m ipvs --ipvs: not for connections IPVS did not make (DNAT)
  Addr to_source;
};

// A nat PREROUTING rule (or one of a user chain it jumps to), for new connections.
template <class Addr>
struct NatRule {
  enum Action : uint8_t { kDnat, kJump, kReturn };
  struct Match {
    Prefix<Addr> src, dst;
    uint8_t proto = 0;
    uint16_t sport = 0, dport = 0;  // network order, 0 = any
    bool matches(const Addr& s, const Addr& d, uint8_t p, uint16_t sp, uint16_t dp) const {
      return src.contains(s) && dst.contains(d) && (!proto || proto == p) &&
             (!sport || sport == sp) && (!dport || dport == dp);
    }
  } match;
  bool dst_local = false;  // -m addrtype --dst-type LOCAL
  Action action = kReturn;
  Addr to;               // kDnat
  uint16_t to_port = 0;  // kDnat, network order; 0 keeps the port
  uint32_t jump = 0;     // kJump: index into FamilySnap::nat_chains
};

// A mangle MARK rule: a packet it matches has its firewall mark set to
// (mark & ~mask) ^ value (xt_MARK). Every matching rule applies, in order.
template <class Addr>
struct MarkRule {
  Prefix<Addr> src, dst;
  uint8_t proto = 0;              // 0 = any
  uint16_t sport = 0, dport = 0;  // network order, 0 = any
  uint32_t value = 0, mask = 0xffffffffu;
  bool input = false;  // mangle INPUT (sees the packet after DNAT); else PREROUTING
  bool matches(const Addr& s, const Addr& d, uint8_t p, uint16_t sp, uint16_t dp) const {
    return src.contains(s) && dst.contains(d) && (!proto || proto == p) &&
           (!sport || sport == sp) && (!dport || dport == dp);
  }
};

template <class Addr>
struct RouteSnap {
  Prefix<Addr> dst;
  Addr gateway;  // all zero: directly connected
  bool has_gateway = false;
  uint16_t port = 0;     // data port index (a twin's route)
  int16_t overlay = -1;  // or: the overlay network (a vxlan device's route), its index
};

// Neighbours on an overlay network's vxlan device are kept beside the twins' ones,
// under this "port" plus the overlay's index.
constexpr uint16_t kOverlayNeighPort = 0x8000;

// A VXLAN overlay network: a kernel vxlan device in the twins' namespace, programmed
// as Docker's overlay driver programs one (VNI, port, local VTEP, FDB, neighbours),
// whose encapsulation and decapsulation the dataplane does.
struct OverlaySnap {
  uint32_t vni = 0;
  uint16_t udp_port = 0;  // host order
  Ipv4Addr local;         // this appliance's VTEP (an IPv4 underlay)
  bool v6 = false;        // an IPv6 underlay: the VTEP is local6
  Ipv6Addr local6;
  std::array<uint8_t, 6> mac{};  // the device's MAC: the inner frames' source
  uint16_t inner_mtu = 1450;     // the largest inner IP datagram that fits the underlay
  uint8_t ttl = 64;
};

// The overlays' FDB: (overlay, inner MAC) -> the remote VTEP (the node of the task), of
// the overlay's underlay family.
class FdbTable {
 public:
  using Mac = std::array<uint8_t, 6>;
  void set(uint16_t overlay, const Mac& mac, const IpAddr& vtep) { map_[key(overlay, mac)] = vtep; }
  const IpAddr* find(uint16_t overlay, const Mac& mac) const {
    auto it = map_.find(key(overlay, mac));
    return it == map_.end() ? nullptr : &it->second;
  }
  size_t size() const { return map_.size(); }

 private:
  static uint64_t key(uint16_t overlay, const Mac& mac) {
    uint64_t k = uint64_t{overlay} << 48;
    for (int i = 0; i < 6; ++i) k |= uint64_t{mac[i]} << (8 * (5 - i));
    return k;
  }
  absl::flat_hash_map<uint64_t, IpAddr> map_;
};

// Neighbours by (data port, address): open addressing with linear probing, at most
// half full, built by the control thread with the snapshot and read by every
// forwarded packet. (An absl::flat_hash_map lookup here measured about a fifth of
// the worker's time at 1K flows: its hash and group probe cost more than this.)
template <class Addr>
class NeighTable {
 public:
  using Mac = std::array<uint8_t, 6>;
  void set(uint16_t port, const Addr& addr, const Mac& mac) {
    if (2 * (size_ + 1) > entries_.size()) grow();
    Entry& e = entries_[probe(port, addr)];
    if (!e.used) ++size_;
    e = {addr, port, true, mac};
  }
  const Mac* find(uint16_t port, const Addr& addr) const {
    if (entries_.empty()) return nullptr;
    const Entry& e = entries_[probe(port, addr)];
    return e.used ? &e.mac : nullptr;
  }
  size_t size() const { return size_; }

 private:
  struct Entry {
    Addr addr{};
    uint16_t port = 0;
    bool used = false;
    Mac mac{};
  };
  static uint64_t hashOf(uint16_t port, Ipv4Addr a) {
    return ((uint64_t{port} << 32 | a.v) * 0x9e3779b97f4a7c15ull) >> 32;
  }
  static uint64_t hashOf(uint16_t port, const Ipv6Addr& a) { return hashBytes(a.b, 16, port); }
  // The slot holding (port, addr), or the empty slot where it would go.
  size_t probe(uint16_t port, const Addr& addr) const {
    const size_t mask = entries_.size() - 1;
    size_t i = static_cast<size_t>(hashOf(port, addr)) & mask;
    while (entries_[i].used && !(entries_[i].addr == addr && entries_[i].port == port)) {
      i = (i + 1) & mask;
    }
    return i;
  }
  void grow() {
    std::vector<Entry> old = std::move(entries_);
    entries_.assign(old.empty() ? 16 : 2 * old.size(), Entry{});
    for (const Entry& e : old) {
      if (e.used) entries_[probe(e.port, e.addr)] = e;
    }
  }
  std::vector<Entry> entries_;
  size_t size_ = 0;
};

// Hashes and equality for addresses as hash-set keys.
struct AddrHash {
  size_t operator()(Ipv4Addr a) const { return a.v * 0x9e3779b97f4a7c15ull >> 16; }
  size_t operator()(const Ipv6Addr& a) const { return hashBytes(a.b, 16, 0); }
};

// The tables of one address family.
template <class Addr>
struct FamilySnap {
  // Shared with the snapshots before and after for as long as the service does not
  // change, so that publishing one change builds one service, not all of them.
  ServiceTable<Addr> services;
  std::vector<SnatRule<Addr>> snat;
  std::vector<MarkRule<Addr>> marks;  // mangle PREROUTING, then INPUT: all apply, in order
  // nat PREROUTING ([0]) and the user chains: DNAT for new connections, before IPVS.
  std::vector<std::vector<NatRule<Addr>>> nat_chains;
  absl::flat_hash_set<Addr, AddrHash> snat_addrs;  // every address SNAT may write
  // The appliance's own addresses: every address on a twin (VIP aliases included) and
  // every SNAT address. IPVS balances only packets addressed to the host (LOCAL_IN);
  // a packet to any other address is routed, whatever its mark.
  absl::flat_hash_set<Addr, AddrHash> local_addrs;
  std::vector<Addr> port_addr;          // by data port: the twin's first address, zero if none
  std::vector<bool> port_has_addr;      // by data port
  std::vector<Addr> overlay_addr;       // by overlay: the vxlan device's first address
  std::vector<bool> overlay_has_addr;   // by overlay
  std::vector<RouteSnap<Addr>> routes;  // longest prefix first
  NeighTable<Addr> neigh;

  static uint64_t serviceKey(uint8_t proto, Ipv4Addr vip, uint16_t vport) {
    return (uint64_t{proto} << 48) | (uint64_t{vport} << 32) | vip.v;
  }
  static uint64_t serviceKey(uint8_t proto, const Ipv6Addr& vip, uint16_t vport) {
    return hashBytes(vip.b, 16, (uint64_t{proto} << 16) | vport) & ~(uint64_t{1} << 63);
  }
  static uint64_t fwmarkKey(uint32_t mark) { return (uint64_t{1} << 63) | mark; }

  // ip_vs_service_find(): the service on the address and port, else the address's
  // port-0 (catch-all, persistent) service.
  const ServiceSnap<Addr>* findService(uint8_t proto, const Addr& vip, uint16_t vport) const {
    if (const ServiceSnap<Addr>* s = findExact(proto, vip, vport)) return s;
    return port_zero_services && vport ? findExact(proto, vip, 0) : nullptr;
  }
  const ServiceSnap<Addr>* findExact(uint8_t proto, const Addr& vip, uint16_t vport) const {
    const ServiceSnap<Addr>* s = services.find(serviceKey(proto, vip, vport));
    if (!s) return nullptr;
    return !s->fwmark && s->vip == vip && s->vport == vport && s->proto == proto ? s : nullptr;
  }
  uint32_t port_zero_services = 0;  // how many services are on port 0
  // The masquerading (-m) real servers, by realServerKey(), each with how many services
  // have it: nat_icmp_send answers their packets that match no connection.
  ChunkedTable<uint32_t> masq_servers;
  static uint64_t realServerKey(uint8_t proto, Ipv4Addr addr, uint16_t port) {
    return serviceKey(proto, addr, port);
  }
  static uint64_t realServerKey(uint8_t proto, const Ipv6Addr& addr, uint16_t port) {
    return serviceKey(proto, addr, port);
  }
  const ServiceSnap<Addr>* findFwmark(uint32_t mark) const {
    return services.find(fwmarkKey(mark));
  }
  // The firewall mark the mangle rules give a packet (0: none): PREROUTING's see it as
  // it came, INPUT's after a DNAT (to new_dst, new_dport; the same without one).
  uint32_t markOf(uint8_t proto, const Addr& src, const Addr& dst, uint16_t sport, uint16_t dport,
                  const Addr& new_dst, uint16_t new_dport) const {
    uint32_t mark = 0;
    for (const MarkRule<Addr>& r : marks) {
      const bool hit = r.input ? r.matches(src, new_dst, proto, sport, new_dport)
                               : r.matches(src, dst, proto, sport, dport);
      if (hit) mark = (mark & ~r.mask) ^ r.value;
    }
    return mark;
  }
  uint32_t markOf(uint8_t proto, const Addr& src, const Addr& dst, uint16_t sport,
                  uint16_t dport) const {
    return markOf(proto, src, dst, sport, dport, dst, dport);
  }
  // The DNAT the nat PREROUTING chain (and the user chains it jumps to) gives a new
  // packet: true with *dst and *dport rewritten, false when no DNAT rule matched.
  bool dnat(uint8_t proto, const Addr& src, Addr* dst, uint16_t sport, uint16_t* dport) const {
    if (nat_chains.empty()) return false;
    struct Frame {
      uint32_t chain, rule;
    };
    Frame stack[8];
    int depth = 0;
    Frame at{0, 0};  // chain 0 is PREROUTING
    const bool local = local_addrs.contains(*dst);
    for (;;) {
      const auto& rules = nat_chains[at.chain];
      if (at.rule >= rules.size()) {
        if (depth == 0) return false;  // PREROUTING's end: its policy, ACCEPT
        at = stack[--depth];
        continue;
      }
      const NatRule<Addr>& r = rules[at.rule++];
      if (!r.match.matches(src, *dst, proto, sport, *dport) || (r.dst_local && !local)) continue;
      switch (r.action) {
        case NatRule<Addr>::kDnat:
          *dst = r.to;
          if (r.to_port) *dport = r.to_port;
          return true;
        case NatRule<Addr>::kReturn:
          if (depth == 0) return false;
          at = stack[--depth];
          break;
        case NatRule<Addr>::kJump:
          if (depth == 8) return false;  // deeper than the model lets chains go
          stack[depth++] = at;
          at = {r.jump, 0};
          break;
      }
    }
  }
  // The service a new packet to one of the appliance's own addresses belongs to, as
  // ip_vs_service_find() looks it up: the firewall-mark service of the packet's mark
  // first, then the address service (Swarm's ingress is the former, its VIPs the latter).
  const ServiceSnap<Addr>* classify(uint8_t proto, const Addr& src, const Addr& dst, uint16_t sport,
                                    uint16_t dport) const {
    if (!marks.empty()) {
      if (const uint32_t mark = markOf(proto, src, dst, sport, dport)) {
        if (const ServiceSnap<Addr>* s = findFwmark(mark)) return s;
      }
    }
    return findService(proto, dst, dport);
  }
  const RouteSnap<Addr>* route(const Addr& dst) const {
    for (const RouteSnap<Addr>& r : routes) {
      if (r.dst.contains(dst)) return &r;
    }
    return nullptr;
  }
  // The SNAT rule for a connection's backend address, first match (`ipvs`: IPVS made
  // the connection, so -m ipvs --ipvs rules apply).
  const SnatRule<Addr>* snatRule(const Addr& backend, bool ipvs = true) const {
    for (const SnatRule<Addr>& r : snat) {
      if (r.dst.contains(backend) && (ipvs || !r.ipvs_only)) return &r;
    }
    return nullptr;
  }
};

struct Snapshot {
  uint64_t generation = 0;
  // The service model (its identity and version) the services were built from: the
  // next snapshot rebuilds only what that model changed since.
  uint64_t model_id = 0, model_version = 0;
  FamilySnap<Ipv4Addr> v4;
  FamilySnap<Ipv6Addr> v6;
  std::vector<std::array<uint8_t, 6>> port_mac;  // by data port: the port's (and twin's) MAC
  std::vector<uint16_t> port_mtu;                // by data port: the twin's MTU
  std::vector<OverlaySnap> overlays;             // VXLAN overlay networks (either underlay)
  FdbTable fdb;
  // The UDP port (host order) the parser takes as VXLAN on every packet: the first
  // overlay's (Swarm uses one, its --data-path-port, for all networks). An overlay on
  // another port is recognised on the slow path (hasOverlayPort).
  uint16_t vxlan_port = kVxlanPort;
  // A master sync daemon runs: the workers queue their connections for it.
  bool sync_master = false;
  // Raised when a peer's master daemon starts (its empty hello): each worker then sends
  // every live connection once more, idle ones included, over one refresh period.
  uint32_t sync_resend = 0;

  bool hasOverlayPort(uint16_t udp_port) const {
    for (const OverlaySnap& o : overlays) {
      if (o.udp_port == udp_port) return true;
    }
    return false;
  }

  // The overlay network whose VNI and VTEP a received VXLAN packet names, or -1.
  template <class Addr>
  int overlayOf(uint32_t vni, const Addr& vtep, uint16_t udp_port) const {
    for (size_t i = 0; i < overlays.size(); ++i) {
      const OverlaySnap& o = overlays[i];
      if (o.vni != vni || o.udp_port != udp_port) continue;
      if constexpr (std::is_same_v<Addr, Ipv4Addr>) {
        if (!o.v6 && o.local == vtep) return static_cast<int>(i);
      } else {
        if (o.v6 && o.local6 == vtep) return static_cast<int>(i);
      }
    }
    return -1;
  }
  // Live real servers: by id slot, BackendId::kLiveBit | the live id's generation
  // (without the bit: no server has the slot). An array, not a set: every packet of
  // every connection asks. A copy of the service model's (1 MiB, whatever the
  // configuration's size).
  std::vector<uint8_t> live_backend = std::vector<uint8_t>(BackendId::kSlots, 0);
  ConnTimeouts timeouts;
  IpvsSysctls sysctls;
  // The -i real servers' encapsulation, by BackendId::raw(), for the packets of their
  // connections.
  ChunkedTable<TunnelSnap> tunnels;
  // The real servers at weight 0, by BackendId::raw(): with expire_nodest_conn, a SYN
  // on one's connection is scheduled afresh (the kernel's, since Linux 5.13).
  ChunkedTable<uint8_t> quiescent;

  void setBackendLive(BackendId id) {
    live_backend[id.slot()] = static_cast<uint8_t>(BackendId::kLiveBit | id.generation());
  }
  bool backendLive(BackendId id) const {
    return live_backend[id.slot()] == static_cast<uint8_t>(BackendId::kLiveBit | id.generation());
  }
};

}  // namespace meshlb
