#include "announce.h"

#include <linux/rtnetlink.h>
#include <netlink/netlink.h>
#include <netlink/route/route.h>
#include <sys/socket.h>

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "ipvsadm.h"
#include "meshlb/snapshot.h"
#include "usage.h"

namespace meshlb {
namespace {

absl::Status bad(const std::string& msg) { return absl::InvalidArgumentError(msg); }

std::string prefixText(const IpAddr& a, uint8_t len) { return absl::StrCat(a.str(), "/", len); }

// `a` with all but its first `len` bits cleared (either family: an IPv4 address's bytes
// past its fourth are zero).
IpAddr masked(const IpAddr& a, uint32_t len) {
  IpAddr n = a;
  for (int i = 0; i < 16; ++i) n.b[i] &= Prefix<Ipv6Addr>::byteMask(i, static_cast<uint8_t>(len));
  return n;
}

// "A.B.C.D/LEN" or "IPV6/LEN" (a bare address: /32 or /128), host bits clear as the
// kernel wants a route.
absl::StatusOr<std::pair<IpAddr, uint8_t>> parsePrefix(const std::string& s) {
  const size_t slash = s.find('/');
  auto a = IpAddr::parse(s.substr(0, slash));
  if (!a.ok()) return bad(absl::StrCat("invalid prefix '", s, "'"));
  const uint32_t bits = a->isV6() ? 128 : 32;
  uint32_t len = bits;
  if (slash != std::string::npos && (!absl::SimpleAtoi(s.substr(slash + 1), &len) || len > bits)) {
    return bad(absl::StrCat("invalid prefix length in '", s, "'"));
  }
  const IpAddr net = masked(*a, len);
  if (net != *a) {
    return bad(
        absl::StrCat("'", s, "' has host bits set (the prefix is ", net.str(), "/", len, ")"));
  }
  return std::make_pair(*a, static_cast<uint8_t>(len));
}

bool inside(const IpAddr& a, const Announcement& p) {
  return a.family == p.prefix.family && masked(a, p.len) == p.prefix;
}

bool usable(const Service& s) {
  return std::any_of(s.dests.begin(), s.dests.end(),
                     [](const RealServer& d) { return d.liveWeight() > 0; });
}

}  // namespace

std::string AnnouncedRoute::str() const {
  return absl::StrCat(prefixText(prefix, len), metric ? absl::StrCat(" metric ", metric) : "");
}

bool announceReadsOnly(const std::vector<std::string>& args) {
  for (const std::string& a : args) {
    if (a == "-L" || a == "--list" || a == "-S" || a == "--save" || a == "-h" || a == "--help") {
      return true;
    }
  }
  return args.empty();
}

std::vector<std::string> announceRules(const AnnounceModel& m) {
  std::vector<std::string> out;
  for (const Announcement& a : m.prefixes) {
    std::string line = absl::StrCat("-a ", prefixText(a.prefix, a.len));
    if (a.metric) absl::StrAppend(&line, " --metric ", a.metric);
    if (a.always) absl::StrAppend(&line, " --always");
    for (const ServiceKey& k : a.services) absl::StrAppend(&line, " ", serviceRuleName(k));
    out.push_back(std::move(line));
  }
  if (m.drained) out.emplace_back("--drain");
  return out;
}

std::string notAnnounced(const AnnounceModel& m, const Announcement& a,
                         const ServiceModel& services) {
  if (m.drained) return "drained (meshlbctl announce --undrain)";
  if (a.always) return "";
  bool any = false;
  if (a.services.empty()) {
    for (const auto& [key, svc] : services.services()) {
      if (key.fwmark || !inside(key.addr, a)) continue;
      any = true;
      if (usable(svc)) return "";
    }
    return any ? "no real server of weight above 0 in its services" : "no service inside it";
  }
  for (const ServiceKey& k : a.services) {
    auto it = services.services().find(k);
    if (it == services.services().end()) continue;
    any = true;
    if (usable(it->second)) return "";
  }
  return any ? "no real server of weight above 0 in its services" : "none of its services exists";
}

std::vector<AnnouncedRoute> prefixesToAnnounce(const AnnounceModel& m,
                                               const ServiceModel& services) {
  std::vector<AnnouncedRoute> out;
  for (const Announcement& a : m.prefixes) {
    if (notAnnounced(m, a, services).empty()) out.push_back({a.prefix, a.len, a.metric});
  }
  return out;
}

absl::StatusOr<std::string> runAnnounce(AnnounceModel& m, const ServiceModel& services,
                                        const std::vector<std::string>& args,
                                        const AnnounceRuntimeFn& runtime) {
  enum class Cmd { kNone, kAdd, kDel, kDrain, kUndrain, kList, kSave } cmd = Cmd::kNone;
  std::string prefix;
  std::vector<ServiceKey> keys;
  uint32_t metric = 0;
  bool always = false, has_metric = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto set = [&](Cmd c) -> absl::Status {
      if (cmd != Cmd::kNone) return bad(absl::StrCat("'", a, "': one command at a time"));
      cmd = c;
      return absl::OkStatus();
    };
    auto value = [&]() -> absl::StatusOr<std::string> {
      if (i + 1 >= args.size()) return bad(absl::StrCat("option ", a, " needs a value"));
      return args[++i];
    };
    absl::Status st;
    if (a == "-h" || a == "--help") return std::string(kAnnounceUsage);
    if (a == "-a" || a == "--add" || a == "-d" || a == "--delete") {
      st = set(a == "-a" || a == "--add" ? Cmd::kAdd : Cmd::kDel);
      auto v = value();
      if (!v.ok()) return v.status();
      prefix = *v;
    } else if (a == "--metric") {
      auto v = value();
      if (!v.ok()) return v.status();
      if (has_metric || !absl::SimpleAtoi(*v, &metric)) {
        return bad(absl::StrCat("--metric '", *v, "': one metric, 0..4294967295"));
      }
      has_metric = true;
    } else if (a == "--always") {
      always = true;
    } else if (a == "--drain") {
      st = set(Cmd::kDrain);
    } else if (a == "--undrain") {
      st = set(Cmd::kUndrain);
    } else if (a == "-L" || a == "--list") {
      st = set(Cmd::kList);
    } else if (a == "-S" || a == "--save") {
      st = set(Cmd::kSave);
    } else if (a == "-n" || a == "--numeric") {
      // Listings are numeric.
    } else if (a == "-t" || a == "--tcp-service" || a == "-u" || a == "--udp-service" ||
               a == "-f" || a == "--fwmark-service") {
      auto v = value();
      if (!v.ok()) return v.status();
      auto k = parseServiceOption(a, *v);
      if (!k.ok()) return k.status();
      keys.push_back(*k);
    } else if (a == "-6" || a == "--ipv6") {
      if (auto s = applyIpv6Option(keys.empty() ? nullptr : &keys.back()); !s.ok()) return s;
    } else {
      return bad(absl::StrCat("unknown option '", a, "'\n", kAnnounceUsage));
    }
    if (!st.ok()) return st;
  }
  if (cmd != Cmd::kAdd && (!keys.empty() || has_metric || always)) {
    return bad("services, --metric and --always go with -a only");
  }
  if (always && !keys.empty()) {
    return bad("--always announces whatever the services: name none with it");
  }
  switch (cmd) {
    case Cmd::kNone:
      return bad(absl::StrCat("no command (-a, -d, --drain, --undrain, -L, -S)\n", kAnnounceUsage));
    case Cmd::kSave: {
      std::string out;
      for (const std::string& r : announceRules(m)) absl::StrAppend(&out, r, "\n");
      return out;
    }
    case Cmd::kList: {
      const AnnounceRuntime rt = runtime ? runtime() : AnnounceRuntime{};
      std::string out = absl::StrCat("Announced through the kernel table's routes; ",
                                     m.drained ? "drained" : "not drained",
                                     "; connections tracked: ", rt.connections, "\n");
      for (const Announcement& a : m.prefixes) {
        const std::string p = AnnouncedRoute{a.prefix, a.len, a.metric}.str();
        const bool in =
            std::find(rt.announced.begin(), rt.announced.end(), p) != rt.announced.end();
        std::string why = notAnnounced(m, a, services);
        std::string state = in             ? "announced"
                            : !why.empty() ? absl::StrCat("withdrawn: ", why)
                            : !rt.ready    ? "withdrawn: meshlbd is not serving yet"
                            : rt.held_s    ? absl::StrCat("withdrawn: held ", rt.held_s,
                                                          " s more after start, for the backup sync "
                                                             "daemon to receive its peers' connections")
                                           : "withdrawn: the route could not be added";
        std::vector<std::string> names;
        for (const ServiceKey& k : a.services) names.push_back(serviceRuleName(k));
        absl::StrAppend(
            &out, absl::StrFormat("%-20s %s%s\n", p, state,
                                  a.always        ? " (always)"
                                  : names.empty() ? ""
                                                  : absl::StrCat(" (services ",
                                                                 absl::StrJoin(names, ", "), ")")));
      }
      return out;
    }
    case Cmd::kDrain:
      m.drained = true;
      return absl::StrCat(
          "drained: every prefix withdrawn; connections tracked: ",
          runtime ? runtime().connections : 0,
          " (they end as their clients end them; meshlbctl announce -L shows the count)\n");
    case Cmd::kUndrain:
      m.drained = false;
      return std::string();
    default:
      break;
  }
  auto p = parsePrefix(prefix);
  if (!p.ok()) return p.status();
  auto it = std::find_if(m.prefixes.begin(), m.prefixes.end(), [&](const Announcement& a) {
    return a.prefix == p->first && a.len == p->second;
  });
  if (cmd == Cmd::kDel) {
    if (it == m.prefixes.end())
      return absl::NotFoundError(absl::StrCat(prefix, " is not announced"));
    m.prefixes.erase(it);
    return std::string();
  }
  if (it != m.prefixes.end()) {
    return absl::AlreadyExistsError(absl::StrCat(prefix, " is announced already (-d it first)"));
  }
  for (const ServiceKey& k : keys) {
    if (k.fwmark == 0 && !inside(k.addr, {p->first, p->second, {}})) {
      return bad(absl::StrCat("service ", serviceRuleName(k), " is not inside ", prefix));
    }
  }
  m.prefixes.push_back({p->first, p->second, keys, metric, always});
  return std::string();
}

