#include "snapshot_builder.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <numeric>

namespace meshlb {

namespace {

uint32_t maskOf(uint8_t len) { return len == 0 ? 0 : htonl(~uint32_t{0} << (32 - len)); }

int portOfIfindex(const std::vector<TwinPort>& ports, int ifindex) {
  for (size_t i = 0; i < ports.size(); ++i) {
    if (ports[i].ifindex == ifindex) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace

static bool sameBackends(const std::vector<BackendSnap>& a, const std::vector<BackendSnap>& b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](const BackendSnap& x, const BackendSnap& y) {
           return x.addr == y.addr && x.port == y.port && x.weight == y.weight && x.id == y.id;
         });
}

std::unique_ptr<Snapshot> buildSnapshot(const ServiceModel& model, const IptablesModel& nat,
                                        const KernelView& kernel,
                                        const std::vector<TwinPort>& ports, uint64_t generation,
                                        const Snapshot* previous) {
  // Previous Maglev tables by service slot, for reuse.
  absl::flat_hash_map<uint32_t, const ServiceSnap*> before;
  if (previous) {
    for (const ServiceSnap& ps : previous->services) {
      if (ps.maglev) before[ps.slot] = &ps;
    }
  }
  auto s = std::make_unique<Snapshot>();
  s->generation = generation;
  const IpvsTimeouts& t = model.timeouts();
  s->timeouts.ms[static_cast<int>(ConnState::kEstablished)] = t.tcp * 1000;
  s->timeouts.ms[static_cast<int>(ConnState::kFinWait)] = t.tcpfin * 1000;
  s->timeouts.ms[static_cast<int>(ConnState::kUdp)] = t.udp * 1000;

  for (const auto& [key, svc] : model.services()) {
    for (const RealServer& d : svc.dests) s->setBackendLive(d.id);
    // The dataplane is IPv4: IPv6 services are kept and listed, not served yet.
    if (!key.fwmark && key.addr.af != AF_INET) continue;
    ServiceSnap ss;
    ss.slot = svc.slot;
    ss.fwmark = key.fwmark;
    ss.proto = key.protocol;
    if (!key.fwmark) std::memcpy(&ss.vip, key.addr.b, 4);
    ss.vport = htons(key.port);
    ss.sched = svc.scheduler == "mh" ? Scheduler::kMh
               : svc.scheduler == "wrr" ? Scheduler::kWrr
                                        : Scheduler::kRr;
    for (const RealServer& d : svc.dests) {
      if (d.addr.af != AF_INET) continue;  // an fwmark service may list IPv6 servers
      BackendSnap b;
      std::memcpy(&b.addr, d.addr.b, 4);
      b.port = htons(d.port);
      b.weight = d.weight;
      b.id = d.id;
      ss.backends.push_back(b);
    }
    std::sort(ss.backends.begin(), ss.backends.end(), [](const BackendSnap& a, const BackendSnap& b) {
      return std::make_pair(ntohl(a.addr), ntohs(a.port)) < std::make_pair(ntohl(b.addr), ntohs(b.port));
    });
    uint32_t g = 0;
    for (const BackendSnap& b : ss.backends) {
      ss.max_weight = std::max(ss.max_weight, b.weight);
      g = std::gcd(g, b.weight);
    }
    ss.weight_gcd = g ? g : 1;
    if (auto it = before.find(ss.slot); ss.sched == Scheduler::kMh && it != before.end() &&
                                        sameBackends(it->second->backends, ss.backends)) {
      ss.maglev = it->second->maglev;
    } else if (ss.sched == Scheduler::kMh) {
      std::vector<MaglevBackend> mb;
      for (size_t i = 0; i < ss.backends.size(); ++i) {
        const BackendSnap& b = ss.backends[i];
        std::string k(6, '\0');
        std::memcpy(k.data(), &b.addr, 4);
        std::memcpy(k.data() + 4, &b.port, 2);
        mb.push_back({k, b.weight, static_cast<uint32_t>(i + 1)});
      }
      auto table = MaglevTable::build(std::move(mb));
      if (table.ok()) ss.maglev = std::make_shared<const MaglevTable>(std::move(*table));
    }
    s->service_index[ss.fwmark ? Snapshot::fwmarkKey(ss.fwmark)
                               : Snapshot::serviceKey(ss.proto, ss.vip, ss.vport)] =
        static_cast<uint32_t>(s->services.size());
    s->services.push_back(std::move(ss));
  }

  s->ports.resize(ports.size());
  for (size_t i = 0; i < ports.size(); ++i) s->ports[i].mac = ports[i].mac;
  for (const auto& a : kernel.addrs) {
    int p = portOfIfindex(ports, a.ifindex);
    if (p >= 0 && s->ports[p].ipv4 == 0) s->ports[p].ipv4 = a.addr;
  }
  for (const IptRule& r : nat.nat_postrouting) {
    SnatRule sr;
    sr.mask = r.has_dst ? maskOf(r.dst_len) : 0;
    sr.net = r.dst_net & sr.mask;
    sr.masquerade = r.target == RuleTarget::kMasquerade;
    sr.to_source = r.to_source;
    s->snat.push_back(sr);
    if (!sr.masquerade) s->snat_addrs.insert(r.to_source);
  }
  for (const auto* chain : {&nat.mangle_prerouting, &nat.mangle_input}) {
    for (const IptRule& r : *chain) {
      MarkRule mr;
      mr.src_mask = r.has_src ? maskOf(r.src_len) : 0;
      mr.src_net = r.src_net & mr.src_mask;
      mr.dst_mask = r.has_dst ? maskOf(r.dst_len) : 0;
      mr.dst_net = r.dst_net & mr.dst_mask;
      mr.proto = r.proto;
      mr.sport = htons(r.sport);
      mr.dport = htons(r.dport);
      mr.mark = r.mark;
      s->marks.push_back(mr);
    }
  }
  for (const auto& r : kernel.routes) {
    int p = portOfIfindex(ports, r.ifindex);
    if (p < 0) continue;  // routes out of non-twin interfaces are the kernel's business
    RouteSnap rs;
    rs.len = r.len;
    rs.mask = maskOf(r.len);
    rs.prefix = r.dst & rs.mask;
    rs.gateway = r.gateway;
    rs.port = static_cast<uint16_t>(p);
    s->routes.push_back(rs);
  }
  std::stable_sort(s->routes.begin(), s->routes.end(),
                   [](const RouteSnap& a, const RouteSnap& b) { return a.len > b.len; });
  // MASQUERADE sources: the address of the twin that leads to the rule's
  // destination (every twin's, for a rule without one).
  for (const SnatRule& r : s->snat) {
    if (!r.masquerade) continue;
    const RouteSnap* rt = r.mask ? s->route(r.net) : nullptr;
    for (size_t i = 0; i < s->ports.size(); ++i) {
      if (s->ports[i].ipv4 && (!rt || rt->port == i)) s->snat_addrs.insert(s->ports[i].ipv4);
    }
  }
  for (const auto& n : kernel.neighs) {
    int p = portOfIfindex(ports, n.ifindex);
    if (p >= 0) s->neigh.set(Snapshot::neighKey(static_cast<uint16_t>(p), n.addr), n.mac);
  }
  return s;
}

}  // namespace meshlb
