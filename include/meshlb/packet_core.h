// The worker's decisions, as pure code: a frame, its parse, the worker's state
// (flow table, scheduler positions, SNAT ports, counters) and the snapshot in; a
// verdict out (transmit on port P, hand to worker W, give to the kernel twin, drop
// because R), with the frame rewritten in place for the first. No EAL, no mbuf,
// no ring: unit tests call it with scapy-made frames (tests/unit/packet_core_test.cc),
// and the worker (worker.cc) is the thin I/O shell around it that receives bursts,
// stages them, and acts on the verdicts.
//
// Per address family and encapsulation the core has one instance, chosen at
// compile time (handleFamily<Addr, Encap>), as VPP's lb plugin has a node per
// combination. The IPv6 and VXLAN instances give their packets to the kernel until
// their issues fill them in.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "meshlb/bytes.h"
#include "meshlb/checksum.h"
#include "meshlb/counters.h"
#include "meshlb/flow_table.h"
#include "meshlb/hash.h"
#include "meshlb/nat.h"
#include "meshlb/parse.h"
#include "meshlb/persist.h"
#include "meshlb/snapshot.h"
#include "meshlb/types.h"
#include "meshlb/vxlan.h"

namespace meshlb {

enum class Encap : uint8_t { kPlain, kVxlan };

// What the I/O shell does with a packet the core has seen.
struct Verdict {
  enum Action : uint8_t { kTransmit, kHandOff, kToKernel, kDrop };
  Action action = kDrop;
  uint16_t target = 0;         // kTransmit: data port; kHandOff: worker; kToKernel: data port
  Drop reason = Drop::kCount;  // kDrop: counted by the core already
  // kTransmit and kToKernel: the frame now starts head_adjust bytes from where it did
  // (-50: VXLAN headers written into the headroom; +offset: decapsulated) and, when
  // length is not 0, is that long. Both 0: the frame keeps its place and length.
  int16_t head_adjust = 0;
  uint16_t length = 0;

