#include "snapshot_builder.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <numeric>

#include "meshlb/packet_core.h"

namespace meshlb {

namespace {

int portOfIfindex(const std::vector<TwinPort>& ports, int ifindex) {
  for (size_t i = 0; i < ports.size(); ++i) {
    if (ports[i].ifindex == ifindex) return static_cast<int>(i);
  }
  return -1;
}

// The overlay networks in the snapshot's order: the vxlan devices that are up with a
// local VTEP address (IPv4 or IPv6: the underlay's family).
std::vector<const KernelView::Vxlan*> overlaysOf(const KernelView& kernel) {
  std::vector<const KernelView::Vxlan*> out;
  for (const auto& x : kernel.vxlans) {
    if (x.up && (x.local.isV4() || x.local.isV6()) && x.port != 0) out.push_back(&x);
  }
  return out;
}

int overlayOfIfindex(const std::vector<const KernelView::Vxlan*>& overlays, int ifindex) {
  for (size_t i = 0; i < overlays.size(); ++i) {
    if (overlays[i]->ifindex == ifindex) return static_cast<int>(i);
  }
  return -1;
}

// A service's family: its address's; an fwmark service's is IPv4 unless made with -6
// (ipvsadm -A -f MARK -6), so an IPv4 and an IPv6 service may have the same mark.
Family familyOfKey(const ServiceKey& key) {
  return key.addr.family == Family::kIpv6 ? Family::kIpv6 : Family::kIpv4;
}

// The family's own address type from the control plane's IpAddr.
template <class Addr>
Addr addrOf(const IpAddr& a) {
  if constexpr (std::is_same_v<Addr, Ipv4Addr>) {
    return a.v4();
  } else {
    return a.v6();
  }
}
template <class Addr>
constexpr Family familyOf() {
  return std::is_same_v<Addr, Ipv4Addr> ? Family::kIpv4 : Family::kIpv6;
}

// Host-order comparison of two addresses of a family: the order backends are
// sorted in (and so Maglev's backend ids).
bool lessAddr(Ipv4Addr a, Ipv4Addr b) { return ntohl(a.v) < ntohl(b.v); }
bool lessAddr(const Ipv6Addr& a, const Ipv6Addr& b) { return std::memcmp(a.b, b.b, 16) < 0; }

// The key a model service has in a family's table.
template <class Addr>
uint64_t snapKey(const ServiceKey& key) {
  if (key.fwmark) return FamilySnap<Addr>::fwmarkKey(key.fwmark);
  return FamilySnap<Addr>::serviceKey(key.protocol, addrOf<Addr>(key.addr), htons(key.port));
}

// One model service as the family sees it; null when it is not the family's. `prev`,
// the service under the same key in the snapshot before, lends what it prepared
// (Maglev) when it is the same service (same slot) with the same scheduler.
template <class Addr>
std::shared_ptr<const ServiceSnap<Addr>> buildService(
    const Service& svc, const std::shared_ptr<const ServiceSnap<Addr>>* prev_ptr,
    uint64_t generation) {
  const ServiceKey& key = svc.key;
  if (familyOfKey(key) != familyOf<Addr>()) return nullptr;
  const ServiceSnap<Addr>* prev =
      prev_ptr && (*prev_ptr)->slot == svc.slot ? prev_ptr->get() : nullptr;
  if (prev && prev->version == svc.version) return *prev_ptr;  // unchanged: shared
  ServiceSnap<Addr> ss;
  ss.version = svc.version;
  ss.slot = svc.slot;
  ss.sched = findScheduler(svc.scheduler);
  ss.sched_flags = svc.sched_flags;
  ss.fwmark = key.fwmark;
  ss.proto = key.protocol;
  if (!key.fwmark) ss.vip = addrOf<Addr>(key.addr);
  ss.vport = htons(key.port);
  for (const RealServer& d : svc.dests) {
    if (d.addr.family != familyOf<Addr>()) continue;
    BackendSnap<Addr> b{addrOf<Addr>(d.addr),
                        htons(d.port),
                        d.liveWeight(),
                        d.id,
                        d.fwd == ForwardMethod::kRoute    ? Forwarding::kDirect
                        : d.fwd == ForwardMethod::kTunnel ? Forwarding::kTunnel
                                                          : Forwarding::kMasq,
                        {}};
    b.tunnel.type = static_cast<TunnelSnap::Type>(d.tun_type);
    b.tunnel.csum = static_cast<TunnelSnap::Csum>(d.tun_csum);
    b.tunnel.port = htons(d.tun_port);
    ss.backends.push_back(b);
  }
  if (svc.persistent) {
    ss.persist_ms = static_cast<uint32_t>(std::min<uint64_t>(svc.persistent, 2147483) * 1000);
    if constexpr (std::is_same_v<Addr, Ipv4Addr>) {
      ss.persist_mask = Ipv4Addr{htonl(svc.netmask)};
    } else {
      Ipv6Addr ones;
      std::memset(ones.b, 0xff, sizeof(ones.b));
      ss.persist_mask = Prefix<Ipv6Addr>::make(ones, static_cast<uint8_t>(svc.netmask)).net;
    }
  }
  ss.ops = svc.ops;
  std::sort(ss.backends.begin(), ss.backends.end(),
            [](const BackendSnap<Addr>& a, const BackendSnap<Addr>& b) {
              if (!(a.addr == b.addr)) return lessAddr(a.addr, b.addr);
              return ntohs(a.port) < ntohs(b.port);
            });
  if (ss.persist_ms) {
    for (uint32_t i = 0; i < ss.backends.size(); ++i) ss.index_of[ss.backends[i].id.raw()] = i;
  }
  uint32_t g = 0;
  for (const BackendSnap<Addr>& b : ss.backends) {
    ss.weights.push_back(b.weight);
    ss.keys.push_back(backendKey(b));
    ss.slots.push_back(b.id.slot());
    ss.max_weight = std::max(ss.max_weight, b.weight);
    g = std::gcd(g, b.weight);
  }
  ss.weight_gcd = g ? g : 1;
  // Thresholds, by backend index, where any server has one.
  if (std::any_of(svc.dests.begin(), svc.dests.end(),
                  [](const RealServer& d) { return d.u_threshold || d.l_threshold; })) {
    absl::flat_hash_map<uint32_t, const RealServer*> by_id;
    for (const RealServer& d : svc.dests) by_id[d.id.raw()] = &d;
    for (const BackendSnap<Addr>& b : ss.backends) {
      const RealServer* d = by_id.at(b.id.raw());
      ss.u_thresholds.push_back(d->u_threshold);
      ss.l_thresholds.push_back(d->l_threshold);
    }
  }
  if (prev && prev->sched != ss.sched) prev = nullptr;
  ss.epoch =
      prev && prev->keys == ss.keys && prev->weights == ss.weights ? prev->epoch : generation;
  if (ss.sched && ss.sched->prepare) ss.sched->prepare(ss, prev);
  return std::make_shared<const ServiceSnap<Addr>>(std::move(ss));
}

// The family's services: from the previous snapshot's table, the services the model
// changed since (`changed`) rebuilt; or, without those, every service (each still
// shared when unchanged).
// What a snapshot indexes by real server beyond the services (the -i servers'
// encapsulation, the -m servers' endpoints), updated for each service that changed:
// out with its servers as the snapshot before had them, in with its new ones.
template <class Addr>
void unindex(const ServiceSnap<Addr>* s, FamilySnap<Addr>& fam, Snapshot& snap) {
  if (!s) return;
  for (const BackendSnap<Addr>& b : s->backends) {
    if (b.fwd == Forwarding::kTunnel) snap.tunnels.erase(b.id.raw());
    if (b.weight == 0) snap.quiescent.erase(b.id.raw());
    if (b.fwd != Forwarding::kMasq) continue;
    for (uint8_t proto : {kProtoTcp, kProtoUdp}) {
      if (!s->fwmark && proto != s->proto) continue;
      const uint64_t k = FamilySnap<Addr>::realServerKey(proto, b.addr, b.port);
      const uint32_t* n = fam.masq_servers.findValue(k);
      if (n && *n > 1) {
        fam.masq_servers.put(k, *n - 1);
      } else {
        fam.masq_servers.erase(k);
      }
    }
  }
}
template <class Addr>
void index(const ServiceSnap<Addr>* s, FamilySnap<Addr>& fam, Snapshot& snap) {
  if (!s) return;
  for (const BackendSnap<Addr>& b : s->backends) {
    if (b.fwd == Forwarding::kTunnel) snap.tunnels.put(b.id.raw(), b.tunnel);
    if (b.weight == 0) snap.quiescent.put(b.id.raw(), 1);
    if (b.fwd != Forwarding::kMasq) continue;
    for (uint8_t proto : {kProtoTcp, kProtoUdp}) {
      if (!s->fwmark && proto != s->proto) continue;
      const uint64_t k = FamilySnap<Addr>::realServerKey(proto, b.addr, b.port);
      const uint32_t* n = fam.masq_servers.findValue(k);
      fam.masq_servers.put(k, n ? *n + 1 : 1);
    }
  }
}

template <class Addr>
void buildServices(FamilySnap<Addr>& fam, const ServiceModel& model,
                   const FamilySnap<Addr>* previous,
                   const std::optional<std::vector<ServiceKey>>& changed, uint64_t generation,
                   Snapshot& snap) {
  auto update = [&](const ServiceKey& key, const Service* svc) {
    // The other family's service (or its removal) is not this table's: its key may be
    // this family's service's too (the same fwmark).
    if (familyOfKey(key) != familyOf<Addr>()) return;
    const uint64_t k = snapKey<Addr>(key);
    auto built = svc ? buildService<Addr>(*svc, previous ? previous->services.findPtr(k) : nullptr,
                                          generation)
                     : nullptr;
    // What was there (in the table derived from the snapshot before) goes out.
    const ServiceSnap<Addr>* old = fam.services.find(k);
    auto portZero = [](const ServiceSnap<Addr>* x) { return x && !x->fwmark && x->vport == 0; };
    fam.port_zero_services += portZero(built.get()) - portZero(old);
    if (old != built.get()) {
      unindex(old, fam, snap);
      index(built.get(), fam, snap);
    }
    if (built) {
      fam.services.put(k, std::move(built));
    } else {
      fam.services.erase(k);
    }
  };
  if (previous && changed) {
    fam.services = previous->services.derive();
    fam.port_zero_services = previous->port_zero_services;
    fam.masq_servers = previous->masq_servers.derive();
    for (const ServiceKey& key : *changed) {
      auto it = model.services().find(key);
      update(key, it == model.services().end() ? nullptr : &it->second);
    }
    return;
  }
  for (const auto& [key, svc] : model.services()) update(key, &svc);
}

template <class Addr>
void buildKernel(FamilySnap<Addr>& fam, const IptablesModel& nat, const KernelView& kernel,
                 const std::vector<TwinPort>& ports) {
  const auto overlays = overlaysOf(kernel);
  fam.port_addr.assign(ports.size(), Addr{});
  fam.port_has_addr.assign(ports.size(), false);
  fam.overlay_addr.assign(overlays.size(), Addr{});
  fam.overlay_has_addr.assign(overlays.size(), false);
  for (const auto& a : kernel.addrs) {
    if (a.addr.family != familyOf<Addr>()) continue;
    const int p = portOfIfindex(ports, a.ifindex);
    const int o = overlayOfIfindex(overlays, a.ifindex);
    if (p < 0 && o < 0) continue;
    fam.local_addrs.insert(addrOf<Addr>(a.addr));
    // MASQUERADE's address: the device's first, never an IPv6 link-local one (fe80::/10,
    // which every device has from the moment it is up: the kernel chooses a source of
    // the destination's scope, RFC 6724).
    if (a.addr.isV6() && a.addr.b[0] == 0xfe && (a.addr.b[1] & 0xc0) == 0x80) continue;
    if (p >= 0 && !fam.port_has_addr[p]) {
      fam.port_addr[p] = addrOf<Addr>(a.addr);
      fam.port_has_addr[p] = true;
    }
    if (o >= 0 && !fam.overlay_has_addr[o]) {
      fam.overlay_addr[o] = addrOf<Addr>(a.addr);
      fam.overlay_has_addr[o] = true;
    }
  }
  const auto prefix = [](bool has, const IpAddr& net, uint8_t len) {
    return has ? Prefix<Addr>::make(addrOf<Addr>(net), len) : Prefix<Addr>{};
  };
  for (const IptRule& r : nat.natPostrouting()) {
    if (r.has_dst && r.dst_net.family != familyOf<Addr>()) continue;
    SnatRule<Addr> sr;
    sr.dst = prefix(r.has_dst, r.dst_net, r.dst_len);
    sr.masquerade = r.target == RuleTarget::kMasquerade;
    sr.ipvs_only = r.ipvs;
    if (!sr.masquerade) {
      if (r.to_source.family != familyOf<Addr>()) continue;
      sr.to_source = addrOf<Addr>(r.to_source);
      fam.snat_addrs.insert(sr.to_source);
    }
    fam.snat.push_back(sr);
  }
  for (const auto* chain : {&nat.manglePrerouting(), &nat.mangleInput()}) {
    const bool input = chain == &nat.mangleInput();
    for (const IptRule& r : *chain) {
      if ((r.has_src && r.src_net.family != familyOf<Addr>()) ||
          (r.has_dst && r.dst_net.family != familyOf<Addr>())) {
        continue;
      }
      MarkRule<Addr> mr;
      mr.src = prefix(r.has_src, r.src_net, r.src_len);
      mr.dst = prefix(r.has_dst, r.dst_net, r.dst_len);
      mr.proto = r.proto;
      mr.sport = htons(r.sport);
      mr.dport = htons(r.dport);
      mr.value = r.mark;
      mr.mask = r.mark_mask;
      mr.input = input;
      fam.marks.push_back(mr);
    }
  }
  // nat PREROUTING first, then the user chains it may jump to, each an index.
  std::vector<const IptChainRules*> nat_chains{nat.chain(IptTable::kNat, "PREROUTING")};
  for (const IptChainRules* c : nat.chains(IptTable::kNat)) {
    if (!c->builtin) nat_chains.push_back(c);
  }
  auto indexOf = [&](const std::string& name) {
    for (size_t i = 0; i < nat_chains.size(); ++i) {
      if (nat_chains[i]->name == name) return static_cast<uint32_t>(i);
    }
    return uint32_t{0};
  };
  bool any_nat = false;
  fam.nat_chains.resize(nat_chains.size());
  for (size_t i = 0; i < nat_chains.size(); ++i) {
    for (const IptRule& r : nat_chains[i]->rules) {
      if ((r.has_src && r.src_net.family != familyOf<Addr>()) ||
          (r.has_dst && r.dst_net.family != familyOf<Addr>()) ||
          (r.target == RuleTarget::kDnat && r.to_destination.family != familyOf<Addr>())) {
        continue;
      }
      NatRule<Addr> nr;
      nr.match.src = prefix(r.has_src, r.src_net, r.src_len);
      nr.match.dst = prefix(r.has_dst, r.dst_net, r.dst_len);
      nr.match.proto = r.proto;
      nr.match.sport = htons(r.sport);
      nr.match.dport = htons(r.dport);
      nr.dst_local = r.dst_local;
      if (r.target == RuleTarget::kDnat) {
        nr.action = NatRule<Addr>::kDnat;
        nr.to = addrOf<Addr>(r.to_destination);
        nr.to_port = htons(r.to_port);
      } else if (r.target == RuleTarget::kJump) {
        nr.action = NatRule<Addr>::kJump;
        nr.jump = indexOf(r.jump);
      } else {
        nr.action = NatRule<Addr>::kReturn;
      }
      fam.nat_chains[i].push_back(nr);
      any_nat = true;
    }
  }
  if (!any_nat) fam.nat_chains.clear();  // nothing to walk for each new connection
  for (const auto& r : kernel.routes) {
    const int p = portOfIfindex(ports, r.ifindex);
    const int o = overlayOfIfindex(overlays, r.ifindex);
    // Routes out of other interfaces are the kernel's business.
    if ((p < 0 && o < 0) || r.dst.family != familyOf<Addr>()) continue;
    RouteSnap<Addr> rs;
    rs.dst = Prefix<Addr>::make(addrOf<Addr>(r.dst), r.len);
    rs.has_gateway = r.gateway.family == familyOf<Addr>();
    if (rs.has_gateway) rs.gateway = addrOf<Addr>(r.gateway);
    rs.port = static_cast<uint16_t>(p < 0 ? 0 : p);
    rs.overlay = static_cast<int16_t>(o);
    fam.routes.push_back(rs);
  }
  std::stable_sort(
      fam.routes.begin(), fam.routes.end(),
      [](const RouteSnap<Addr>& a, const RouteSnap<Addr>& b) { return a.dst.len > b.dst.len; });
  // MASQUERADE sources: the address of the twin that leads to the rule's
  // destination (every twin's, for a rule without one).
  for (const SnatRule<Addr>& r : fam.snat) {
    if (!r.masquerade) continue;
    const RouteSnap<Addr>* rt = r.dst.len ? fam.route(r.dst.net) : nullptr;
    for (size_t i = 0; i < ports.size(); ++i) {
      if (fam.port_has_addr[i] && (!rt || (rt->overlay < 0 && rt->port == i))) {
        fam.snat_addrs.insert(fam.port_addr[i]);
      }
    }
    for (size_t i = 0; i < overlays.size(); ++i) {
      if (fam.overlay_has_addr[i] && (!rt || rt->overlay == static_cast<int>(i))) {
        fam.snat_addrs.insert(fam.overlay_addr[i]);
      }
    }
  }
  for (const Addr& a : fam.snat_addrs) fam.local_addrs.insert(a);
  for (const auto& n : kernel.neighs) {
    if (n.addr.family != familyOf<Addr>()) continue;
    if (const int p = portOfIfindex(ports, n.ifindex); p >= 0) {
      fam.neigh.set(static_cast<uint16_t>(p), addrOf<Addr>(n.addr), n.mac);
    } else if (const int o = overlayOfIfindex(overlays, n.ifindex); o >= 0) {
      fam.neigh.set(static_cast<uint16_t>(kOverlayNeighPort + o), addrOf<Addr>(n.addr), n.mac);
    }
  }
}

}  // namespace

std::unique_ptr<Snapshot> buildSnapshot(const ServiceModel& model, const IptablesModel& nat,
                                        const IptablesModel& nat6, const KernelView& kernel,
                                        const std::vector<TwinPort>& ports, uint64_t generation,
                                        const Snapshot* previous) {
  auto s = std::make_unique<Snapshot>();
  s->generation = generation;
  const IpvsTimeouts& t = model.timeouts();
  // Deadlines are 31-bit milliseconds (FlowTable::expired): ipvsadm refuses more than
  // 2147483 s; clamped here too, so that no arithmetic on a timeout can wrap.
  auto ms = [](uint32_t secs) {
    return static_cast<uint32_t>(std::min<uint64_t>(secs, 2147483) * 1000);
  };
  s->timeouts.ms[static_cast<int>(ConnState::kEstablished)] = ms(t.tcp);
  s->timeouts.ms[static_cast<int>(ConnState::kFinWait)] = ms(t.tcpfin);
  s->timeouts.ms[static_cast<int>(ConnState::kUdp)] = ms(t.udp);
  s->live_backend = model.liveBackends();
  s->setBackendLive(kDnatBackend);  // DNAT's connections live while their rules do
  s->port_mac.resize(ports.size());
  s->port_mtu.assign(ports.size(), 1500);
  for (size_t i = 0; i < ports.size(); ++i) {
    s->port_mac[i] = ports[i].mac;
    for (const auto& l : kernel.links) {
      if (l.ifindex == ports[i].ifindex && l.mtu) s->port_mtu[i] = static_cast<uint16_t>(l.mtu);
    }
  }
  // Overlay networks: the inner MTU is the vxlan device's, and never more than the
  // underlay twin (the one holding the local VTEP address) leaves room for.
  const auto overlays = overlaysOf(kernel);
  for (size_t i = 0; i < overlays.size(); ++i) {
    const KernelView::Vxlan& x = *overlays[i];
    OverlaySnap o;
    o.vni = x.vni;
    o.udp_port = x.port;
    if (i == 0 && x.port) s->vxlan_port = x.port;
    o.v6 = x.local.isV6();
    if (o.v6) {
      o.local6 = x.local.v6();
    } else {
      o.local = x.local.v4();
    }
    o.mac = x.mac;
    uint32_t underlay = 1500;
    for (const auto& a : kernel.addrs) {
      if (a.addr == x.local) {
        if (const int p = portOfIfindex(ports, a.ifindex); p >= 0) underlay = s->port_mtu[p];
      }
    }
    const uint32_t encap = o.v6 ? kVxlanEncap6Len : kVxlanEncapLen;
    o.inner_mtu = static_cast<uint16_t>(std::min<uint32_t>(x.mtu ? x.mtu : 1500, underlay - encap));
    s->overlays.push_back(o);
    for (const auto& f : kernel.fdb) {
      if (f.ifindex == x.ifindex && f.dst.family == x.local.family) {
        s->fdb.set(static_cast<uint16_t>(i), f.mac, f.dst);
      }
    }
  }
  // What the model changed since the previous snapshot, when it was built from this
  // model and the model still has the log that far back.
  s->model_id = model.id();
  s->model_version = model.version();
  std::optional<std::vector<ServiceKey>> changed;
  if (previous && previous->model_id == model.id())
    changed = model.changedSince(previous->model_version);
  if (previous && changed) {
    s->tunnels = previous->tunnels.derive();
    s->quiescent = previous->quiescent.derive();
  }
  buildServices(s->v4, model, previous ? &previous->v4 : nullptr, changed, generation, *s);
  buildServices(s->v6, model, previous ? &previous->v6 : nullptr, changed, generation, *s);
  s->sysctls = model.sysctls();
  buildKernel(s->v4, nat, kernel, ports);
  buildKernel(s->v6, nat6, kernel, ports);
  return s;
}

}  // namespace meshlb
