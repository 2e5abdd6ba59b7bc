#include "plan.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace meshlb::swarm {

uint32_t markOf(const Options& o, Proto p, uint16_t published) {
  return o.mark_base + (p == Proto::kUdp ? 0x10000u : 0u) + published;
}

bool ownsMark(const Options& o, uint32_t mark) {
  return mark >= o.mark_base && mark - o.mark_base < 0x20000u;
}

std::string markRuleSpec(const Options& o, Proto p, uint16_t port, const IpAddr* dst) {
  const char* proto = protoName(p);
  return absl::StrFormat("%s-p %s -m %s --dport %u -j MARK --set-xmark 0x%x/0xffffffff",
                         dst ? absl::StrCat("-d ", dst->str(), "/32 ") : "", proto, proto, port,
                         markOf(o, p, port));
}

std::string snatRuleSpec(const Options& o, const Prefix& subnet) {
  return absl::StrCat("-d ", subnet.str(), " -m ipvs --ipvs -j SNAT --to-source ",
                      o.overlay_addr.str());
}

namespace {

std::vector<std::string> words(absl::string_view s) {
  return absl::StrSplit(s, ' ', absl::SkipEmpty());
}

std::string destKey(const IpAddr& a, uint16_t port) { return absl::StrCat(a.str(), ":", port); }

}  // namespace

absl::StatusOr<Applied> parseApplied(absl::string_view ipvs_list, absl::string_view mangle_rules,
                                     absl::string_view nat_rules, const Options& o) {
  Applied a;
  Applied::Service* svc = nullptr;
  for (absl::string_view line : absl::StrSplit(ipvs_list, '\n')) {
    auto w = words(line);
    if (w.empty()) continue;
    if (w[0] == "TCP" || w[0] == "UDP" || w[0] == "SCTP") {
      svc = nullptr;
    } else if (w[0] == "FWM") {
      uint32_t mark = 0;
      if (w.size() < 3 || !absl::SimpleAtoi(w[1], &mark)) {
        return absl::InvalidArgumentError(absl::StrCat("ipvsadm listing: '", line, "'"));
      }
      svc = ownsMark(o, mark) ? &a.services[mark] : nullptr;
      if (svc) svc->scheduler = w[2];
    } else if (w[0] == "->" && svc && w.size() >= 6 && w[1] != "RemoteAddress:Port") {
      Applied::Dest d;
      if (!absl::SimpleAtoi(w[3], &d.weight) || !absl::SimpleAtoi(w[4], &d.active) ||
          !absl::SimpleAtoi(w[5], &d.inactive)) {
        return absl::InvalidArgumentError(absl::StrCat("ipvsadm listing: '", line, "'"));
      }
      svc->dests[std::string(w[1])] = d;
    }
  }
  for (absl::string_view line : absl::StrSplit(mangle_rules, '\n')) {
    if (!absl::ConsumePrefix(&line, "-A PREROUTING ")) continue;
    const size_t at = line.find("--set-xmark 0x");
    if (at == absl::string_view::npos || line.find("-j MARK") == absl::string_view::npos) continue;
    absl::string_view val = line.substr(at + 14);
    val = val.substr(0, val.find('/'));
    uint32_t mark = 0;
    if (absl::SimpleHexAtoi(val, &mark) && ownsMark(o, mark)) {
      a.mark_rules[mark].insert(std::string(line));
    }
  }
  const std::string snat_tail =
      absl::StrCat(" -m ipvs --ipvs -j SNAT --to-source ", o.overlay_addr.str());
  for (absl::string_view line : absl::StrSplit(nat_rules, '\n')) {
    if (absl::ConsumePrefix(&line, "-A POSTROUTING ") && absl::EndsWith(line, snat_tail)) {
      a.snat_rules.insert(std::string(line));
    }
  }
  return a;
}