  static Verdict transmit(uint16_t port) { return {kTransmit, port, Drop::kCount}; }
  static Verdict handOff(uint16_t worker) { return {kHandOff, worker, Drop::kCount}; }
  static Verdict toKernel(uint16_t port) { return {kToKernel, port, Drop::kCount}; }
  static Verdict drop(Drop why) { return {kDrop, 0, why}; }
  // What was decided; the frame's new shape is checked through its bytes.
  friend bool operator==(const Verdict& a, const Verdict& b) {
    return a.action == b.action && a.target == b.target && a.reason == b.reason;
  }
};

// The "real server" of a connection a nat DNAT rule made to an address that is not
// the appliance's: slot 0, which the service model never gives a real server.
constexpr BackendId kDnatBackend = BackendId::make(0, 0);

// ipvsadm --stats counters of one real server on one worker (by BackendId slot).
struct BackendStats {
  std::atomic<uint64_t> conns{0}, inpkts{0}, outpkts{0}, inbytes{0}, outbytes{0};
};

// The worker that owns a connection, from the client endpoint (original
// direction) or, for replies to an SNAT address, from the SNAT port: each worker
// allocates SNAT ports congruent to its index, so both directions agree on every
// port type without flow steering in the NIC.
inline uint16_t ownerOf(const Endpoint<Ipv4Addr>& client, uint16_t workers) {
  const uint64_t h = (uint64_t{client.addr.v} * 0x9e3779b97f4a7c15ull) ^
                     (uint64_t{client.port} * 0xc2b2ae3d27d4eb4full);
  return static_cast<uint16_t>(((h >> 32) * workers) >> 32);
}
inline uint16_t ownerOf(const Endpoint<Ipv6Addr>& client, uint16_t workers) {
  const uint64_t h = hashBytes(client.addr.b, 16, client.port) * 0x9e3779b97f4a7c15ull;
  return static_cast<uint16_t>(((h >> 32) * workers) >> 32);
}
inline uint16_t ownerOfSnatPort(uint16_t port_be, uint16_t workers) {
  return static_cast<uint16_t>(__builtin_bswap16(port_be) % workers);
}

// A connection as the sync daemon sends it (a master's) or installs it (a
// backup's): the record, and the time it has left. IPVS sends its whole timeout;
// meshlb sends what is left, so that a copy expires when the original does and two
// appliances backing each other up never keep an idle connection alive between them
// (each one's refresh of the other's copy is then idempotent).
// Either family's connection, tagged, so one ring per worker and direction carries both
// in the order they happened.
struct SyncRecord {
  SyncRecord() : flow() {}
  uint32_t timeout_ms = 0;
  // 1: the persistence template of a connection (flow: its service's vip and vport,
  // its real server; client the masked client address, cport 0).
  uint32_t is_template = 0;
  Family family = Family::kIpv4;  // which of the two below
  union {
    Flow<Ipv4Addr> flow;
    Flow<Ipv6Addr> flow6;
  };
  template <class Addr>
  Flow<Addr>& flowOf() {
    if constexpr (std::is_same_v<Addr, Ipv4Addr>) {
      return flow;
    } else {
      return flow6;
    }
  }
  template <class Addr>
  const Flow<Addr>& flowOf() const {
    return const_cast<SyncRecord*>(this)->flowOf<Addr>();
  }
  template <class Addr>
  void set(const Flow<Addr>& f) {
    family = std::is_same_v<Addr, Ipv4Addr> ? Family::kIpv4 : Family::kIpv6;
    flowOf<Addr>() = f;
  }
};
static_assert(sizeof(SyncRecord) % 4 == 0, "a ring element is whole 32-bit words");
static_assert(std::is_trivially_copyable_v<SyncRecord>, "a ring element is copied as bytes");

// A master re-sends each ESTABLISHED or UDP connection that had a packet since it was
// last sent about this often (IPVS re-sends every sync_period packets).
constexpr uint32_t kSyncRefreshMs = 60'000;

struct CoreConfig {
  uint16_t index = 0;    // this worker, 0 .. workers - 1
  uint16_t workers = 1;  // how many there are
  uint32_t flow_capacity = 1024;
  uint32_t flow_capacity6 = 0;                   // the IPv6 table's (0: flow_capacity)
  uint64_t seed = 0;                             // the flow table's bucket hash key
  std::atomic<uint32_t>* conn_counts = nullptr;  // FlowTable::setConnCounts, or null
  // Every worker's conn_counts (this one's included), which the connection-count
  // schedulers sum; empty: this worker's alone.
  std::vector<const std::atomic<uint32_t>*> all_conn_counts;
  // By BackendId slot, the servers' overload flags every worker shares (thresholds);
  // null: the core keeps its own.
  std::atomic<uint8_t>* overload = nullptr;
  BackendStats* backend_stats =
      nullptr;  // BackendId::kSlots entries (null: the core keeps its own)
  // The persistence templates every worker shares (null: the core keeps its own).
  PersistTable* templates = nullptr;
  // The master sync daemon's queue (the shell's ring): takes a connection to send,
  // false when full (counted, never waited for). Null: none.
  bool (*sync_out)(void* ctx, const SyncRecord& r) = nullptr;
  void* sync_ctx = nullptr;
};

// What the first stage learns of a packet (parse, flow key and hash) and the
// second (the record its first bucket names), kept for the third: handle().
struct PacketMeta {
  ParsedPacket p;  // reused: the fast parse writes only what it needs
  ParseResult r = ParseResult::kNotIp;
  bool tracked = false;   // IPv4 TCP/UDP with ports: looked up in the flow table
  bool tracked6 = false;  // the same in IPv6 (key6, and hash/cand in the IPv6 table)
  bool plain = false;     // parsePacketFast's plain frame: rewritten by natRewritePlain4
  FlowKey<Ipv4Addr> key;
  FlowKey<Ipv6Addr> key6;
  uint64_t hash = 0;
  uint32_t cand = 0;      // the record the first bucket names (stage 2), checked in full
  uint16_t in_port = 0;   // the data port it arrived on (its twin takes what the kernel gets)
  uint16_t headroom = 0;  // bytes free in front of the frame (VXLAN needs kVxlanEncapLen)
  uint16_t tailroom = 0;  // bytes free after it (an ICMP error longer than the packet)
  bool handed = false;    // from another worker's hand-off: not handed on again
};

class PacketCore {
 public:
  PacketCore(WorkerCounters& counters, const CoreConfig& cfg);
  // The flow table calls back into this object (templates): it stays where it is.
  PacketCore(const PacketCore&) = delete;
  PacketCore& operator=(const PacketCore&) = delete;

