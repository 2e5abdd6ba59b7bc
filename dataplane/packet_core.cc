#include "meshlb/packet_core.h"

#include <cstring>
#include <type_traits>

#include "meshlb/bytes.h"
#include "meshlb/checksum.h"
#include "meshlb/hash.h"

namespace meshlb {

namespace {
constexpr uint32_t kSnatPortTries = 64;
constexpr uint32_t kFirstSnatPort = 1024;
}  // namespace

PacketCore::PacketCore(WorkerCounters& counters, const CoreConfig& cfg)
    : c_(counters),
      idx_(cfg.index),
      workers_(cfg.workers),
      stats_(cfg.backend_stats),
      table_(cfg.flow_capacity, cfg.seed),
      sched_(kMaxServices) {
  snat_next_ = firstSnatPort();
  table_.setConnCounts(cfg.conn_counts);
}

// The lowest port >= 1024 congruent to this worker's index.
uint32_t PacketCore::firstSnatPort() const {
  const uint32_t n = workers_;
  return kFirstSnatPort + (idx_ + n - kFirstSnatPort % n) % n;
}

Verdict PacketCore::handle(uint8_t* frame, const PacketMeta& m) {
  // Untagged IPv4 TCP/UDP: the plain IPv4 instance, without the dispatch below.
  if (__builtin_expect(m.tracked, 1)) return handleFamily<Ipv4Addr, Encap::kPlain>(frame, m);
  if (m.r == ParseResult::kNotIp) return Verdict::toKernel(m.in_port);
  if (m.r != ParseResult::kOk) {
    bump(c_.parse[static_cast<size_t>(m.r)]);
    return drop(Drop::kParse);
  }
  if (m.p.vxlan) return handleFamily<Ipv4Addr, Encap::kVxlan>(frame, m);
  if (m.p.ip.l3 == L3Type::kIpv6) return handleFamily<Ipv6Addr, Encap::kPlain>(frame, m);
  return handleFamily<Ipv4Addr, Encap::kPlain>(frame, m);
}

template <class Addr, Encap kEncap>
Verdict PacketCore::handleFamily(uint8_t* frame, const PacketMeta& m) {
  if constexpr (!std::is_same_v<Addr, Ipv4Addr> || kEncap != Encap::kPlain) {
    // Not balanced yet: IPv6 (ND, ICMPv6 echo) and VXLAN (a kernel vxlan device on the
    // twin, if any) are the kernel's until the IPv6 and overlay instances exist.
    return Verdict::toKernel(m.in_port);
  } else {
    const ParsedPacket& p = m.p;
    if (p.icmp_error && !p.vlan_count) return icmpError(frame, m);
    // The dataplane balances untagged IPv4 TCP and UDP; the kernel has the rest.
    if (!m.tracked) return Verdict::toKernel(m.in_port);
    const FlowKey<Ipv4Addr>& key = m.key;
    // A connection this worker has is one it owns: both directions' keys map to
    // the worker that created it. Only a miss is classified (a service, a MARK
    // rule), and then handed to its owner when that is another worker.
    auto hit = table_.lookupCandidate(key, m.hash, m.cand, now_ms_);
    Flow<Ipv4Addr>* e = hit.flow;
    if (e) {
      if (!snap_->backendLive(e->backendId())) {
        // expire_nodest_conn=1 (Swarm's setting): the real server is gone, so the
        // connection is expired and its packet dropped.
        table_.remove(e);
        return drop(Drop::kNodestExpired);
      }
    } else {
      const ServiceSnap<Ipv4Addr>* svc = classify(key);
      uint16_t owner;
      if (!m.handed && ownedElsewhere(key, svc != nullptr, &owner)) return Verdict::handOff(owner);
      if (!svc) return Verdict::toKernel(m.in_port);
      Drop why;
      e = newConnection(p, *svc, key, &why);
      if (!e) return drop(why);
      hit.dir = FlowDir::kOriginal;
    }

    if (key.proto == kProtoTcp) {
      table_.onTcp(e, hit.dir, p.tcp_flags, now_ms_);
    } else {
      table_.onUdp(e, now_ms_);
    }
    Rewrite4 rw;
    BackendStats& bs = stats_ ? stats_[e->backendId().slot()] : no_stats_;
    if (hit.dir == FlowDir::kOriginal) {
      rw = {!(e->local == e->client), true, {e->local, e->lport}, {e->backend, e->bport}};
      bump(c_.nat_original);
      bump(bs.inpkts);
      bump(bs.inbytes, p.ip.l3_length);
    } else {
      rw = {true, !(e->local == e->client), {e->vip, e->vport}, {e->client, e->cport}};
      bump(c_.nat_reply);
      bump(bs.outpkts);
      bump(bs.outbytes, p.ip.l3_length);
    }
    if (m.plain) {
      natRewritePlain4(frame, rw);
    } else {
      natRewrite(frame, p, rw);
    }
    return forward(frame, p);
  }
}

// Packets to an SNAT address are replies of connections, not new ones for a
// marked service (an SNAT port may equal a marked port); address services still
// apply, for an SNAT address that is also a VIP.
const ServiceSnap<Ipv4Addr>* PacketCore::classify(const FlowKey<Ipv4Addr>& k) const {
  const FamilySnap<Ipv4Addr>& f = snap_->v4;
  if (f.snat_addrs.contains(k.dst)) return f.findService(k.proto, k.dst, k.dport);
  return f.classify(k.proto, k.src, k.dst, k.sport, k.dport);
}

// Whether another worker owns the connection of a packet that missed (sets *owner).
bool PacketCore::ownedElsewhere(const FlowKey<Ipv4Addr>& key, bool to_service,
                                uint16_t* owner) const {
  if (workers_ == 1) return false;
  *owner = to_service                                 ? ownerOf({key.src, key.sport}, workers_)
           : !snap_->v4.snat_addrs.contains(key.dst) ? ownerOf({key.dst, key.dport}, workers_)
                                                      : ownerOfSnatPort(key.dport, workers_);
  return *owner != idx_;
}

// An ICMP error about a tracked connection (unreachable, fragmentation needed,
// time exceeded), translated as IPVS does: the quoted packet is one meshlb sent,
// so its reverse is a packet of the connection, whose direction says which way
// the error goes. Anything else is the kernel's.
Verdict PacketCore::icmpError(uint8_t* frame, const PacketMeta& m) {
  const ParsedPacket& p = m.p;
  const L3L4Info& in = p.inner;
  if (in.l3 != L3Type::kIpv4 || !in.has_ports ||
      (in.l4_proto != kProtoTcp && in.l4_proto != kProtoUdp)) {
    return Verdict::toKernel(m.in_port);
  }
  const uint8_t* iip = frame + in.l3_offset;
  // The quoted packet, reversed: what the peer itself would send on this connection.
  const FlowKey<Ipv4Addr> key{{load32(iip + 16)}, {load32(iip + 12)}, in.dport, in.sport,
                              in.l4_proto};
  const ServiceSnap<Ipv4Addr>* svc = classify(key);
  uint16_t owner;
  if (!m.handed && ownedElsewhere(key, svc != nullptr, &owner)) return Verdict::handOff(owner);
  auto hit = table_.lookup(key, now_ms_);
  Flow<Ipv4Addr>* e = hit.flow;
  if (!e) return Verdict::toKernel(m.in_port);
  Rewrite4 outer, inner;
  if (hit.dir == FlowDir::kReply) {
    // From the task's side, about LB->task: to the client, about client->VIP.
    outer = {true, true, {e->vip, 0}, {e->client, 0}};
    inner = {true, true, {e->client, e->cport}, {e->vip, e->vport}};
  } else {
    // From the client's side, about VIP->client: to the task, about task->local.
    outer = {true, true, {e->local, 0}, {e->backend, 0}};
    inner = {true, true, {e->backend, e->bport}, {e->local, e->lport}};
  }
  natRewriteIcmpError(frame, p, outer, inner);
  bump(c_.icmp_translated);
  return forward(frame, p);
}

Flow<Ipv4Addr>* PacketCore::newConnection(const ParsedPacket& p,
                                          const ServiceSnap<Ipv4Addr>& svc,
                                          const FlowKey<Ipv4Addr>& key, Drop* why) {
  if (key.proto == kProtoTcp && (p.tcp_flags & (kTcpSyn | kTcpAck | kTcpRst)) != kTcpSyn) {
    // IPVS schedules TCP only on a SYN (sloppy_tcp=0).
    *why = Drop::kTcpNotSyn;
    return nullptr;
  }
  if (p.ip.fragment) {
    *why = Drop::kFragment;
    return nullptr;
  }
  // mh hashes the client address alone (IPVS mh without mh-port).
  PickInput in;
  in.client_hash = mum(uint64_t{key.src.v} ^ kHashK0, kHashK1);
  in.conn_counts = nullptr;
  const uint32_t i = svc.sched->pick(svc, sched_[svc.slot], in);
  if (i >= svc.backends.size()) {
    *why = Drop::kNoBackend;
    return nullptr;
  }
  const BackendSnap<Ipv4Addr>& b = svc.backends[i];
  Flow<Ipv4Addr> f{};
  f.client = key.src;
  f.cport = key.sport;
  f.vip = key.dst;
  f.vport = key.dport;
  f.backend = b.addr;
  f.bport = b.port ? b.port : key.dport;
  f.backend_id = b.id.raw();
  f.udp = key.proto == kProtoUdp;
  f.state = static_cast<uint32_t>(f.udp ? ConnState::kUdp : ConnState::kNone);
  f.local = f.client;
  f.lport = f.cport;

  const FamilySnap<Ipv4Addr>& fam = snap_->v4;
  Ipv4Addr snat{};
  if (const SnatRule<Ipv4Addr>* rule = fam.snatRule(b.addr)) {
    if (rule->masquerade) {
      const RouteSnap<Ipv4Addr>* rt = fam.route(b.addr);
      if (rt && fam.port_has_addr[rt->port]) snat = fam.port_addr[rt->port];
    } else {
      snat = rule->to_source;
    }
  }
  Flow<Ipv4Addr>* e = nullptr;
  if (snat.v == 0) {
    e = table_.insert(f, now_ms_);
  } else {
    f.local = snat;
    // Ports congruent to this worker's index, so replies find their owner.
    for (uint32_t t = 0; t < kSnatPortTries && !e; ++t) {
      snat_next_ += workers_;
      if (snat_next_ > 65535) snat_next_ = firstSnatPort();
      f.lport = hton16(static_cast<uint16_t>(snat_next_));
      e = table_.insert(f, now_ms_);
    }
  }
  if (!e) {
    *why = Drop::kSnatPortsExhausted;
    return nullptr;
  }
  bump(c_.new_connections);
  if (stats_) bump(stats_[e->backendId().slot()].conns);
  return e;
}

Verdict PacketCore::forward(uint8_t* frame, const ParsedPacket& p) {
  uint8_t* ip = frame + p.ip.l3_offset;
  const Ipv4Addr dst{load32(ip + 16)};
  const FamilySnap<Ipv4Addr>& fam = snap_->v4;
  const RouteSnap<Ipv4Addr>* rt = fam.route(dst);
  if (!rt) return drop(Drop::kNoRoute);
  // A router's TTL step, with the header checksum updated incrementally.
  if (ip[8] <= 1) return drop(Drop::kTtlExceeded);
  const uint16_t old = load16(ip + 8);
  ip[8] = static_cast<uint8_t>(ip[8] - 1);
  csumReplace16(ip + 10, old, load16(ip + 8));
  const Ipv4Addr nexthop = rt->has_gateway ? rt->gateway : dst;
  const auto* mac = fam.neigh.find(rt->port, nexthop);
  const auto& port_mac = snap_->port_mac[rt->port];
  if (!mac) {
    // The kernel resolves it (it forwards this packet and ARPs); the mirror then
    // learns the neighbour and later packets go direct. Addressed to the twin
    // itself, or the kernel would not take it in.
    bump(c_.neigh_unresolved_to_kernel);
    std::memcpy(frame, port_mac.data(), 6);
    return Verdict::toKernel(rt->port);
  }
  std::memcpy(frame, mac->data(), 6);
  std::memcpy(frame + 6, port_mac.data(), 6);
  return Verdict::transmit(rt->port);
}

}  // namespace meshlb
