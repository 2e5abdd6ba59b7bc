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

std::unique_ptr<Snapshot> buildSnapshot(const ServiceModel& model, const IptablesModel& nat,
                                        const KernelView& kernel,
                                        const std::vector<TwinPort>& ports, uint64_t generation) {
  auto s = std::make_unique<Snapshot>();
  s->generation = generation;
  const IpvsTimeouts& t = model.timeouts();
  s->timeouts.ms[static_cast<int>(ConnState::kEstablished)] = t.tcp * 1000;
  s->timeouts.ms[static_cast<int>(ConnState::kFinWait)] = t.tcpfin * 1000;
  s->timeouts.ms[static_cast<int>(ConnState::kUdp)] = t.udp * 1000;

  for (const auto& [key, svc] : model.services()) {
    for (const RealServer& d : svc.dests) s->backend_ids.insert(d.id);
    // The IPv4 dataplane serves address services; fwmark services wait for the
    // mangle table (their configuration is kept and listed all the same).
    if (key.fwmark || key.addr.af != AF_INET) continue;
    ServiceSnap ss;
    ss.slot = svc.slot;
    ss.proto = key.protocol;
    std::memcpy(&ss.vip, key.addr.b, 4);
    ss.vport = htons(key.port);
    ss.sched = svc.scheduler == "mh" ? Scheduler::kMh
               : svc.scheduler == "wrr" ? Scheduler::kWrr
                                        : Scheduler::kRr;
    for (const RealServer& d : svc.dests) {
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
    if (ss.sched == Scheduler::kMh) {
      std::vector<MaglevBackend> mb;
      for (size_t i = 0; i < ss.backends.size(); ++i) {
        const BackendSnap& b = ss.backends[i];
        std::string k(6, '\0');
        std::memcpy(k.data(), &b.addr, 4);
        std::memcpy(k.data() + 4, &b.port, 2);
        mb.push_back({k, b.weight, static_cast<uint32_t>(i + 1)});
      }
      auto table = MaglevTable::build(std::move(mb));
      if (table.ok()) ss.maglev = std::move(*table);
    }
    s->service_index[Snapshot::serviceKey(ss.proto, ss.vip, ss.vport)] =
        static_cast<uint32_t>(s->services.size());
    s->services.push_back(std::move(ss));
  }

  s->ports.resize(ports.size());
  for (size_t i = 0; i < ports.size(); ++i) s->ports[i].mac = ports[i].mac;
  for (const auto& a : kernel.addrs) {
    int p = portOfIfindex(ports, a.ifindex);
    if (p >= 0 && s->ports[p].ipv4 == 0) s->ports[p].ipv4 = a.addr;
  }
  for (const NatRule& r : nat.postrouting) {
    SnatRule sr;
    sr.mask = r.has_dst ? maskOf(r.dst_len) : 0;
    sr.net = r.dst_net & sr.mask;
    sr.masquerade = r.masquerade;
    sr.to_source = r.to_source;
    s->snat.push_back(sr);
    if (!r.masquerade) s->snat_addrs.insert(r.to_source);
  }
  for (const PortSnap& p : s->ports) {
    if (p.ipv4) s->snat_addrs.insert(p.ipv4);  // MASQUERADE sources
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
  for (const auto& n : kernel.neighs) {
    int p = portOfIfindex(ports, n.ifindex);
    if (p >= 0) s->neigh[Snapshot::neighKey(static_cast<uint16_t>(p), n.addr)] = n.mac;
  }
  return s;
}

}  // namespace meshlb