  // Read once per burst by the shell; timeouts follow the snapshot.
  void setSnapshot(const Snapshot* s) {
    if (s != snap_) {
      snap_ = s;
      table_.timeouts() = s->timeouts;
      table6_.timeouts() = s->timeouts;
      vxlan_port_ = s->vxlan_port;
      if (s->sync_resend != resend_seen_) {  // a peer started: one lap sending everything
        resend_seen_ = s->sync_resend;
        resend_left_ = table_.capacity();
        resend_left6_ = table6_.capacity();
      }
    }
  }
  void setNow(uint32_t now_ms) { now_ms_ = now_ms; }
  uint32_t now() const { return now_ms_; }

  // Stage 1: parse, key, hash, prefetch the first bucket.
  void prepare(const uint8_t* frame, uint32_t len, PacketMeta& m) {
    m.tracked = false;
    m.tracked6 = false;
    m.plain = false;
    m.r = parsePacketFast(frame, len, m.p, m.plain, vxlan_port_);
    // The fast parse vouches for its own frames; reading back the fields it has
    // just stored would stall on store forwarding (a tenth of the worker's time).
    m.tracked = m.plain || (m.r == ParseResult::kOk && m.p.ip.l3 == L3Type::kIpv4 &&
                            !m.p.vlan_count && !m.p.icmp_error && !m.p.vxlan && m.p.ip.has_ports &&
                            (m.p.ip.l4_proto == kProtoTcp || m.p.ip.l4_proto == kProtoUdp));
    if (m.tracked) {
      const uint8_t* ip = frame + m.p.ip.l3_offset;
      const uint8_t* l4 = frame + m.p.ip.l4_offset;
      // From the packet bytes, not the fields the parser just stored (store forwarding).
      m.key = {{load32(ip + 12)}, {load32(ip + 16)}, load16(l4), load16(l4 + 2), ip[9]};
      m.hash = table_.hash(m.key);
      table_.prefetch(m.hash);
    } else if (m.r == ParseResult::kOk && m.p.ip.l3 == L3Type::kIpv6 && !m.p.vlan_count &&
               !m.p.icmp_error && !m.p.vxlan && m.p.ip.has_ports &&
               (m.p.ip.l4_proto == kProtoTcp || m.p.ip.l4_proto == kProtoUdp)) {
      // IPv6 TCP and UDP take the same stages in their own table.
      const uint8_t* ip = frame + m.p.ip.l3_offset;
      std::memcpy(m.key6.src.b, ip + 8, 16);
      std::memcpy(m.key6.dst.b, ip + 24, 16);
      m.key6.sport = m.p.ip.sport;
      m.key6.dport = m.p.ip.dport;
      m.key6.proto = m.p.ip.l4_proto;
      m.tracked6 = true;
      m.hash = table6_.hash(m.key6);
      table6_.prefetch(m.hash);
    }
  }
  // Stage 2: read the first bucket, prefetch the candidate record.
  void prefetchRecord(PacketMeta& m) const {
    if (m.tracked) {
      m.cand = table_.prefetchRecord(m.hash);
    } else if (m.tracked6) {
      m.cand = table6_.prefetchRecord(m.hash);
    }
  }
  // Just before stage 3: keys living in their second bucket get their record
  // prefetched, so that they are not met cold.
  void prefetchSecondRecord(PacketMeta& m) const {
    if (m.tracked && m.cand == 0) {
      m.cand = table_.prefetchSecondRecord(m.hash);
    } else if (m.tracked6 && m.cand == 0) {
      m.cand = table6_.prefetchSecondRecord(m.hash);
    }
  }
  // Stage 3: the verdict, with the frame rewritten for kTransmit (and its
  // destination MAC for kToKernel of an unresolved next hop). Untagged IPv4 TCP/UDP
  // goes straight to the plain IPv4 instance (inline: every packet takes it).
  [[gnu::always_inline]] Verdict handle(uint8_t* frame, const PacketMeta& m) {
    if (__builtin_expect(m.tracked, 1)) return handleFamily<Ipv4Addr, Encap::kPlain>(frame, m);
    return handleUntracked(frame, m);
  }

