#include "cluster.h"

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <set>
#include <tuple>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace meshlb::swarm {

using nlohmann::json;

const char* protoName(Proto p) { return p == Proto::kTcp ? "tcp" : "udp"; }

bool Prefix::contains(const IpAddr& a) const {
  if (a.family != addr.family) return false;
  for (unsigned bit = 0; bit < len; ++bit) {
    const uint8_t m = static_cast<uint8_t>(0x80 >> (bit % 8));
    if ((a.b[bit / 8] & m) != (addr.b[bit / 8] & m)) return false;
  }
  return true;
}

std::string Prefix::str() const { return absl::StrCat(addr.str(), "/", len); }

absl::StatusOr<Prefix> Prefix::parse(absl::string_view text) {
  std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(text, '/');
  Prefix p;
  auto a = IpAddr::parse(std::string(parts.first));
  if (!a.ok()) return a.status();
  p.addr = *a;
  const unsigned max = a->isV4() ? 32 : 128;
  unsigned len = max;
  if (!parts.second.empty() && (!absl::SimpleAtoi(parts.second, &len) || len > max)) {
    return absl::InvalidArgumentError(absl::StrCat("bad prefix '", text, "'"));
  }
  p.len = static_cast<uint8_t>(len);
  return p;
}

std::array<uint8_t, 6> dockerMac(const IpAddr& a) {
  return {0x02, 0x42, a.b[0], a.b[1], a.b[2], a.b[3]};
}

int64_t parseTime(absl::string_view text) {
  std::tm tm{};
  int consumed = 0;
  const std::string t(text);
  if (std::sscanf(t.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6) {
    return 0;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  int64_t ns = 0, scale = 1000000000;
  size_t i = static_cast<size_t>(consumed);
  if (i < t.size() && t[i] == '.') {
    for (++i; i < t.size() && t[i] >= '0' && t[i] <= '9'; ++i) {
      if (scale > 1) ns += (t[i] - '0') * (scale /= 10);
    }
  }
  if (i >= t.size() || t[i] != 'Z') return 0;
  // Docker's zero time (0001-01-01) and anything before the epoch or past 2262 (what
  // int64 nanoseconds hold) mean "never" here.
  const int64_t secs = static_cast<int64_t>(timegm(&tm));
  if (secs < 0 || secs > INT64_MAX / 1000000000 - 1) return 0;
  return secs * 1000000000 + ns;
}

namespace {

absl::StatusOr<json> parse(const std::string& body, const char* what) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(what, ": not JSON"));
  return j;
}

// Member access that never throws: a missing or mistyped field is empty.
const json& at(const json& j, const char* key) {
  static const json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}
std::string str(const json& j) { return j.is_string() ? j.get<std::string>() : std::string(); }
int64_t num(const json& j) { return j.is_number_integer() ? j.get<int64_t>() : -1; }

absl::StatusOr<Network> parseNetwork(const json& j) {
  Network n;
  n.id = str(at(j, "Id"));
  n.name = str(at(j, "Name"));
  if (n.id.empty()) return absl::InvalidArgumentError("network: no Id");
  if (str(at(j, "Driver")) != "overlay") {
    return absl::FailedPreconditionError(
        absl::StrCat("network ", n.name, " has driver '", str(at(j, "Driver")),
                     "': meshlb serves through a Swarm overlay network"));
  }
  const json& opts = at(j, "Options");
  if (opts.is_object() && opts.contains("encrypted")) {
    return absl::FailedPreconditionError(absl::StrCat(
        "network ", n.name,
        " is encrypted (IPsec ESP between nodes): meshlb does not speak ESP; serve through an "
        "unencrypted network"));
  }
  const std::string vnis = str(at(opts, "com.docker.network.driver.overlay.vxlanid_list"));
  uint32_t vni = 0;
  if (!absl::SimpleAtoi(absl::string_view(vnis).substr(0, vnis.find(',')), &vni) || vni == 0 ||
      vni >= (1u << 24)) {
    return absl::FailedPreconditionError(
        absl::StrCat("network ", n.name, ": no VXLAN id in its options (ask a manager node)"));
  }
  n.vni = vni;
  if (uint32_t mtu; absl::SimpleAtoi(str(at(opts, "com.docker.network.driver.mtu")), &mtu)) {
    n.mtu = mtu;
  }
  for (const json& c : at(at(j, "IPAM"), "Config")) {
    auto subnet = Prefix::parse(str(at(c, "Subnet")));
    if (!subnet.ok() || !subnet->addr.isV4()) continue;
    n.subnet = *subnet;
    if (auto r = Prefix::parse(str(at(c, "IPRange"))); r.ok()) n.range = *r;
    return n;
  }
  return absl::FailedPreconditionError(absl::StrCat("network ", n.name, ": no IPv4 subnet"));
}

}  // namespace

