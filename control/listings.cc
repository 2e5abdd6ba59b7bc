#include "listings.h"

#include <arpa/inet.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace meshlb {

void appendTemplates(const PersistTable& templates, const ServiceModel& model, uint32_t now_ms,
                     std::vector<ConnEntry>& out) {
  absl::flat_hash_map<uint32_t, const Service*> by_slot;
  templates.forEach(now_ms, [&](const PersistTable::Entry& e) {
    if (by_slot.empty()) {
      for (const auto& [k, svc] : model.services()) by_slot[svc.slot] = &svc;
    }
    auto it = by_slot.find(e.key.service);
    if (it == by_slot.end()) return;  // its service is gone
    const Service& svc = *it->second;
    const RealServer* d = nullptr;
    for (const RealServer& r : svc.dests) {
      if (r.id.raw() == e.backend) d = &r;
    }
    if (!d) return;  // its server is gone: the next connection schedules afresh
    const bool any_port = svc.key.fwmark || svc.key.port == 0;
    ConnEntry c;
    c.protocol = svc.key.fwmark ? 0 : svc.key.protocol;
    Ipv4Addr net;
    std::memcpy(&net.v, e.key.net, 4);
    c.client = IpAddr::of(net);
    c.virt = svc.key.fwmark ? IpAddr::of(Ipv4Addr{htonl(svc.key.fwmark)}) : svc.key.addr;
    c.vport = any_port ? 0 : svc.key.port;
    c.dest = d->addr;
    c.dport = any_port ? 0 : d->port;
    c.state = c.protocol == kProtoUdp ? "UDP" : "NONE";
    c.expires_s = PersistTable::secondsLeft(e, now_ms);
    out.push_back(std::move(c));
  });
}

absl::flat_hash_map<uint32_t, uint32_t> templateCounts(const PersistTable& templates,
                                                       uint32_t now_ms) {
  absl::flat_hash_map<uint32_t, uint32_t> n;
  templates.forEach(now_ms, [&](const PersistTable::Entry& e) { ++n[e.backend]; });
  return n;
}

StatsGroup workerStats(uint16_t worker, unsigned lcore, const WorkerCounters& c) {
  StatsGroup g;
  g.kind = "worker";
  g.labels = {{"worker", absl::StrCat(worker)}, {"lcore", absl::StrCat(lcore)}};
  forEachCounter(c, [&](const char* name, uint64_t v) { g.values.emplace_back(name, v); });
  return g;
}

namespace {

bool isNumber(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

std::string jsonString(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    out += ch;
  }
  return out + "\"";
}

// The heading of a group in text: "port 0 net_af_packet0 (twin lb0)", "worker 0 (lcore 1)".
std::string heading(const StatsGroup& g) {
  if (g.kind == "control") return "control";
  std::string out = g.kind;
  for (const auto& [k, v] : g.labels) {
    if (k == g.kind) {
      absl::StrAppend(&out, " ", v);
    } else if (k == "name") {
      absl::StrAppend(&out, " ", v);
    } else {
      absl::StrAppend(&out, " (", k, " ", v, ")");
    }
  }
  return out;
}

}  // namespace

std::string renderStats(const std::vector<StatsGroup>& groups, bool json) {
  std::string out;
  if (!json) {
    for (const StatsGroup& g : groups) {
      absl::StrAppend(&out, heading(g), "\n");
      for (const auto& [k, v] : g.values)
        absl::StrAppend(&out, absl::StrFormat("  %-40s %u\n", k, v));
    }
    return out;
  }
  auto object = [](const StatsGroup& g) {
    std::string o = "{";
    bool first = true;
    auto add = [&](const std::string& k, const std::string& v) {
      absl::StrAppend(&o, first ? "" : ",", jsonString(k), ":", v);
      first = false;
    };
    for (const auto& [k, v] : g.labels) add(k, isNumber(v) ? v : jsonString(v));
    for (const auto& [k, v] : g.values) add(k, absl::StrCat(v));
    return o + "}";
  };
  out = "{";
  bool first_kind = true;
  for (const char* kind : {"port", "worker"}) {
    absl::StrAppend(&out, first_kind ? "" : ",", "\"", kind, "s\":[");
    first_kind = false;
    bool first = true;
    for (const StatsGroup& g : groups) {
      if (g.kind != kind) continue;
      absl::StrAppend(&out, first ? "" : ",", object(g));
      first = false;
    }
    out += "]";
  }
  for (const StatsGroup& g : groups) {
    if (g.kind == "control") absl::StrAppend(&out, ",\"control\":", object(g));
  }
  return out + "}\n";
}

}  // namespace meshlb