  // All three stages for one frame.
  Verdict process(uint8_t* frame, uint32_t len, uint16_t in_port, bool handed = false,
                  uint16_t headroom = 0, uint16_t tailroom = 0) {
    PacketMeta m;
    prepare(frame, len, m);
    m.in_port = in_port;
    m.handed = handed;
    m.headroom = headroom;
    m.tailroom = tailroom;
    prefetchRecord(m);
    prefetchSecondRecord(m);
    return handle(frame, m);
  }

  // The bounded expiry sweep, run by the shell once per millisecond; with a master
  // sync daemon, also the refresh of live connections (kSyncRefreshMs).
  void expireSome(uint32_t budget) {
    table_.expireSome(now_ms_, budget);
    table6_.expireSome(now_ms_, budget);
    if (sync_out_ && snap_ && snap_->sync_master) refreshSome();
  }
  // A backup's: installs (or updates) a connection its master sent, keyed as the
  // master's (its real server already this appliance's id). False when the table
  // refuses it (counted).
  bool installSynced(const SyncRecord& r);
  void publishCounters() {
    FlowTableCounters t = table_.counters();
    const FlowTableCounters& t6 = table6_.counters();
#define MESHLB_X(field, label) t.field += t6.field;
    MESHLB_FLOW_TABLE_COUNTERS(MESHLB_X)
#undef MESHLB_X
    publishTableCounters(c_, t, table_.size() + table6_.size());
  }
  const FlowTable4& table() const { return table_; }
  const FlowTable6& table6() const { return table6_; }

