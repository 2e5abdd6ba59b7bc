#include "sysctl.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "usage.h"

namespace meshlb {

namespace {

constexpr char kPrefix[] = "net.ipv4.vs.";

struct Setting {
  const char* name;
  uint32_t IpvsSysctls::*field;
};

// What meshlb takes, in sysctl -a's (alphabetical) order.
constexpr Setting kSettings[] = {
    {"conn_reuse_mode", &IpvsSysctls::conn_reuse_mode},
    {"expire_nodest_conn", &IpvsSysctls::expire_nodest_conn},
    {"expire_quiescent_template", &IpvsSysctls::expire_quiescent_template},
    {"lblc_expiration", &IpvsSysctls::lblc_expiration},
    {"lblcr_expiration", &IpvsSysctls::lblcr_expiration},
    {"nat_icmp_send", &IpvsSysctls::nat_icmp_send},
    {"run_estimation", &IpvsSysctls::run_estimation},
    {"schedule_icmp", &IpvsSysctls::schedule_icmp},
    {"sloppy_tcp", &IpvsSysctls::sloppy_tcp},
    {"sync_refresh_period", &IpvsSysctls::sync_refresh_period},
};

// The kernel's other names, and why meshlb has no such setting.
struct Refused {
  const char* name;
  const char* why;
};
constexpr const char* kDefence =
    "the kernel's defences against running out of memory under a flood: meshlb's flow table "
    "has a fixed size and evicts by class instead (docs/core.md), which no setting changes";
constexpr const char* kNoPacketCount =
    "meshlb keeps no packet count per connection: a master sends a connection as it changes "
    "state and again every sync_refresh_period while it has packets (docs/ipvsadm.md)";
constexpr Refused kRefused[] = {
    {"am_droprate", kDefence},
    {"amemthresh", kDefence},
    {"drop_entry", kDefence},
    {"drop_packet", kDefence},
    {"secure_tcp", kDefence},
    {"backup_only",
     "a meshlb backup always balances too (two appliances back each other up, both serving)"},
    {"sync_persist_mode",
     "meshlb sends a persistent connection with its template, as the kernel's default 0 does"},
    {"sync_ports",
     "one socket per daemon: the control thread sends every worker's queue in its loop"},
    {"sync_qlen_max",
     "each worker's queue is a ring of 65536 connections; what a full one refuses is counted "
     "(sync_queue_full)"},
    {"sync_retries", kNoPacketCount},
    {"sync_sock_size", "the sync sockets keep the kernel's default buffer sizes"},
    {"sync_threshold", kNoPacketCount},
    {"sync_version", "meshlb speaks version 1 only (version 0 has no timeouts or fwmarks)"},
    {"cache_bypass",
     "it sends packets for a service without real servers to the original destination "
     "through the host's routes (cache clusters); meshlb's dataplane only balances"},
    {"conntrack",
     "it keeps netfilter connection tracking for IPVS connections; meshlb's connections are "
     "its own and never in the kernel's conntrack"},
    {"snat_reroute",
     "it re-routes a -m reply after netfilter's SNAT by its new source; meshlb routes every "
     "packet after its own rewrite already"},
    {"ignore_tunneled",
     "it leaves IPIP/GRE packets addressed to the host alone; meshlb never decapsulates them, "
     "so it never balances one"},
    {"pmtu_disc",
     "meshlb always behaves as its default, 1: a DF packet too big for a -g/-i path gets ICMP "
     "fragmentation needed; it never fragments"},
    {"sloppy_sctp", "meshlb has no SCTP services"},
    {"debug_level", "meshlb logs through meshlbd's output, not IPVS's debug levels"},
    {"est_cpulist", "meshlb's rate estimator runs on the control thread, not kernel threads"},
    {"est_nice", "meshlb's rate estimator runs on the control thread, not kernel threads"},
    {"conn_lfactor", "meshlb's connection table has a fixed size (meshlbd --flows)"},
    {"svc_lfactor", "meshlb's service table is sized by what it holds"},
};

// "net.ipv4.vs.NAME" or "net/ipv4/vs/NAME": NAME.
absl::StatusOr<std::string> nameOf(std::string full) {
  std::replace(full.begin(), full.end(), '/', '.');
  if (!absl::StartsWith(full, kPrefix)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sysctl: '", full, "' is not an IPVS setting: meshlb has net.ipv4.vs.* only"));
  }
  return full.substr(sizeof(kPrefix) - 1);
}

absl::StatusOr<const Setting*> settingOf(const std::string& name) {
  for (const Setting& s : kSettings) {
    if (name == s.name) return &s;
  }
  for (const Refused& r : kRefused) {
    if (name == r.name) {
      return absl::UnimplementedError(
          absl::StrCat("sysctl: net.ipv4.vs.", name, " is not supported: ", r.why));
    }
  }
  std::vector<std::string> names;
  for (const Setting& s : kSettings) names.emplace_back(s.name);
  return absl::NotFoundError(
      absl::StrCat("sysctl: cannot stat /proc/sys/net/ipv4/vs/", name,
                   ": no such IPVS setting (meshlb has: ", absl::StrJoin(names, ", "), ")"));
}

std::string line(const Setting& s, const IpvsSysctls& v, bool value_only) {
  const uint32_t x = v.*s.field;
  return value_only ? absl::StrCat(x, "\n") : absl::StrCat(kPrefix, s.name, " = ", x, "\n");
}

}  // namespace

bool sysctlReadsOnly(const std::vector<std::string>& args) {
  return std::none_of(args.begin(), args.end(),
                      [](const std::string& a) { return absl::StrContains(a, '='); });
}

absl::StatusOr<std::string> runSysctl(ServiceModel& model, const std::vector<std::string>& args) {
  bool value_only = false, all = false;
  std::vector<std::string> names;
  for (const std::string& a : args) {
    if (a == "-h" || a == "--help") {
      return std::string(kSysctlUsage);
    } else if (a == "-n") {
      value_only = true;
    } else if (a == "-a" || a == "-A" || a == "--all") {
      all = true;
    } else if (a == "-w" || a == "--write") {
      // sysctl's -w: NAME=VALUE says it already.
    } else if (!a.empty() && a[0] == '-') {
      return absl::InvalidArgumentError(absl::StrCat(
          "sysctl: unknown option '", a, "' (meshlbctl sysctl takes -a, -n, -w and names)"));
    } else {
      names.push_back(a);
    }
  }
  IpvsSysctls v = model.sysctls();
  std::string out;
  if (all) {
    for (const Setting& s : kSettings) out += line(s, v, value_only);
  }
  if (names.empty() && !all) {
    return absl::InvalidArgumentError(
        "usage: meshlbctl sysctl [-n] [-a] net.ipv4.vs.NAME[=VALUE]...");
  }
  for (const std::string& arg : names) {
    const size_t eq = arg.find('=');
    auto name = nameOf(arg.substr(0, eq));
    if (!name.ok()) return name.status();
    auto s = settingOf(*name);
    if (!s.ok()) return s.status();
    if (eq != std::string::npos) {
      const std::string text = arg.substr(eq + 1);
      uint32_t x;
      // proc_dointvec: a non-negative int (negative values are refused by meshlb: none
      // of these means anything below 0).
      if (!absl::SimpleAtoi(text, &x) || x > 2147483647u) {
        return absl::InvalidArgumentError(absl::StrCat("sysctl: setting key \"", kPrefix, *name,
                                                       "\": Invalid argument ('", text,
                                                       "' is not a number from 0 to 2147483647)"));
      }
      v.*(*s)->field = x;
    }
    out += line(**s, v, value_only);
  }
  model.setSysctls(v);
  return out;
}

std::vector<std::string> sysctlSettings(const ServiceModel& model) {
  std::vector<std::string> out;
  const IpvsSysctls defaults;
  for (const Setting& s : kSettings) {
    if (model.sysctls().*s.field != defaults.*s.field) {
      out.push_back(absl::StrCat(kPrefix, s.name, "=", model.sysctls().*s.field));
    }
  }
  return out;
}

}  // namespace meshlb