absl::StatusOr<Cluster> parseCluster(const ApiDocs& docs) {
  Cluster c;
  auto swarm = parse(docs.swarm, "swarm");
  auto network = parse(docs.network, "network");
  auto nodes = parse(docs.nodes, "nodes");
  auto services = parse(docs.services, "services");
  auto tasks = parse(docs.tasks, "tasks");
  for (const auto* s : {&swarm, &network, &nodes, &services, &tasks}) {
    if (!s->ok()) return s->status();
  }
  if (const int64_t port = num(at(*swarm, "DataPathPort")); port > 0 && port < 65536) {
    c.data_port = static_cast<uint16_t>(port);
  }
  auto net = parseNetwork(*network);
  if (!net.ok()) return net.status();
  c.network = std::move(*net);

  // Nodes that can carry traffic: ready, with an underlay address.
  std::map<std::string, IpAddr> node_addr;
  for (const json& n : *nodes) {
    const std::string id = str(at(n, "ID"));
    const json& st = at(n, "Status");
    auto addr = IpAddr::parse(str(at(st, "Addr")));
    if (str(at(st, "State")) == "ready" && addr.ok() && addr->isV4()) node_addr[id] = *addr;
  }

  std::map<std::string, size_t> by_id;
  for (const json& s : *services) {
    Service svc;
    svc.id = str(at(s, "ID"));
    svc.name = str(at(at(s, "Spec"), "Name"));
    // Ports the latest update added (absent from the previous spec): see tasks_since.
    std::set<std::tuple<std::string, int64_t, int64_t>> before;
    const json& prev = at(s, "PreviousSpec");
    for (const json& p : at(at(prev, "EndpointSpec"), "Ports")) {
      before.emplace(str(at(p, "Protocol")), num(at(p, "PublishedPort")), num(at(p, "TargetPort")));
    }
    const int64_t update_began = parseTime(str(at(at(s, "UpdateStatus"), "StartedAt")));
    for (const json& p : at(at(s, "Endpoint"), "Ports")) {
      const std::string proto = str(at(p, "Protocol"));
      const int64_t published = num(at(p, "PublishedPort")), target = num(at(p, "TargetPort"));
      const std::string mode = str(at(p, "PublishMode"));
      const std::string what = absl::StrCat("service ", svc.name, " port ", published, "/", proto);
      if (mode == "host") {
        c.refusals.push_back(absl::StrCat(what,
                                          ": published in host mode, which bypasses the "
                                          "routing mesh; publish it in ingress mode"));
        continue;
      }
      if (proto != "tcp" && proto != "udp") {
        c.refusals.push_back(absl::StrCat(what, ": meshlb balances TCP and UDP only"));
        continue;
      }
      if (published <= 0 || published > 65535 || target <= 0 || target > 65535) {
        c.refusals.push_back(absl::StrCat(what, ": no published or target port"));
        continue;
      }
      const bool added = prev.is_object() && !before.contains({proto, published, target});
      svc.ports.push_back({proto == "tcp" ? Proto::kTcp : Proto::kUdp,
                           static_cast<uint16_t>(published), static_cast<uint16_t>(target),
                           added ? update_began : 0});
    }
    if (svc.ports.empty()) continue;
    by_id[svc.id] = c.services.size();
    c.services.push_back(std::move(svc));
  }

  for (const json& t : *tasks) {
    auto it = by_id.find(str(at(t, "ServiceID")));
    if (it == by_id.end()) continue;
    if (str(at(at(t, "Status"), "State")) != "running") continue;
    const bool leaving = str(at(t, "DesiredState")) != "running";
    auto node = node_addr.find(str(at(t, "NodeID")));
    if (node == node_addr.end()) continue;  // a node that is down or unknown
    Service& svc = c.services[it->second];
    bool attached = false;
    for (const json& a : at(t, "NetworksAttachments")) {
      if (str(at(at(a, "Network"), "ID")) != c.network.id) continue;
      for (const json& addr : at(a, "Addresses")) {
        auto p = Prefix::parse(str(addr));
        if (!p.ok() || !c.network.subnet.contains(p->addr)) continue;
        (leaving ? svc.leaving : svc.tasks)
            .push_back(
                {str(at(t, "ID")), p->addr, node->second, parseTime(str(at(t, "CreatedAt")))});
        attached = true;
        break;
      }
    }
    if (!attached && !leaving) {
      c.refusals.push_back(absl::StrCat("service ", svc.name, " task ", str(at(t, "ID")),
                                        ": not attached to network ", c.network.name));
    }
  }
  return c;
}

}  // namespace meshlb::swarm