 private:
  template <class Addr, Encap kEncap>
  [[gnu::always_inline]] Verdict handleFamily(uint8_t* frame, const PacketMeta& m);
  Verdict handleUntracked(uint8_t* frame, const PacketMeta& m);
  // The IPv6 instance: TCP and UDP connections; ND, echo and the rest are the kernel's.
  Verdict handle6(uint8_t* frame, const PacketMeta& m);
  // A tracked packet after its lookup (the connection, or none): scheduled, rewritten
  // and sent on. Both families; inline for IPv4's hot path.
  template <class Addr>
  [[gnu::always_inline]] Verdict track(uint8_t* frame, const PacketMeta& m,
                                       const FlowKey<Addr>& key, typename FlowTable<Addr>::Hit hit);
  template <class Addr>
  Verdict icmpError(uint8_t* frame, const PacketMeta& m);
  // A tracked packet no connection has: a new connection (returned), or what else
  // becomes of it (*v): handed to its owner, routed through (not for the appliance),
  // the kernel's (for the appliance, no service), or dropped.
  template <class Addr>
  Flow<Addr>* onMiss(uint8_t* frame, const PacketMeta& m, const FlowKey<Addr>& key, Verdict* v);
  // The service of a new packet to the appliance, its destination after any DNAT.
  template <class Addr>
  const ServiceSnap<Addr>* classify(const FlowKey<Addr>& k, const Addr& dst, uint16_t dport) const;
  template <class Addr>
  const ServiceSnap<Addr>* classify(const FlowKey<Addr>& k) const {
    return classify(k, k.dst, k.dport);
  }
  template <class Addr>
  bool ownedElsewhere(const FlowKey<Addr>& key, bool to_service, uint16_t* owner) const;
  // Schedules and inserts a new connection; null with the drop reason in *why.
  template <class Addr>
  Flow<Addr>* newConnection(const ParsedPacket& p, const ServiceSnap<Addr>& svc,
                            const FlowKey<Addr>& key, uint16_t dport, Drop* why);
  template <class Addr>
  Flow<Addr>* admit(const ParsedPacket& p, const FlowKey<Addr>& key, const BackendSnap<Addr>& b,
                    uint16_t dport, bool ipvs, Drop* why, bool untracked = false);
  // Per family: the flow table, the snapshot's tables, the templates held by record.
  template <class Addr>
  FlowTable<Addr>& tableOf() {
    if constexpr (std::is_same_v<Addr, Ipv4Addr>) {
      return table_;
    } else {
      return table6_;
    }
  }
  template <class Addr>
  const FamilySnap<Addr>& fam() const {
    if constexpr (std::is_same_v<Addr, Ipv4Addr>) {
      return snap_->v4;
    } else {
      return snap_->v6;
    }
  }
  template <class Addr>
  HugeArray<PersistTable::Ref>& templateOf() {
    if constexpr (std::is_same_v<Addr, Ipv4Addr>) {
      return template_of_;
    } else {
      return template_of6_;
    }
  }
  uint32_t firstSnatPort() const;
  // The master sync daemon's side (IPVS's ip_vs_sync_conn): a connection entering a
  // state its backups keep (ESTABLISHED, the closing ones), a new UDP connection, and
  // each live one again every kSyncRefreshMs.
  template <class Addr>
  void syncOut(const Flow<Addr>& e);
  template <class Addr>
  static void stateChanged(void* self, const Flow<Addr>& e);
  void refreshSome();
  template <class Addr>
  void refreshSome(uint32_t* cursor, uint32_t* resend_left, uint32_t period_ms);
  template <class Addr>
  bool installSynced(const SyncRecord& r);
  // Sends a packet out by route `rt` towards `dst` (TTL, next hop, MACs; into the
  // overlay's VXLAN when the route is a vxlan device's). A NAT'd packet the dataplane
  // cannot route is dropped (counted); a transit one goes to the kernel, which answers
  // with the ICMP error a router sends.
  template <bool kTransit = false, class Addr>
  [[gnu::always_inline]] Verdict forward(uint8_t* frame, const PacketMeta& m,
                                         const RouteSnap<Addr>* rt, const Addr& dst);
  // The route by the packet's own destination.
  template <bool kTransit = false, class Addr = Ipv4Addr>
  Verdict forward(uint8_t* frame, const PacketMeta& m) {
    const Addr dst = dstOf<Addr>(frame + m.p.ip.l3_offset);
    return forward<kTransit>(frame, m, fam<Addr>().route(dst), dst);
  }
  template <class Addr>
  static Addr dstOf(const uint8_t* ip) {
    Addr a;
    if constexpr (std::is_same_v<Addr, Ipv4Addr>) {
      a.v = load32(ip + 16);
    } else {
      std::memcpy(a.b, ip + 24, 16);
    }
    return a;
  }
  // The inner packet of either family, over the overlay's underlay (IPv4 or IPv6).
  template <class Addr>
  Verdict encapsulate(uint8_t* frame, const PacketMeta& m, const RouteSnap<Addr>& rt,
                      const Addr& nexthop);
  template <class Addr, class Under>
  Verdict encapsulateOver(uint8_t* frame, const PacketMeta& m, const OverlaySnap& ov,
                          const std::array<uint8_t, 6>& inner_mac, const Under& vtep);
  // ipvsadm -i: the packet, unchanged, inside IPIP, GUE or GRE to its real server.
  Verdict tunnel(uint8_t* frame, const PacketMeta& m, const Flow<Ipv4Addr>& e,
                 const RouteSnap<Ipv4Addr>* rt);
  // A SYN on a connection that has ended (conn_reuse_mode): whether it starts anew.
  template <class Addr>
  bool reusable(const Flow<Addr>& e) const;
  template <class Addr>
  static void releaseTemplate(void* self, uint32_t record);
  Verdict decapsulate(uint8_t* frame, const PacketMeta& m);
  Verdict decapsulateOn(uint8_t* frame, const PacketMeta& m, uint16_t udp_port);
  // ICMP "fragmentation needed" to the sender of a packet the overlay cannot carry.
  Verdict tooBig(uint8_t* frame, const PacketMeta& m, uint16_t mtu);
  // ICMP port unreachable to the sender of a packet, from the address of the port it
  // came in on (nat_icmp_send).
  Verdict unreachable(uint8_t* frame, const PacketMeta& m);
  Verdict drop(Drop why) {
    bump(c_.drop(why));
    return Verdict::drop(why);
  }

