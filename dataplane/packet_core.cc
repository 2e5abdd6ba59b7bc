#include "meshlb/packet_core.h"

#include <cstring>
#include <type_traits>
#include <utility>

#include "meshlb/bytes.h"
#include "meshlb/checksum.h"
#include "meshlb/hash.h"
#include "meshlb/vxlan.h"

namespace meshlb {

namespace {
constexpr uint32_t kSnatPortTries = 64;
constexpr uint32_t kFirstSnatPort = 1024;
}  // namespace

PacketCore::PacketCore(WorkerCounters& counters, const CoreConfig& cfg)
    : c_(counters),
      idx_(cfg.index),
      workers_(cfg.workers),
      own_stats_(cfg.backend_stats ? 0 : BackendId::kSlots, Backing::kLazy),
      stats_(cfg.backend_stats ? cfg.backend_stats : own_stats_.get()),
      table_(cfg.flow_capacity, cfg.seed),
      table6_(cfg.flow_capacity6 ? cfg.flow_capacity6 : cfg.flow_capacity, cfg.seed),
      all_counts_(cfg.all_conn_counts),
      own_overload_(cfg.overload ? 0 : BackendId::kSlots, Backing::kLazy),
      overload_(cfg.overload ? cfg.overload : own_overload_.get()),
      rng_((cfg.seed ^ 0x9e3779b97f4a7c15ull) | 1),
      sched_(kMaxServices),
      own_templates_(cfg.templates ? nullptr : std::make_unique<PersistTable>(1024)),
      templates_(cfg.templates ? cfg.templates : own_templates_.get()),
      template_of_(cfg.flow_capacity + 1, Backing::kLazy),
      template_of6_(table6_.capacity() + 1, Backing::kLazy),
      sync_out_(cfg.sync_out),
      sync_ctx_(cfg.sync_ctx) {
  // A point of the port cycle drawn from the seed (random per start): a restarted
  // appliance does not first hand out again the ports it gave just before, which the
  // real servers may still hold in TIME_WAIT (a SYN from one would meet the old
  // connection's ACK, and cost the client a reset and a retry).
  const uint32_t slots = (65536 - firstSnatPort()) / workers_;
  snat_next_ = firstSnatPort() + workers_ * static_cast<uint32_t>((cfg.seed >> 16) % slots);
  table_.setConnCounts(cfg.conn_counts);
  table_.setReleaseHook(&PacketCore::releaseTemplate<Ipv4Addr>, this);
  table6_.setConnCounts(cfg.conn_counts);
  table6_.setReleaseHook(&PacketCore::releaseTemplate<Ipv6Addr>, this);
  if (sync_out_) {
    table_.setStateHook(&PacketCore::stateChanged<Ipv4Addr>, this);
    table6_.setStateHook(&PacketCore::stateChanged<Ipv6Addr>, this);
  }
  if (all_counts_.empty() && cfg.conn_counts) all_counts_.push_back(cfg.conn_counts);
}

// The lowest port >= 1024 congruent to this worker's index.
uint32_t PacketCore::firstSnatPort() const {
  const uint32_t n = workers_;
  return kFirstSnatPort + (idx_ + n - kFirstSnatPort % n) % n;
}

Verdict PacketCore::handleUntracked(uint8_t* frame, const PacketMeta& m) {
  if (m.r == ParseResult::kNotIp) return Verdict::toKernel(m.in_port);
  if (m.r != ParseResult::kOk) {
    bump(c_.parse[static_cast<size_t>(m.r)]);
    return drop(Drop::kParse);
  }
  if (m.p.vxlan) return handleFamily<Ipv4Addr, Encap::kVxlan>(frame, m);
  if (m.p.ip.l3 == L3Type::kIpv6) return handleFamily<Ipv6Addr, Encap::kPlain>(frame, m);
  return handleFamily<Ipv4Addr, Encap::kPlain>(frame, m);
}

Verdict PacketCore::handle6(uint8_t* frame, const PacketMeta& m) {
  // Untagged TCP and UDP (prepare() keyed and prefetched them); ICMPv6 errors about a
  // connection; the rest (ND, echo, tagged frames) is the kernel twin's.
  if (m.tracked6) {
    return track<Ipv6Addr>(frame, m, m.key6,
                           table6_.lookupCandidate(m.key6, m.hash, m.cand, now_ms_));
  }
  if (m.p.icmp_error && !m.p.vlan_count) return icmpError<Ipv6Addr>(frame, m);
  return Verdict::toKernel(m.in_port);
}

// Packets to an SNAT address are replies of connections, not new ones for a
// marked service (an SNAT port may equal a marked port); address services still
// apply, for an SNAT address that is also a VIP.
template <class Addr>
const ServiceSnap<Addr>* PacketCore::classify(const FlowKey<Addr>& k, const Addr& dst,
                                              uint16_t dport) const {
  const FamilySnap<Addr>& f = fam<Addr>();
  if (f.snat_addrs.contains(k.dst)) return f.findService(k.proto, k.dst, k.dport);
  // ip_vs_service_find(): the mark (mangle PREROUTING on the packet as it came, INPUT
  // after a DNAT) has its fwmark service first, then the address service.
  if (!f.marks.empty()) {
    if (const uint32_t mark = f.markOf(k.proto, k.src, k.dst, k.sport, k.dport, dst, dport)) {
      if (const ServiceSnap<Addr>* s = f.findFwmark(mark)) return s;
    }
  }
  return f.findService(k.proto, dst, dport);
}

// Whether another worker owns the connection of a packet that missed (sets *owner).
template <class Addr>
bool PacketCore::ownedElsewhere(const FlowKey<Addr>& key, bool to_service, uint16_t* owner) const {
  if (workers_ == 1) return false;
  *owner = to_service ? ownerOf(Endpoint<Addr>{key.src, key.sport}, workers_)
           : !fam<Addr>().snat_addrs.contains(key.dst)
               ? ownerOf(Endpoint<Addr>{key.dst, key.dport}, workers_)
               : ownerOfSnatPort(key.dport, workers_);
  return *owner != idx_;
}

// An ICMP error about a tracked connection (unreachable, fragmentation needed,
// time exceeded), translated as IPVS does: the quoted packet is one meshlb sent,
// so its reverse is a packet of the connection, whose direction says which way
// the error goes. Anything else is the kernel's.
template <class Addr>
Verdict PacketCore::icmpError(uint8_t* frame, const PacketMeta& m) {
  constexpr bool kV4 = std::is_same_v<Addr, Ipv4Addr>;
  const ParsedPacket& p = m.p;
  const L3L4Info& in = p.inner;
  if (in.l3 != (kV4 ? L3Type::kIpv4 : L3Type::kIpv6) || !in.has_ports ||
      (in.l4_proto != kProtoTcp && in.l4_proto != kProtoUdp)) {
    return Verdict::toKernel(m.in_port);
  }
  const uint8_t* iip = frame + in.l3_offset;
  // The quoted packet, reversed: what the peer itself would send on this connection.
  FlowKey<Addr> key;
  if constexpr (kV4) {
    key = {{load32(iip + 16)}, {load32(iip + 12)}, in.dport, in.sport, in.l4_proto};
  } else {
    std::memcpy(key.src.b, iip + 24, 16);
    std::memcpy(key.dst.b, iip + 8, 16);
    key.sport = in.dport;
    key.dport = in.sport;
    key.proto = in.l4_proto;
  }
  const ServiceSnap<Addr>* svc =
      fam<Addr>().local_addrs.contains(key.dst) ? classify(key) : nullptr;
  uint16_t owner;
  if (!m.handed && ownedElsewhere(key, svc != nullptr, &owner)) return Verdict::handOff(owner);
  auto hit = tableOf<Addr>().lookup(key, now_ms_);
  Flow<Addr>* e = hit.flow;
  if (!e) {
    // schedule_icmp: an error from a client about a packet of a connection this
    // appliance has not seen (a -g or -i server's reply, or one ECMP sent elsewhere) is
    // scheduled as the connection's first packet would be, so it reaches the server that
    // sent it (with sh or mh, the same one). TCP as tcp_conn_schedule: the quoted
    // segment's SYN (or sloppy_tcp), never its RST.
    if (!svc || !snap_->sysctls.schedule_icmp) return Verdict::toKernel(m.in_port);
    ParsedPacket q = p;
    q.ip.fragment = false;
    q.tcp_flags = 0;
    if (in.l4_proto == kProtoTcp && p.ip.l3_offset + p.ip.l3_length >= in.l4_offset + 14) {
      const uint8_t flags = frame[in.l4_offset + 13];
      if (!(flags & kTcpRst)) q.tcp_flags = flags & kTcpSyn ? kTcpSyn : kTcpAck;
    }
    Drop why;
    e = newConnection(q, *svc, key, key.dport, &why);
    if (!e) return Verdict::toKernel(m.in_port);
    bump(c_.icmp_scheduled);
    hit.dir = FlowDir::kOriginal;
  }
  if (e->flags & kFlowDirect && hit.dir == FlowDir::kOriginal) {
    // The client's error about what a -g or -i server sent it: to that server as it is
    // (ip_vs_in_icmp with the connection's own transmitter).
    bump(c_.icmp_translated);
    const RouteSnap<Addr>* rt = fam<Addr>().route(e->backend);
    if constexpr (kV4) {
      if (e->flags & kFlowTunnel) return tunnel(frame, m, *e, rt);
    }
    return forward(frame, m, rt, e->backend);
  }
  Rewrite<Addr> outer, inner;
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
  return forward<false, Addr>(frame, m);
}

template <class Addr>
Flow<Addr>* PacketCore::onMiss(uint8_t* frame, const PacketMeta& m, const FlowKey<Addr>& key,
                               Verdict* v) {
  constexpr bool kV4 = std::is_same_v<Addr, Ipv4Addr>;
  const FamilySnap<Addr>& fam = this->fam<Addr>();
  // nat PREROUTING (Swarm's host-side DOCKER-INGRESS): a DNAT before IPVS sees the
  // packet. Never for replies to an SNAT address.
  Addr dst = key.dst;
  uint16_t dport = key.dport;
  const bool dnat = !fam.nat_chains.empty() && !fam.snat_addrs.contains(key.dst) &&
                    fam.dnat(key.proto, key.src, &dst, key.sport, &dport);
  const bool local = fam.local_addrs.contains(dst);
  const ServiceSnap<Addr>* svc = local ? classify(key, dst, dport) : nullptr;
  uint16_t owner;
  if (!m.handed && ownedElsewhere(key, svc != nullptr || dnat, &owner)) {
    *v = Verdict::handOff(owner);
    return nullptr;
  }
  Drop why;
  Flow<Addr>* e = nullptr;
  if (!local) {
    bool group;
    if constexpr (kV4) {
      const auto* d = reinterpret_cast<const uint8_t*>(&key.dst.v);
      group = (d[0] & 0xf0) == 0xe0 || key.dst.v == 0xffffffffu;
    } else {
      group = key.dst.b[0] == 0xff;
    }
    if (__builtin_expect(group, 0)) {
      // Multicast (the sync daemons' 224.0.0.81) and broadcast: the kernel's, never routed.
      *v = Verdict::toKernel(m.in_port);
      return nullptr;
    }
    if (__builtin_expect(snap_->sysctls.nat_icmp_send, 0) && kV4 && !dnat &&
        fam.masq_servers.findValue(
            FamilySnap<Addr>::realServerKey(key.proto, key.src, key.sport))) {
      // nat_icmp_send (ip_vs_out): a masquerading real server's packet that no
      // connection has (the appliance restarted, the connection expired) is dropped, and
      // unless it is a RST its server learns so: ICMP port unreachable.
      *v = key.proto == kProtoTcp && m.p.tcp_flags & kTcpRst ? drop(Drop::kMasqNoConn)
                                                             : unreachable(frame, m);
      return nullptr;
    }
    if (!dnat) {
      // Not for the appliance: IPVS (LOCAL_IN) never sees it, whatever its mark.
      *v = forward</*kTransit=*/true, Addr>(frame, m);
      if (v->action == Verdict::kTransmit) {
        bump(c_.routed);
      } else if (v->action == Verdict::kToKernel &&
                 fam.findService(key.proto, key.dst, key.dport)) {
        // To a service's address and port, for the kernel to route: in the moments
        // after a restart or an `ip addr add`, the kernel has the address before the
        // mirror does, and would answer with a RST (a client's connection lost).
        // Dropped, it comes again to a meshlbd that knows.
        *v = drop(Drop::kServiceNotLocal);
      }
      return nullptr;
    }
    // DNAT to an address that is not the appliance's: the connection is NAT'd to it
    // as conntrack would, replies un-NAT'd; POSTROUTING rules without --ipvs apply.
    const BackendSnap<Addr> b{dst, dport, 1, kDnatBackend, Forwarding::kMasq, {}};
    e = admit(m.p, key, b, dport, /*ipvs=*/false, &why);
  } else if (!svc) {
    *v = key.proto == kProtoUdp && snap_->hasOverlayPort(hton16(key.dport))
             ? decapsulateOn(frame, m, hton16(key.dport))
             : Verdict::toKernel(m.in_port);
    return nullptr;
  } else {
    e = newConnection(m.p, *svc, key, dport, &why);
  }
  if (!e) *v = drop(why);
  return e;
}

template <class Addr>
void PacketCore::releaseTemplate(void* self, uint32_t record) {
  auto* core = static_cast<PacketCore*>(self);
  core->templates_->release(std::exchange(core->templateOf<Addr>()[record], 0), core->now_ms_);
}

// conn_reuse_mode (ip_vs_in's is_new_conn_expected): a SYN on a connection in TIME_WAIT
// or CLOSE (with bit 1, also FIN_WAIT of one the appliance sees one way only: -g, -i)
// ends it and starts a new one; never one a persistence template holds. With
// expire_nodest_conn, a SYN on any connection to a server at weight 0 too.
template <class Addr>
bool PacketCore::reusable(const Flow<Addr>& e) const {
  if (e.flags & kFlowPersist) return false;  // a template's: never (!cp->control)
  // expire_nodest_conn (since Linux 5.13, whatever conn_reuse_mode is): a SYN on a
  // connection to a server at weight 0 (a Swarm task leaving) is scheduled afresh.
  if (snap_->sysctls.expire_nodest_conn && snap_->quiescent.findValue(e.backend_id)) return true;
  const uint32_t mode = snap_->sysctls.conn_reuse_mode;
  if (!mode) return false;
  const ConnState s = e.connState();
  return s == ConnState::kTimeWait || s == ConnState::kClose ||
         (mode & 2 && s == ConnState::kFinWait && e.flags & kFlowDirect);
}

// The folds IPVS's source and destination hashing take of an address (host order):
// IPv6's four words XORed (ip_vs_sh_hashkey, ip_vs_dh_hashkey).
inline uint32_t addrFold(const Ipv4Addr& a) { return __builtin_bswap32(a.v); }
inline uint32_t addrFold(const Ipv6Addr& a) {
  return __builtin_bswap32(load32(a.b) ^ load32(a.b + 4) ^ load32(a.b + 8) ^ load32(a.b + 12));
}
inline uint64_t addrHash(const Ipv4Addr& a, uint64_t port) {
  return mum(uint64_t{a.v} ^ port ^ kHashK0, kHashK1);
}
inline uint64_t addrHash(const Ipv6Addr& a, uint64_t port) { return hashBytes(a.b, 16, port); }

template <class Addr>
Flow<Addr>* PacketCore::newConnection(const ParsedPacket& p, const ServiceSnap<Addr>& svc,
                                      const FlowKey<Addr>& key, uint16_t dport, Drop* why) {
  // Before scheduling, so that what is refused moves no scheduler: IPVS schedules TCP
  // only on a SYN (with sloppy_tcp, on anything but a RST), and never a fragment.
  const bool sloppy = snap_->sysctls.sloppy_tcp;
  if (key.proto == kProtoTcp &&
      (sloppy ? p.tcp_flags & kTcpRst : (p.tcp_flags & (kTcpSyn | kTcpAck | kTcpRst)) != kTcpSyn)) {
    *why = Drop::kTcpNotSyn;
    return nullptr;
  }
  if (p.ip.fragment) {
    *why = Drop::kFragment;
    return nullptr;
  }
  // mh hashes the client address, and with mh-port its port too.
  PickInput in;
  const uint64_t port = svc.sched_flags & kSchedPort ? uint64_t{key.sport} << 32 : 0;
  in.client_hash = addrHash(key.src, port);
  in.src_fold = addrFold(key.src);
  in.dst_fold = addrFold(key.dst);
  in.src_port = __builtin_bswap16(key.sport);
  rng_ ^= rng_ >> 12, rng_ ^= rng_ << 25, rng_ ^= rng_ >> 27;
  in.random = rng_ * 0x2545f4914f6cdd1dull;
  in.now_s = now_ms_ / 1000;
  if (svc.sched->needs_conn_counts || !svc.u_thresholds.empty()) in.conn_counts = all_counts_;
  if (!svc.u_thresholds.empty()) in.overload = overload_;
  if (svc.locality) {
    in.expiration_s = std::strcmp(svc.sched->name, "lblcr") == 0 ? snap_->sysctls.lblcr_expiration
                                                                 : snap_->sysctls.lblc_expiration;
  }
  const bool untracked = svc.ops && key.proto == kProtoUdp;
  if (!svc.persist_ms) {
    const uint32_t i = svc.sched->pick(svc, sched_[svc.slot], in);
    if (i >= svc.backends.size()) {
      *why = Drop::kNoBackend;
      return nullptr;
    }
    return admit(p, key, svc.backends[i], dport, /*ipvs=*/true, why, untracked);
  }
  // Persistence (ip_vs_sched_persist): the real server the client's template names,
  // while it is still the service's (and, with expire_quiescent_template, not
  // quiescent); else the scheduler's, which a new template remembers.
  PersistTable::Key tk;
  tk.service = svc.slot;
  for (size_t b = 0; b < sizeof(Addr); ++b) {
    tk.net[b] = reinterpret_cast<const uint8_t*>(&key.src)[b] &
                reinterpret_cast<const uint8_t*>(&svc.persist_mask)[b];
  }
  const bool void_quiescent = snap_->sysctls.expire_quiescent_template;
  uint32_t i = kNoBackend;
  PersistTable::Ref ref = 0;
  const uint32_t raw = templates_->bind(
      tk, now_ms_, svc.persist_ms, /*hold=*/!untracked,
      [&](uint32_t backend) {
        auto it = svc.index_of.find(backend);
        if (it == svc.index_of.end() || (void_quiescent && svc.weights[it->second] == 0)) {
          return false;
        }
        i = it->second;
        return true;
      },
      [&]() -> uint32_t {
        i = svc.sched->pick(svc, sched_[svc.slot], in);
        return i < svc.backends.size() ? svc.backends[i].id.raw() : 0;
      },
      &ref);
  if (!raw) {
    *why = Drop::kNoBackend;
    return nullptr;
  }
  BackendSnap<Addr> b = svc.backends[i];
  // A port-0 or firewall-mark service's connections keep the packet's port (its
  // templates have none).
  if (svc.vport == 0) b.port = 0;
  Flow<Addr>* e = admit(p, key, b, dport, /*ipvs=*/true, why, untracked);
  if (e && ref) {
    e->flags |= kFlowPersist;
    templateOf<Addr>()[tableOf<Addr>().indexOf(e)] = ref;
  } else {
    templates_->release(ref, now_ms_);
  }
  return e;
}

// Tracks a new connection of `key` to backend `b` (its port 0: keep `dport`, the
// destination port IPVS saw), with the SNAT a POSTROUTING rule gives it.
template <class Addr>
Flow<Addr>* PacketCore::admit(const ParsedPacket& p, const FlowKey<Addr>& key,
                              const BackendSnap<Addr>& b, uint16_t dport, bool ipvs, Drop* why,
                              bool untracked) {
  if (key.proto == kProtoTcp && !snap_->sysctls.sloppy_tcp &&
      (p.tcp_flags & (kTcpSyn | kTcpAck | kTcpRst)) != kTcpSyn) {
    *why = Drop::kTcpNotSyn;  // no connection starts without a SYN (sloppy_tcp=0)
    return nullptr;
  }
  if (p.ip.fragment) {
    *why = Drop::kFragment;
    return nullptr;
  }
  Flow<Addr> f{};
  f.client = key.src;
  f.cport = key.sport;
  f.vip = key.dst;
  f.vport = key.dport;
  f.backend = b.addr;
  f.bport = b.port ? b.port : dport;
  f.backend_id = b.id.raw();
  f.flags = b.fwd == Forwarding::kDirect   ? kFlowDirect
            : b.fwd == Forwarding::kTunnel ? kFlowDirect | kFlowTunnel
                                           : 0;
  f.udp = key.proto == kProtoUdp;
  f.state = static_cast<uint32_t>(f.udp ? ConnState::kUdp : ConnState::kNone);
  f.local = f.client;
  f.lport = f.cport;

  const FamilySnap<Addr>& fam = this->fam<Addr>();
  Addr snat{};
  bool has_snat = false;
  if (untracked) {
    // -o: scheduled, counted, rewritten like any connection's first packet, and
    // forgotten (the kernel's IP_VS_CONN_F_ONE_PACKET): replies are not translated
    // back, and no SNAT port is taken.
    Flow<Addr>& u = [&]() -> Flow<Addr>& {
      if constexpr (std::is_same_v<Addr, Ipv4Addr>) {
        return untracked_;
      } else {
        return untracked6_;
      }
    }();
    u = f;
    bump(c_.new_connections);
    bump(stats_[b.id.slot()].conns);
    return &u;
  }
  const SnatRule<Addr>* rule = f.flags ? nullptr : fam.snatRule(b.addr, ipvs);
  if (rule && rule->masquerade) {
    // The first address of the device the packet leaves through: a twin or a vxlan device.
    if (const RouteSnap<Addr>* rt = fam.route(b.addr); rt && rt->overlay >= 0) {
      if (fam.overlay_has_addr[rt->overlay]) snat = fam.overlay_addr[rt->overlay], has_snat = true;
    } else if (rt && fam.port_has_addr[rt->port]) {
      snat = fam.port_addr[rt->port], has_snat = true;
    }
  } else if (rule) {
    snat = rule->to_source, has_snat = true;
  }
  FlowTable<Addr>& table = tableOf<Addr>();
  Flow<Addr>* e = nullptr;
  if (!has_snat) {
    e = table.insert(f, now_ms_);
  } else {
    f.local = snat;
    // Ports congruent to this worker's index, so replies find their owner, walked
    // in a cycle: the port tried next is the one allocated longest ago, and one
    // still held by a handshake (a spoofed SYN's) is taken back from it. One try,
    // unless established connections hold the port: bounded by kSnatPortTries.
    for (uint32_t t = 0; t < kSnatPortTries && !e; ++t) {
      snat_next_ += workers_;
      if (snat_next_ > 65535) snat_next_ = firstSnatPort();
      f.lport = hton16(static_cast<uint16_t>(snat_next_));
      e = table.insertRecycling(f, now_ms_);
    }
  }
  if (!e) {
    *why = Drop::kSnatPortsExhausted;
    return nullptr;
  }
  bump(c_.new_connections);
  bump(stats_[e->backendId().slot()].conns);
  // A TCP connection is sent once established (stateChanged); a UDP one now.
  if (__builtin_expect(sync_out_ != nullptr, 0) && f.udp && snap_->sync_master) syncOut(*e);
  return e;
}

template <class Addr>
void PacketCore::syncOut(const Flow<Addr>& e) {
  if (e.backend_id == kDnatBackend.raw()) return;  // conntrack's (a nat DNAT), not IPVS's
  SyncRecord r;
  r.set(e);
  const auto left = static_cast<int32_t>(e.expires_ms - now_ms_);
  if (left <= 0) return;
  r.timeout_ms = static_cast<uint32_t>(left);
  if (sync_out_(sync_ctx_, r)) {
    bump(c_.sync_queued);
  } else {
    bump(c_.sync_queue_full);
  }
  // ip_vs_sync_conn(): the template that controls it goes too.
  PersistTable::Entry t;
  if (!(e.flags & kFlowPersist) ||
      !templates_->entryOf(templateOf<Addr>()[tableOf<Addr>().indexOf(&e)], &t)) {
    return;
  }
  SyncRecord tr;
  tr.is_template = 1;
  tr.set(e);
  Flow<Addr>& tf = tr.flowOf<Addr>();
  std::memcpy(&tf.client, t.key.net, sizeof(Addr));
  tf.cport = 0;
  tf.backend_id = t.backend;
  tf.local = tf.client, tf.lport = 0;
  // A busy template whose timeout has run out lives on (the kernel re-arms it 60 s
  // at a time): a backup's copy gets that minute.
  const auto t_left = static_cast<int32_t>(t.expires_ms - now_ms_);
  tr.timeout_ms = t_left > 0 ? static_cast<uint32_t>(t_left) : 60'000;
  if (sync_out_(sync_ctx_, tr)) {
    bump(c_.sync_queued);
  } else {
    bump(c_.sync_queue_full);
  }
}

// ip_vs_sync_conn_needed(): TCP connections as they enter ESTABLISHED, FIN_WAIT,
// CLOSE, CLOSE_WAIT or TIME_WAIT.
template <class Addr>
void PacketCore::stateChanged(void* self, const Flow<Addr>& e) {
  auto* core = static_cast<PacketCore*>(self);
  if (!core->snap_ || !core->snap_->sync_master) return;
  switch (e.connState()) {
    case ConnState::kEstablished:
    case ConnState::kFinWait:
    case ConnState::kClose:
    case ConnState::kCloseWait:
    case ConnState::kTimeWait:
      core->syncOut(e);
      break;
    default:
      break;
  }
}

// With the sweep, once per millisecond: a slice of the table such that each
// ESTABLISHED or UDP connection is sent again every kSyncRefreshMs, if it had a packet
// meanwhile (its deadline moved; an idle one's copies expire with it).
void PacketCore::refreshSome() {
  const uint32_t secs = std::min<uint32_t>(snap_->sysctls.sync_refresh_period, 86400);
  const uint32_t period_ms = secs ? secs * 1000 : kSyncRefreshMs;
  refreshSome<Ipv4Addr>(&sync_cursor_, &resend_left_, period_ms);
  refreshSome<Ipv6Addr>(&sync_cursor6_, &resend_left6_, period_ms);
}

template <class Addr>
void PacketCore::refreshSome(uint32_t* cursor, uint32_t* resend_left, uint32_t period_ms) {
  FlowTable<Addr>& table = tableOf<Addr>();
  const uint32_t budget = table.capacity() / period_ms + 1;
  // In a lap after a peer started, idle connections go too: the peer has none of them.
  const bool all = *resend_left > 0;
  *resend_left -= std::min(*resend_left, budget);
  table.visitSome(cursor, budget, now_ms_, [&](const Flow<Addr>& e) {
    const ConnState s = e.connState();
    if (s != ConnState::kEstablished && s != ConnState::kUdp) return;
    const uint32_t last_packet = e.expires_ms - table.timeouts().of(s);
    if (all || now_ms_ - last_packet <= period_ms) syncOut(e);
  });
}

bool PacketCore::installSynced(const SyncRecord& r) {
  return r.family == Family::kIpv6 ? installSynced<Ipv6Addr>(r) : installSynced<Ipv4Addr>(r);
}

template <class Addr>
bool PacketCore::installSynced(const SyncRecord& r) {
  FlowTable<Addr>& table = tableOf<Addr>();
  Flow<Addr> f = r.flowOf<Addr>();
  f.flags &= ~kFlowPersist;  // no template of this appliance's holds it
  auto hit = table.lookup(f.originalKey(), now_ms_);
  if (Flow<Addr>* e = hit.flow) {
    if (hit.dir == FlowDir::kOriginal && e->backend_id == f.backend_id && e->backend == f.backend &&
        e->bport == f.bport && e->local == f.local && e->lport == f.lport) {
      table.setState(e, f.connState());  // ip_vs_proc_conn: the master's state and timeout
      e->expires_ms = now_ms_ + r.timeout_ms;
      bump(c_.sync_updated);
      return true;
    }
    // Another connection of the same client's (ip_vs_proc_conn): an active record is the
    // master's newer one, and this entry ends; one that is not (its handshake or end) is
    // the last word on a connection this entry already replaced (ECMP sent the client's
    // next one here, as its address and port came back): ignored, as the kernel does.
    const ConnState s = f.connState();
    if (s != ConnState::kEstablished && s != ConnState::kUdp) {
      bump(c_.sync_ignored);
      return false;
    }
    table.remove(e);
  }
  Flow<Addr>* e = table.insert(f, now_ms_);
  if (!e) {
    // Its reply key (the master's SNAT address and port) is another copy's: one the
    // master gave up (it restarted, its ports handed out afresh) while this one still
    // had it. The master's word is the newer: that copy goes.
    if (Flow<Addr>* stale = table.lookup(f.replyKey(), now_ms_).flow) {
      table.remove(stale);
      bump(c_.sync_replaced);
      e = table.insert(f, now_ms_);
    }
  }
  if (!e) {
    bump(c_.sync_install_failed);
    return false;
  }
  e->expires_ms = now_ms_ + r.timeout_ms;
  bump(c_.sync_installed);
  return true;
}

// Into the overlay: the inner frame addressed to the task's MAC (the vxlan device's
// neighbour) from the device's MAC, then VXLAN towards the node the FDB names, over
// the underlay route to it; written into the headroom in front of the frame.
template <class Addr>
Verdict PacketCore::encapsulate(uint8_t* frame, const PacketMeta& m, const RouteSnap<Addr>& rt,
                                const Addr& nexthop) {
  const OverlaySnap& ov = snap_->overlays[rt.overlay];
  const auto* inner_mac =
      this->fam<Addr>().neigh.find(static_cast<uint16_t>(kOverlayNeighPort + rt.overlay), nexthop);
  if (!inner_mac) return drop(Drop::kOverlayUnresolved);
  const IpAddr* vtep = snap_->fdb.find(static_cast<uint16_t>(rt.overlay), *inner_mac);
  if (!vtep) return drop(Drop::kOverlayNoFdb);
  return ov.v6 ? encapsulateOver<Addr>(frame, m, ov, *inner_mac, vtep->v6())
               : encapsulateOver<Addr>(frame, m, ov, *inner_mac, vtep->v4());
}

// The outer headers over the underlay of the VTEP's family.
template <class Addr, class Under>
Verdict PacketCore::encapsulateOver(uint8_t* frame, const PacketMeta& m, const OverlaySnap& ov,
                                    const std::array<uint8_t, 6>& inner_mac, const Under& vtep) {
  constexpr bool kV6Under = std::is_same_v<Under, Ipv6Addr>;
  const FamilySnap<Under>& fam = this->fam<Under>();  // the underlay's
  const RouteSnap<Under>* under = fam.route(vtep);
  if (!under || under->overlay >= 0) return drop(Drop::kNoRoute);
  const uint32_t encap_len = kV6Under ? kVxlanEncap6Len : kVxlanEncapLen;
  if (m.headroom < encap_len) return drop(Drop::kNoHeadroom);
  std::memcpy(frame, inner_mac.data(), 6);
  std::memcpy(frame + 6, ov.mac.data(), 6);
  const auto inner_len = static_cast<uint32_t>(m.p.ip.l3_offset + m.p.ip.l3_length);
  VxlanTunnel t;
  const auto& port_mac = snap_->port_mac[under->port];
  const Under hop = under->has_gateway ? under->gateway : vtep;
  const auto* under_mac = fam.neigh.find(under->port, hop);
  std::memcpy(t.src_mac, port_mac.data(), 6);
  // An unresolved underlay next hop: the kernel forwards this one and resolves it.
  std::memcpy(t.dst_mac, under_mac ? under_mac->data() : port_mac.data(), 6);
  if constexpr (kV6Under) {
    t.v6 = true;
    std::memcpy(t.src_ip6, ov.local6.b, 16);
    std::memcpy(t.dst_ip6, vtep.b, 16);
  } else {
    t.src_ip = ov.local.v;
    t.dst_ip = vtep.v;
  }
  t.vni = ov.vni;
  t.dst_port = ov.udp_port;
  t.ttl = ov.ttl;
  // The outer source port follows the inner flow (an IPv6 packet's hash is made here:
  // the staged pipeline hashes IPv4's).
  uint64_t hash = m.hash;
  if constexpr (!std::is_same_v<Addr, Ipv4Addr>) {
    const uint8_t* ip = frame + m.p.ip.l3_offset;
    hash = hashBytes(ip + 8, 32, uint64_t{m.p.ip.sport} << 16 | m.p.ip.dport);
  }
  vxlanEncap(frame, inner_len, t, hash);
  bump(c_.vxlan_encap);
  Verdict v = under_mac ? Verdict::transmit(under->port) : Verdict::toKernel(under->port);
  if (!under_mac) unresolved(under->port, hop);
  v.head_adjust = -static_cast<int16_t>(encap_len);
  v.length = static_cast<uint16_t>(encap_len + inner_len);
  return v;
}

// ipvsadm -i (ip_vs_tunnel_xmit): the client's packet as it came (its TTL too) inside
// an outer IPv4 header from the egress twin's address to the real server, with the
// inner TOS and TTL and its DF; for GUE a UDP header (source port from the flow's
// hash, as udp_flow_src_port spreads flows) and a 4-byte GUE header naming IPIP, for
// GRE a GRE header naming IPv4. Checksums (GUE's UDP, GRE's) only with --tun-csum or
// --tun-remcsum: remote checksum offload applies only to packets whose checksum the
// sender left partial, which a forwarded packet never is, so the kernel sends the
// option with none of them either. Written into the headroom in front of the frame.
Verdict PacketCore::tunnel(uint8_t* frame, const PacketMeta& m, const Flow<Ipv4Addr>& e,
                           const RouteSnap<Ipv4Addr>* rt) {
  const TunnelSnap* t = snap_->tunnels.findValue(e.backend_id);
  if (!t || !rt || rt->overlay >= 0) return drop(Drop::kNoRoute);
  const FamilySnap<Ipv4Addr>& fam = snap_->v4;
  if (!fam.port_has_addr[rt->port]) return drop(Drop::kTunnelNoSource);
  const bool csum = t->csum != TunnelSnap::kNone;
  const uint32_t hlen = 20 + (t->type == TunnelSnap::kGue   ? 8 + 4
                              : t->type == TunnelSnap::kGre ? (csum ? 8 : 4)
                                                            : 0);
  const uint32_t l3 = m.p.ip.l3_offset;
  const uint32_t inner_len = m.p.ip.l3_length;
  const uint8_t* inner = frame + l3;
  const uint32_t mtu = rt->port < snap_->port_mtu.size() ? snap_->port_mtu[rt->port] : 1500;
  // pmtu_disc (always on): a DF packet that no longer fits learns the tunnel's MTU.
  if (inner_len + hlen > mtu) return tooBig(frame, m, static_cast<uint16_t>(mtu - hlen));
  if (m.headroom < hlen) return drop(Drop::kNoHeadroom);
  uint8_t* out = frame - hlen;
  std::memmove(out, frame, l3);  // the Ethernet header moves to the new front
  uint8_t* ip = out + l3;
  const bool df = inner[6] & 0x40;
  ip[0] = 0x45;
  ip[1] = inner[1];  // the inner TOS
  storeBe16(ip + 2, static_cast<uint16_t>(hlen + inner_len));
  // As ip_select_ident: 0 with DF, else a counter.
  storeBe16(ip + 4, df ? 0 : ++tunnel_id_);
  storeBe16(ip + 6, df ? 0x4000 : 0);
  ip[8] = inner[8];  // the inner TTL
  ip[9] = t->type == TunnelSnap::kGue ? kProtoUdp : t->type == TunnelSnap::kGre ? 47 : 4;
  store16(ip + 10, 0);
  store32(ip + 12, fam.port_addr[rt->port].v);
  store32(ip + 16, e.backend.v);
  store16(ip + 10, csumFull(ip, 20));
  uint8_t* h = ip + 20;
  if (t->type == TunnelSnap::kGue) {
    const auto h32 = static_cast<uint32_t>(m.hash >> 32);
    storeBe16(h, static_cast<uint16_t>(32768 + ((uint64_t{h32} * (61000 - 32768)) >> 32)));
    store16(h + 2, t->port);
    storeBe16(h + 4, static_cast<uint16_t>(8 + 4 + inner_len));
    store16(h + 6, 0);
    h[8] = 0, h[9] = 4, h[10] = 0, h[11] = 0;  // version 0, no options, IPIP, no flags
    if (csum) {
      // The pseudo-header (addresses, protocol, length) and the datagram.
      uint64_t sum = csumAdd(ip + 12, 8);
      sum += hton16(kProtoUdp);
      sum += load16(h + 4);
      const uint16_t c = csumFull(h, 8 + 4 + inner_len, sum);
      store16(h + 6, c ? c : 0xffff);
    }
  } else if (t->type == TunnelSnap::kGre) {
    storeBe16(h, csum ? 0x8000 : 0);  // C, version 0
    storeBe16(h + 2, 0x0800);
    if (csum) {
      store32(h + 4, 0);
      store16(h + 4, csumFull(h, 8 + inner_len));
    }
  }
  rewrote_ = true;
  bump(c_.tunnel_encap);
  const auto* mac = fam.neigh.find(rt->port, rt->has_gateway ? rt->gateway : e.backend);
  const auto& port_mac = snap_->port_mac[rt->port];
  Verdict v = Verdict::transmit(rt->port);
  if (mac) {
    std::memcpy(out, mac->data(), 6);
  } else {
    // The kernel resolves the next hop (and forwards this one), as forward() does.
    unresolved(rt->port, rt->has_gateway ? rt->gateway : e.backend);
    std::memcpy(out, port_mac.data(), 6);
    v = Verdict::toKernel(rt->port);
  }
  std::memcpy(out + 6, port_mac.data(), 6);
  v.head_adjust = -static_cast<int16_t>(hlen);
  v.length = static_cast<uint16_t>(l3 + hlen + inner_len);
  return v;
}

// Out of the overlay: a VXLAN datagram to one of our VTEPs with the VNI of one of our
// vxlan devices is decapsulated and its inner frame handled as if it had arrived
// plain (a task's reply, an ICMP error, a new connection to a VIP on the overlay).
// What the core does not take (ARP, traffic for the appliance's own overlay
// address) goes to the kernel whole, whose vxlan device decapsulates it.
// VXLAN on an overlay's port other than the snapshot's vxlan_port (which every parse
// recognises): parsed again as such, on this slow path only.
Verdict PacketCore::decapsulateOn(uint8_t* frame, const PacketMeta& m, uint16_t udp_port) {
  PacketMeta vm = m;
  vm.r = parsePacket(frame, static_cast<uint32_t>(m.p.ip.l3_offset + m.p.ip.l3_length), vm.p,
                     udp_port);
  if (vm.r != ParseResult::kOk || !vm.p.vxlan) return Verdict::toKernel(m.in_port);
  return decapsulate(frame, vm);
}

Verdict PacketCore::decapsulate(uint8_t* frame, const PacketMeta& m) {
  const ParsedPacket& p = m.p;
  if (p.vlan_count) return Verdict::toKernel(m.in_port);
  // The outer destination: one of this appliance's VTEPs (either underlay family).
  int overlay;
  if (p.ip.l3 == L3Type::kIpv4) {
    const Ipv4Addr dst{load32(frame + p.ip.l3_offset + 16)};
    if (!snap_->v4.local_addrs.contains(dst)) return forward</*kTransit=*/true>(frame, m);
    overlay = snap_->overlayOf(p.vni, dst, hton16(p.ip.dport));
  } else {
    const Ipv6Addr dst = dstOf<Ipv6Addr>(frame + p.ip.l3_offset);
    if (!snap_->v6.local_addrs.contains(dst)) {
      return forward</*kTransit=*/true, Ipv6Addr>(frame, m);
    }
    overlay = snap_->overlayOf(p.vni, dst, hton16(p.ip.dport));
  }
  if (overlay < 0) return drop(Drop::kVxlanUnknownVni);
  uint8_t* inner = frame + p.vxlan_inner_offset;
  PacketMeta im;
  prepare(inner, static_cast<uint32_t>(p.ip.l3_offset + p.ip.l3_length - p.vxlan_inner_offset), im);
  im.in_port = m.in_port;
  im.handed = m.handed;
  im.headroom = static_cast<uint16_t>(m.headroom + p.vxlan_inner_offset);
  rewrote_ = false;
  Verdict v = handle(inner, im);
  if (rewrote_ && (v.action == Verdict::kTransmit || v.action == Verdict::kToKernel)) {
    // The inner frame goes on: the outer headers are dropped.
    if (v.length == 0) {
      v.length = static_cast<uint16_t>(im.p.ip.l3_offset + im.p.ip.l3_length);
    }
    v.head_adjust = static_cast<int16_t>(v.head_adjust + p.vxlan_inner_offset);
    bump(c_.vxlan_decap);
  } else if (v.action == Verdict::kToKernel) {
    v.target = m.in_port;  // whole, as it came
  }
  return v;
}

Verdict PacketCore::unreachable(uint8_t* frame, const PacketMeta& m) {
  const FamilySnap<Ipv4Addr>& fam = snap_->v4;
  // The error quotes the packet (up to 576 bytes in all): at most 28 bytes more than
  // it, which the buffer must have after it.
  if (!fam.port_has_addr[m.in_port] || m.tailroom < kIpv4MinHdrLen + kIcmpHdrLen) {
    return drop(Drop::kMasqNoConn);
  }
  bump(c_.drop(Drop::kMasqNoConn));  // the packet itself goes no further
  const uint32_t n = buildTooBig(frame, m.p, 0, snap_->port_mac[m.in_port].data(),
                                 reinterpret_cast<const uint8_t*>(&fam.port_addr[m.in_port].v),
                                 scratch_, kIcmpCodePortUnreach);
  std::memcpy(frame, scratch_, n);
  bump(c_.icmp_port_unreach_sent);
  Verdict v = Verdict::transmit(m.in_port);
  v.length = static_cast<uint16_t>(n);
  return v;
}

Verdict PacketCore::tooBig(uint8_t* frame, const PacketMeta& m, uint16_t mtu) {
  // IPv4 without DF may be fragmented (by the kernel: the appliance drops it, counted);
  // IPv6 is never fragmented on the way: always Packet Too Big (RFC 8200).
  const bool v6 = m.p.ip.l3 == L3Type::kIpv6;
  if (!v6 && !(m.p.ipv4_flags_frag & kIpv4FlagDf)) return drop(Drop::kTooBigNoDf);
  const uint8_t* ip = frame + m.p.ip.l3_offset;
  // From the address the packet was sent to (the VIP), as the kernel answers.
  const uint32_t n = buildTooBig(frame, m.p, mtu, snap_->port_mac[m.in_port].data(),
                                 v6 ? ip + 24 : ip + 16, scratch_);
  std::memcpy(frame, scratch_, n);
  rewrote_ = true;
  bump(c_.icmp_too_big_sent);
  Verdict v = Verdict::transmit(m.in_port);
  v.length = static_cast<uint16_t>(n);
  return v;
}

// Both families' instances (the IPv4 one is also inlined into handle()).
#define MESHLB_FAMILY(Addr)                                                                        \
  template Verdict PacketCore::encapsulate<Addr>(uint8_t*, const PacketMeta&,                      \
                                                 const RouteSnap<Addr>&, const Addr&);             \
  template Verdict PacketCore::icmpError<Addr>(uint8_t*, const PacketMeta&);                       \
  template Flow<Addr>* PacketCore::onMiss<Addr>(uint8_t*, const PacketMeta&, const FlowKey<Addr>&, \
                                                Verdict*);                                         \
  template bool PacketCore::reusable<Addr>(const Flow<Addr>&) const;                               \
  template Flow<Addr>* PacketCore::newConnection<Addr>(                                            \
      const ParsedPacket&, const ServiceSnap<Addr>&, const FlowKey<Addr>&, uint16_t, Drop*);       \
  template Flow<Addr>* PacketCore::admit<Addr>(const ParsedPacket&, const FlowKey<Addr>&,          \
                                               const BackendSnap<Addr>&, uint16_t, bool, Drop*,    \
                                               bool);
MESHLB_FAMILY(Ipv4Addr)
MESHLB_FAMILY(Ipv6Addr)
#undef MESHLB_FAMILY

}  // namespace meshlb