Plan makePlan(const Cluster& c, const Applied& a, const Options& o, Draining& draining,
              Clock::time_point now) {
  Plan plan;
  auto cmd = [&](std::initializer_list<absl::string_view> head, absl::string_view spec = {}) {
    std::vector<std::string> v(head.begin(), head.end());
    for (auto& w : words(spec)) v.push_back(std::move(w));
    plan.commands.push_back(std::move(v));
  };

  // What the Swarm wants, per mark: the rule specs and the real servers.
  struct Want {
    Proto proto;
    uint16_t port;
    std::set<std::string> rules;
    std::map<std::string, IpAddr> dests;  // "IP:TARGET" -> task address
  };
  std::map<uint32_t, Want> want;
  std::map<IpAddr, IpAddr> leaving;  // still running tasks Swarm is stopping -> node
  for (const Service& s : c.services) {
    for (const Task& t : s.leaving) leaving[t.addr] = t.node;
    for (const PublishedPort& p : s.ports) {
      Want& w = want[markOf(o, p.proto, p.published)];
      w.proto = p.proto;
      w.port = p.published;
      if (o.publish.empty()) w.rules.insert(markRuleSpec(o, p.proto, p.published, nullptr));
      for (const IpAddr& vip : o.publish)
        w.rules.insert(markRuleSpec(o, p.proto, p.published, &vip));
      for (const Task& t : s.tasks) {
        if (t.created < p.tasks_since) continue;
        w.dests[destKey(t.addr, p.target)] = t.addr;
        plan.overlay[t.addr] = t.node;
      }
    }
  }

  // Full NAT towards the network, as Swarm's ingress: before any service exists.
  const std::string snat = snatRuleSpec(o, c.network.subnet);
  if (!a.snat_rules.contains(snat)) cmd({"iptables", "-t", "nat", "-A", "POSTROUTING"}, snat);
  for (const std::string& r : a.snat_rules) {
    if (r != snat) cmd({"iptables", "-t", "nat", "-D", "POSTROUTING"}, r);
  }

  const std::string sched = o.scheduler;
  for (const auto& [mark, w] : want) {
    const std::string m = std::to_string(mark);
    ++plan.ports;
    auto have = a.services.find(mark);
    if (have == a.services.end()) {
      cmd({"ipvsadm", "-A", "-f", m, "-s", sched});
    } else if (have->second.scheduler != sched) {
      cmd({"ipvsadm", "-E", "-f", m, "-s", sched});
    }
    for (const auto& [dest, addr] : w.dests) {
      ++plan.servers;
      draining.erase(absl::StrCat(m, " ", dest));
      const Applied::Dest* d = nullptr;
      if (have != a.services.end()) {
        auto it = have->second.dests.find(dest);
        if (it != have->second.dests.end()) d = &it->second;
      }
      if (!d) {
        cmd({"ipvsadm", "-a", "-f", m, "-r", dest, "-m", "-w", "1"});
      } else if (d->weight != 1) {
        cmd({"ipvsadm", "-e", "-f", m, "-r", dest, "-m", "-w", "1"});
      }
    }
    auto rules = a.mark_rules.find(mark);
    for (const std::string& r : w.rules) {
      if (rules == a.mark_rules.end() || !rules->second.contains(r)) {
        cmd({"iptables", "-t", "mangle", "-A", "PREROUTING"}, r);
      }
    }
    if (rules != a.mark_rules.end()) {
      for (const std::string& r : rules->second) {
        if (!w.rules.contains(r)) cmd({"iptables", "-t", "mangle", "-D", "PREROUTING"}, r);
      }
    }
  }

  // Ports the Swarm no longer publishes: stop steering first, then remove.
  for (const auto& [mark, rules] : a.mark_rules) {
    if (want.contains(mark)) continue;
    for (const std::string& r : rules) cmd({"iptables", "-t", "mangle", "-D", "PREROUTING"}, r);
  }
  for (const auto& [mark, svc] : a.services) {
    const std::string m = std::to_string(mark);
    auto w = want.find(mark);
    if (w == want.end()) {
      cmd({"ipvsadm", "-D", "-f", m});
      for (const auto& [dest, d] : svc.dests) draining.erase(absl::StrCat(m, " ", dest));
      continue;
    }
    // Leaving tasks: quiesced (weight 0: no new connections, existing ones go on),
    // then deleted once idle, once Docker has stopped the task (its connections are
    // gone with it), or at the drain timeout.
    for (const auto& [dest, d] : svc.dests) {
      if (w->second.dests.contains(dest)) continue;
      const std::string key = absl::StrCat(m, " ", dest);
      auto addr = IpAddr::parse(dest.substr(0, dest.rfind(':')));
      auto still = addr.ok() ? leaving.find(*addr) : leaving.end();
      auto [it, fresh] = draining.try_emplace(key, now);
      const bool idle = d.weight == 0 && d.active == 0 && d.inactive == 0 && !fresh;
      if (still == leaving.end() || idle || now - it->second >= o.drain_timeout) {
        cmd({"ipvsadm", "-d", "-f", m, "-r", dest});
        draining.erase(it);
        continue;
      }
      if (d.weight != 0) cmd({"ipvsadm", "-e", "-f", m, "-r", dest, "-m", "-w", "0"});
      ++plan.draining;
      plan.overlay.try_emplace(*addr, still->second);  // its packets still travel
    }
  }
  return plan;
}

}  // namespace meshlb::swarm