  WorkerCounters& c_;
  // A next hop the neighbour mirror lacks: counted, and left for the control thread.
  void unresolved(uint16_t port, Ipv4Addr nexthop) {
    bump(c_.neigh_unresolved_to_kernel);
    c_.unresolved_nexthop.store(uint64_t{port + 1u} << 32 | nexthop.v, std::memory_order_relaxed);
  }
  void unresolved(uint16_t port, const Ipv6Addr& nexthop) {
    bump(c_.neigh_unresolved_to_kernel);
    auto& u = c_.unresolved_nexthop6;  // this worker alone writes it
    const uint32_t seq = u.seq.load(std::memory_order_relaxed);
    u.seq.store(seq + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    uint64_t half[2];
    std::memcpy(half, nexthop.b, 16);
    u.addr[0].store(half[0], std::memory_order_relaxed);
    u.addr[1].store(half[1], std::memory_order_relaxed);
    u.port.store(port, std::memory_order_relaxed);
    u.seq.store(seq + 2, std::memory_order_release);
  }
  const uint16_t idx_;
  const uint16_t workers_;
  HugeArray<BackendStats> own_stats_;  // when the caller keeps none (lazily backed)
  BackendStats* const stats_;
  FlowTable4 table_;
  FlowTable6 table6_;
  const Snapshot* snap_ = nullptr;
  uint16_t vxlan_port_ = kVxlanPort;                      // the snapshot's, read by every parse
  std::vector<const std::atomic<uint32_t>*> all_counts_;  // CoreConfig::all_conn_counts
  HugeArray<std::atomic<uint8_t>> own_overload_;          // when the caller keeps none
  std::atomic<uint8_t>* overload_;
  uint64_t rng_;                   // twos: xorshift64*
  std::vector<SchedState> sched_;  // by service slot, kept across snapshots as IPVS keeps
                                   // them in the service; sized once, never on the packet path
  uint32_t snat_next_;
  std::unique_ptr<PersistTable> own_templates_;  // when the caller keeps none
  PersistTable* templates_;
  HugeArray<PersistTable::Ref> template_of_;   // by flow record: the template it holds
  HugeArray<PersistTable::Ref> template_of6_;  // the same, by IPv6 flow record
  Flow<Ipv4Addr> untracked_{};                 // -o: the datagram's connection, never inserted
  Flow<Ipv6Addr> untracked6_{};
  uint16_t tunnel_id_ = 0;  // outer IPv4 ids of tunnelled packets without DF
  uint32_t now_ms_ = 0;
  bool (*sync_out_)(void* ctx, const SyncRecord& r);  // CoreConfig's
  void* sync_ctx_;
  uint32_t sync_cursor_ = 1, sync_cursor6_ = 1;  // refreshSome()'s walks
  // Records still to visit in the lap that sends idle connections too (a peer started).
  uint32_t resend_seen_ = 0, resend_left_ = 0, resend_left6_ = 0;
  bool rewrote_ = false;  // forward() has rewritten the frame (for decapsulate())
  uint8_t scratch_[kTooBigMaxLen];
};

// The hot path, inline for the worker; the rest is in dataplane/packet_core.cc.

// Inlined into the worker's burst loop, as the code before the packet core was:
// the calls per packet here measured about 30 instructions more per packet.
template <class Addr, Encap kEncap>
[[gnu::always_inline]] inline Verdict PacketCore::handleFamily(uint8_t* frame,
                                                               const PacketMeta& m) {
  if constexpr (!std::is_same_v<Addr, Ipv4Addr>) {
    return handle6(frame, m);
  } else if constexpr (kEncap == Encap::kVxlan) {
    return decapsulate(frame, m);
  } else {
    const ParsedPacket& p = m.p;
    if (p.icmp_error && !p.vlan_count) return icmpError<Ipv4Addr>(frame, m);
    // The dataplane balances untagged IPv4 TCP and UDP; the kernel has the rest.
    if (!m.tracked) return Verdict::toKernel(m.in_port);
    // A connection this worker has is one it owns: both directions' keys map to
    // the worker that created it. Only a miss is classified (a service, a MARK
    // rule), and then handed to its owner when that is another worker.
    return track<Ipv4Addr>(frame, m, m.key, table_.lookupCandidate(m.key, m.hash, m.cand, now_ms_));
  }
}

template <class Addr>
[[gnu::always_inline]] inline Verdict PacketCore::track(uint8_t* frame, const PacketMeta& m,
                                                        const FlowKey<Addr>& key,
                                                        typename FlowTable<Addr>::Hit hit) {
  constexpr bool kV4 = std::is_same_v<Addr, Ipv4Addr>;
  const ParsedPacket& p = m.p;
  FlowTable<Addr>& table = tableOf<Addr>();
  Flow<Addr>* e = hit.flow;
  if (e) {
    const bool gone = !snap_->backendLive(e->backendId());
    const bool syn = __builtin_expect(p.tcp_flags & kTcpSyn, 0) && hit.dir == FlowDir::kOriginal &&
                     key.proto == kProtoTcp;
    if (syn && (reusable(*e) || (gone && snap_->sysctls.expire_nodest_conn))) {
      // In ip_vs_in's order: a client's SYN on the ports of a connection that has ended
      // (conn_reuse_mode, whatever its server), or that goes to a server at weight 0 or
      // deleted (expire_nodest_conn; Linux 5.9+ so treats a packet whose conntrack is not
      // the old connection's, as a reopened port's SYN is) starts a new one, scheduled
      // afresh.
      table.remove(e);
      bump(c_.conn_reused);
      e = nullptr;
    } else if (__builtin_expect(gone, 0)) {
      // The real server is gone: with expire_nodest_conn (Swarm sets it) the connection is
      // expired too, else it waits (the server may come back from IPVS's trash).
      if (!snap_->sysctls.expire_nodest_conn) return drop(Drop::kNodest);
      table.remove(e);
      return drop(Drop::kNodestExpired);
    }
  }
  if (!e) {
    Verdict v;
    e = onMiss(frame, m, key, &v);
    if (!e) return v;
    hit.dir = FlowDir::kOriginal;
  }

  if (key.proto == kProtoTcp) {
    table.onTcp(e, hit.dir, p.tcp_flags, now_ms_);
  } else {
    table.onUdp(e, now_ms_);
  }
  const bool original = hit.dir == FlowDir::kOriginal;
  // Where the rewritten packet goes: to the real server, or back to the client.
  const Addr to = original ? e->backend : e->client;
  const RouteSnap<Addr>* rt = fam<Addr>().route(to);
  if (__builtin_expect(rt && rt->overlay >= 0, 0) &&
      p.ip.l3_length > snap_->overlays[rt->overlay].inner_mtu) {
    // Path MTU, checked as IPVS does before rewriting: the sender learns the
    // overlay's MTU about its own packet.
    return tooBig(frame, m, snap_->overlays[rt->overlay].inner_mtu);
  }
  BackendStats& bs = stats_[e->backendId().slot()];
  if (original) {
    bump(c_.nat_original);
    bump(bs.inpkts);
    bump(bs.inbytes, p.ip.l3_length);
    // -g: the packet goes as it is, only to the real server's MAC (DSR); -i: inside a
    // tunnel to it (IPv4 real servers only).
    if (__builtin_expect(e->flags & kFlowDirect, 0)) {
      if constexpr (kV4) {
        if (e->flags & kFlowTunnel) return tunnel(frame, m, *e, rt);
      }
      return forward(frame, m, rt, to);
    }
  } else {
    bump(c_.nat_reply);
    bump(bs.outpkts);
    bump(bs.outbytes, p.ip.l3_length);
  }
  const Rewrite<Addr> rw =
      original ? Rewrite<Addr>{!(e->local == e->client),
                               true,
                               {e->local, e->lport},
                               {e->backend, e->bport}}
               : Rewrite<Addr>{
                     true, !(e->local == e->client), {e->vip, e->vport}, {e->client, e->cport}};
  if constexpr (kV4) {
    if (m.plain) {
      natRewritePlain4(frame, rw);
    } else {
      natRewrite(frame, p, rw);
    }
  } else {
    natRewrite(frame, p, rw);
  }
  return forward(frame, m, rt, to);
}

template <bool kTransit, class Addr>
[[gnu::always_inline]] inline Verdict PacketCore::forward(uint8_t* frame, const PacketMeta& m,
                                                          const RouteSnap<Addr>* rt,
                                                          const Addr& dst) {
  uint8_t* ip = frame + m.p.ip.l3_offset;
  if (!rt) return kTransit ? Verdict::toKernel(m.in_port) : drop(Drop::kNoRoute);
  if constexpr (std::is_same_v<Addr, Ipv4Addr>) {
    // A router's TTL step, with the header checksum updated incrementally.
    if (ip[8] <= 1) return kTransit ? Verdict::toKernel(m.in_port) : drop(Drop::kTtlExceeded);
    const uint16_t old = load16(ip + 8);
    ip[8] = static_cast<uint8_t>(ip[8] - 1);
    csumReplace16(ip + 10, old, load16(ip + 8));
  } else {
    // The hop limit's (no header checksum in IPv6).
    if (ip[7] <= 1) return kTransit ? Verdict::toKernel(m.in_port) : drop(Drop::kTtlExceeded);
    ip[7] = static_cast<uint8_t>(ip[7] - 1);
  }
  rewrote_ = true;
  const Addr nexthop = rt->has_gateway ? rt->gateway : dst;
  if (__builtin_expect(rt->overlay >= 0, 0)) return encapsulate(frame, m, *rt, nexthop);
  const auto* mac = fam<Addr>().neigh.find(rt->port, nexthop);
  const auto& port_mac = snap_->port_mac[rt->port];
  if (!mac) {
    // The kernel resolves it (it forwards this packet and ARPs); the mirror then
    // learns the neighbour and later packets go direct. Addressed to the twin
    // itself, or the kernel would not take it in.
    unresolved(rt->port, nexthop);
    std::memcpy(frame, port_mac.data(), 6);
    return Verdict::toKernel(rt->port);
  }
  std::memcpy(frame, mac->data(), 6);
  std::memcpy(frame + 6, port_mac.data(), 6);
  return Verdict::transmit(rt->port);
}

}  // namespace meshlb