RouteAnnouncer::~RouteAnnouncer() {
  if (sock_) nl_socket_free(sock_);
}

absl::Status RouteAnnouncer::start(uint32_t table) {
  table_ = table;
  sock_ = nl_socket_alloc();
  int err = sock_ ? nl_connect(sock_, NETLINK_ROUTE) : -NLE_NOMEM;
  if (err < 0) return absl::InternalError(absl::StrCat("netlink: ", nl_geterror(err)));
  return absl::OkStatus();
}

bool RouteAnnouncer::route(const AnnouncedRoute& p, int ifindex, bool add) {
  rtnl_route* r = rtnl_route_alloc();
  const bool v6 = p.prefix.isV6();
  nl_addr* dst = nl_addr_build(v6 ? AF_INET6 : AF_INET, p.prefix.b, v6 ? 16 : 4);
  nl_addr_set_prefixlen(dst, p.len);
  // The kernel gives an IPv6 route of metric 0 its default, 1024: each IPv6 route's metric
  // is one more than configured, so that the order of an appliance's own prefix (0) and a
  // peer's backup (--metric 100) holds for IPv6 too.
  rtnl_route_set_priority(r, v6 ? std::max(p.metric, p.metric + 1) : p.metric);
  rtnl_route_set_family(r, v6 ? AF_INET6 : AF_INET);
  rtnl_route_set_dst(r, dst);
  rtnl_route_set_table(r, table_);
  rtnl_route_set_protocol(r, RTPROT_STATIC);
  rtnl_route_set_scope(r, v6 ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK);
  rtnl_route_set_type(r, RTN_UNICAST);
  rtnl_nexthop* nh = rtnl_route_nh_alloc();
  rtnl_route_nh_set_ifindex(nh, ifindex);
  rtnl_route_add_nexthop(r, nh);
  const int err =
      add ? rtnl_route_add(sock_, r, NLM_F_CREATE | NLM_F_REPLACE) : rtnl_route_delete(sock_, r, 0);
  nl_addr_put(dst);
  rtnl_route_put(r);
  ++changes_;
  // A route already gone (its twin went, taking it) is what a delete wants.
  if (err < 0 && !(!add && err == -NLE_OBJ_NOTFOUND)) {
    ++failures_;
    last_error_ = absl::StrCat(add ? "adding " : "deleting ", p.str(), " in table ", table_, ": ",
                               nl_geterror(err));
    return false;
  }
  return true;
}

void RouteAnnouncer::sync(const std::vector<AnnouncedRoute>& prefixes, int ifindex) {
  if (!sock_) return;
  if (ifindex != ifindex_) announced_.clear();  // the twin is new: its routes went with the old
  ifindex_ = ifindex;
  std::vector<AnnouncedRoute> now;
  for (const auto& p : announced_) {
    const bool keep = std::find(prefixes.begin(), prefixes.end(), p) != prefixes.end();
    if (keep || !route(p, ifindex, false)) now.push_back(p);
  }
  for (const auto& p : prefixes) {
    if (std::find(now.begin(), now.end(), p) == now.end() && route(p, ifindex, true)) {
      now.push_back(p);
    }
  }
  announced_ = std::move(now);
}

}  // namespace meshlb
