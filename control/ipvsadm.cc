#include "ipvsadm.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "meshlb/proto.h"
#include "meshlb/scheduler.h"
#include "protocol.h"
#include "usage.h"

namespace meshlb {

namespace {

enum class Cmd {
  kNone,
  kAddSvc,
  kEditSvc,
  kDelSvc,
  kClear,
  kRestore,
  kSave,
  kAddDest,
  kEditDest,
  kDelDest,
  kList,
  kZero,
  kSet,
  kStartDaemon,
  kStopDaemon,
  kHelp
};

// ipvsadm's options, in the order of its OPT_ flags and its commands_v_options table.
enum Opt : uint32_t {
  kOptNumeric,
  kOptConnection,
  kOptService,
  kOptScheduler,
  kOptPersistent,
  kOptNetmask,
  kOptServer,
  kOptForward,
  kOptWeight,
  kOptUThreshold,
  kOptLThreshold,
  kOptMcastInterface,
  kOptTimeout,
  kOptDaemon,
  kOptStats,
  kOptRate,
  kOptThresholds,
  kOptPersistentConn,
  kOptNoSort,
  kOptSyncId,
  kOptExact,
  kOptOps,
  kOptPe,
  kOptSchedFlags,
  kOptMcastGroup,
  kOptMcastPort,
  kOptMcastTtl,
  kOptSyncMaxlen,
  kOptTunInfo,
  kOptTunType,
  kOptTunPort,
  kOptTunNoCsum,
  kOptTunCsum,
  kOptTunRemCsum,
  kNumOpts
};
constexpr const char* kOptNames[kNumOpts] = {"numeric",
                                             "connection",
                                             "service-address",
                                             "scheduler",
                                             "persistent",
                                             "netmask",
                                             "real-server",
                                             "forwarding-method",
                                             "weight",
                                             "u-threshold",
                                             "l-threshold",
                                             "mcast-interface",
                                             "timeout",
                                             "daemon",
                                             "stats",
                                             "rate",
                                             "thresholds",
                                             "persistent-conn",
                                             "nosort",
                                             "syncid",
                                             "exact",
                                             "ops",
                                             "pe",
                                             "sched-flags",
                                             "mcast-group",
                                             "mcast-port",
                                             "mcast-ttl",
                                             "sync-maxlen",
                                             "tun-info",
                                             "tun-type",
                                             "tun-port",
                                             "tun-nocsum",
                                             "tun-csum",
                                             "tun-remcsum"};

// ipvsadm's commands_v_options, a row per command and a column per Opt: '+' needed,
// 'x' refused, '1' at most one of them, ' ' allowed. Indexed by Cmd.
struct CommandOptions {
  const char* name;
  const char* options;
};
constexpr CommandOptions kCommandOptions[] = {
    /* -n-csvc-s-p-M-rfwd-w-x-y mc tot dmn st rt thr pc srt sid ex ops pe -b grp port ttl size
       tinf type tprt nocs csum remc */
    {"", ""},                                                  // kNone
    {"add-service", "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx"},     // kAddSvc
    {"edit-service", "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx"},    // kEditSvc
    {"delete-service", "xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},  // kDelSvc
    {"flush", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},           // kClear
    {"restore", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},         // kRestore
    {"save", " xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},            // kSave
    {"add-server", "xx+xxx+    xxxxxxxxxxxxxxxxxx     "},      // kAddDest
    {"edit-server", "xx+xxx+    xxxxxxxxxxxxxxxxxx     "},     // kEditDest
    {"delete-server", "xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxx"},   // kDelDest
    {"list", " 11xxxxxxxxx11       xxxxxxx xxxxx"},            // kList
    {"zero", "xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},            // kZero
    {"set", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},             // kSet
    {"start-daemon", "xxxxxxxxxxx xxxxxxx xxxx    xxxxxx"},    // kStartDaemon
    {"stop-daemon", "xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxx"},     // kStopDaemon
    {"help", "                                  "},            // kHelp: nothing checked
};

struct Parsed {
  uint64_t opts = 0;  // 1 << Opt, each given at most once
  Cmd cmd = Cmd::kNone;
  std::optional<ServiceKey> svc;
  std::string scheduler;
  bool have_scheduler = false;
  std::string sched_flags;  // -b, parsed once the scheduler is known
  std::optional<std::pair<IpAddr, std::optional<uint16_t>>> real;
  std::optional<ForwardMethod> fwd;
  std::optional<uint32_t> weight;
  uint32_t u_threshold = 0, l_threshold = 0;
  bool thresholds = false;  // --thresholds
  bool persistent_conn = false, tun_info = false, nosort = false;
  std::optional<uint32_t> persistent;  // -p: seconds
  std::string netmask;                 // -M, parsed once the service's family is known
  bool ops = false;                    // -o
  TunnelType tun_type = TunnelType::kIpip;
  uint16_t tun_port = 0;
  TunnelCsum tun_csum = TunnelCsum::kNone;
  bool numeric = false, timeout = false, stats = false, rate = false, exact = false;
  bool connections = false;
  std::vector<uint32_t> set_values;
  bool daemon = false;  // -L --daemon
  SyncRole role = kSyncMaster;
  SyncDaemon sync;  // --start-daemon's options (running, maxlen 0 until applied)
};

absl::Status bad(const std::string& msg) { return absl::InvalidArgumentError(msg); }
// What ipvsadm refuses itself (its fail(2, ...)): exit status 2. Everything else a
// command is refused for is what the kernel would refuse: 255 (ipvsadm's -1).
absl::Status own(const std::string& msg) { return withExitStatus(bad(msg), 2); }
absl::Status kernelsUnlessOwn(absl::Status st) {
  if (st.ok() || st.GetPayload(kExitPayload)) return st;
  return withExitStatus(std::move(st), 255);
}

// --set limits: ipvsadm's parse (86400 * 31) and the kernel's (INT_MAX / HZ, HZ = 1000).
constexpr uint32_t kMaxSetTimeout = 86400 * 31;
constexpr uint32_t kMaxKernelTimeout = 2147483;
// -p without a value: IPVS_SVC_PERSISTENT_TIMEOUT.
constexpr uint32_t kDefaultPersistence = 300;

// "ADDR:PORT", "[V6]:PORT", or with allow_no_port also a bare address.
// A port's number, or its name in /etc/services for `protocol` (ipvsadm's
// service_to_port: `ipvsadm -S` without -n writes names, and -R reads them back).
std::optional<uint16_t> portNumber(const std::string& port, uint8_t protocol) {
  uint32_t v;
  if (absl::SimpleAtoi(port, &v)) return v <= 65535 ? std::optional<uint16_t>(v) : std::nullopt;
  servent entry{}, *found = nullptr;
  char buf[1024];
  if (getservbyname_r(port.c_str(), protocol == kProtoUdp ? "udp" : "tcp", &entry, buf, sizeof(buf),
                      &found) == 0 &&
      found) {
    return ntohs(static_cast<uint16_t>(found->s_port));
  }
  return std::nullopt;
}

absl::StatusOr<std::pair<IpAddr, std::optional<uint16_t>>> parseAddrPort(const std::string& s,
                                                                         bool allow_no_port,
                                                                         const char* what,
                                                                         uint8_t protocol) {
  std::string host = s, port;
  if (!s.empty() && s[0] == '[') {
    auto close = s.find(']');
    if (close == std::string::npos) return bad(absl::StrCat("illegal ", what, " '", s, "'"));
    host = s.substr(1, close - 1);
    if (close + 1 < s.size()) {
      if (s[close + 1] != ':') return bad(absl::StrCat("illegal ", what, " '", s, "'"));
      port = s.substr(close + 2);
    }
  } else if (auto colon = s.rfind(':');
             colon != std::string::npos && s.find(':') == colon) {  // one colon: IPv4 with port
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  auto addr = IpAddr::parse(host);
  if (!addr.ok()) return bad(absl::StrCat("illegal ", what, " address '", s, "'"));
  std::optional<uint16_t> p;
  if (!port.empty()) {
    p = portNumber(port, protocol);
    if (!p) return bad(absl::StrCat("illegal ", what, " port '", port, "'"));
  } else if (!allow_no_port) {
    return bad(absl::StrCat(what, " '", s, "' needs a port"));
  }
  return std::make_pair(*addr, p);
}

}  // namespace

absl::StatusOr<ServiceKey> parseServiceOption(const std::string& flag, const std::string& value) {
  ServiceKey k;
  if (flag == "-f" || flag == "--fwmark-service") {
    if (!absl::SimpleAtoi(value, &k.fwmark) || k.fwmark == 0) {
      return bad(absl::StrCat("illegal fwmark '", value, "'"));
    }
    return k;
  }
  const bool tcp = flag == "-t" || flag == "--tcp-service";
  if (!tcp && flag != "-u" && flag != "--udp-service") {
    return bad(absl::StrCat("'", flag, "' is not a service option (-t, -u, -f)"));
  }
  k.protocol = tcp ? kProtoTcp : kProtoUdp;
  auto ap = parseAddrPort(value, false, "service", k.protocol);
  if (!ap.ok()) return ap.status();
  k.addr = ap->first;
  k.port = *ap->second;
  return k;
}

absl::StatusOr<std::pair<IpAddr, uint16_t>> parseRealServerOption(const ServiceKey& svc,
                                                                  const std::string& value) {
  auto ap = parseAddrPort(value, true, "real server", svc.fwmark ? kProtoTcp : svc.protocol);
  if (!ap.ok()) return ap.status();
  return std::make_pair(ap->first, ap->second ? *ap->second : (svc.fwmark ? 0 : svc.port));
}

namespace {

// Why `a` can never be a virtual service's or a real server's address, or nullptr:
// what the kernel's ip_vs_add_dest refuses (not RTN_UNICAST or RTN_LOCAL), and
// loopback, which the appliance's ports never carry.
const char* unusableAddress(const IpAddr& a) {
  if (a.isV4()) {
    const uint8_t* b = a.b;
    if (b[0] == 0) return "is in 0.0.0.0/8 (this network: never a destination)";
    if (b[0] == 127)
      return "is a loopback address (127.0.0.0/8 never reaches the appliance's ports)";
    if (b[0] >= 224 && b[0] < 240) return "is a multicast address";
    if (b[0] == 255 && b[1] == 255 && b[2] == 255 && b[3] == 255) return "is the broadcast address";
    if (b[0] >= 240) return "is in 240.0.0.0/4 (reserved)";
    return nullptr;
  }
  static const uint8_t zero[16] = {},
                       loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  if (std::memcmp(a.b, zero, 16) == 0) return "is the unspecified address";
  if (std::memcmp(a.b, loopback, 16) == 0) return "is the loopback address";
  if (a.b[0] == 0xff) return "is a multicast address";
  return nullptr;
}

// A virtual service's address and port must be one clients can reach (issue 13:
// services on 0.0.0.0, broadcast, multicast, loopback or port 0 were accepted and
// never served; a UDP service on VXLAN's port was taken for overlay traffic).
absl::Status checkServiceAddress(const ServiceKey& k, bool persistent, const IpvsDataplane& dp) {
  if (k.fwmark) return absl::OkStatus();
  if (const char* why = unusableAddress(k.addr)) {
    return bad(absl::StrCat("service address ", k.addr.str(), " ", why));
  }
  // Port 0 is the kernel's catch-all (every port of the address), persistent only.
  if (k.port == 0 && !persistent) return own("Zero port specified for non-persistent service");
  const uint16_t vxlan = dp.vxlan_port ? dp.vxlan_port() : kVxlanPort;
  if (k.protocol == kProtoUdp && (k.port == kVxlanPort || k.port == vxlan)) {
    return bad(absl::StrCat("UDP port ", k.port,
                            " is VXLAN's: the dataplane takes what arrives on it for overlay "
                            "traffic, so this service could never be reached"));
  }
  return absl::OkStatus();
}

// A real server must be reachable, and not a virtual service's own address (the
// appliance would balance connections to itself, and they would fail).
absl::Status checkRealServer(const ServiceModel& m, const IpAddr& a) {
  if (const char* why = unusableAddress(a)) {
    return bad(absl::StrCat("real server address ", a.str(), " ", why));
  }
  for (uint8_t proto : {kProtoTcp, kProtoUdp}) {
    ServiceKey probe;
    probe.protocol = proto;
    probe.addr = a;
    auto it = m.services().lower_bound(probe);
    if (it != m.services().end() && !it->first.fwmark && it->first.protocol == proto &&
        it->first.addr == a) {
      return bad(absl::StrCat("real server address ", a.str(),
                              " is a virtual service's address on this appliance: connections "
                              "would be balanced to the appliance itself"));
    }
  }
  return absl::OkStatus();
}

absl::Status setCmd(Parsed& p, Cmd c, const std::string&) {
  if (p.cmd != Cmd::kNone) return bad("multiple commands specified");
  p.cmd = c;
  return absl::OkStatus();
}

// ipvsadm's set_option: an option given twice is refused, not the last one taken.
absl::Status setOpt(Parsed& p, Opt o) {
  if (p.opts & (1ull << o))
    return bad(absl::StrCat("multiple '", kOptNames[o], "' options specified"));
  p.opts |= 1ull << o;
  return absl::OkStatus();
}

// ipvsadm's generic_opt_check, then its own check of the list command's options.
absl::Status checkOptions(const Parsed& p) {
  const CommandOptions& row = kCommandOptions[static_cast<int>(p.cmd)];
  int exclusive = -1;  // the Opt given first of those marked 1
  for (uint32_t o = 0; o < kNumOpts; ++o) {
    const bool given = p.opts & (1ull << o);
    const char rule = row.options[o];
    if (!given && rule == '+') {
      return bad(absl::StrCat("You need to supply the '", kOptNames[o], "' option for the '",
                              row.name, "' command"));
    }
    if (given && rule == 'x') {
      return bad(
          absl::StrCat("Illegal '", kOptNames[o], "' option with the '", row.name, "' command"));
    }
    if (given && rule == '1') {
      if (exclusive >= 0) {
        return bad(absl::StrCat("The option '", kOptNames[o], "' conflicts with the '",
                                kOptNames[exclusive], "' option in the '", row.name, "' command"));
      }
      exclusive = static_cast<int>(o);
    }
  }
  auto any = [&](std::initializer_list<Opt> os) {
    for (Opt o : os) {
      if (p.opts & (1ull << o)) return true;
    }
    return false;
  };
  if (p.cmd == Cmd::kList && ((any({kOptConnection, kOptTimeout, kOptDaemon}) &&
                               any({kOptStats, kOptRate, kOptThresholds})) ||
                              (any({kOptTimeout, kOptDaemon}) && any({kOptPersistentConn})))) {
    return bad("options conflicts in the list command");
  }
  return absl::OkStatus();
}

// Splits "-Ln" into "-L", "-n": ipvsadm (popt) accepts bundled short options.
std::vector<std::string> unbundle(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (const auto& a : args) {
    if (a.size() > 2 && a[0] == '-' && a[1] != '-' &&
        a.find_first_not_of("ACDSRLlZEaednc", 1) == std::string::npos) {
      for (size_t i = 1; i < a.size(); ++i) out.push_back(std::string("-") + a[i]);
    } else {
      out.push_back(a);
    }
  }
  return out;
}

absl::StatusOr<Parsed> parse(const std::vector<std::string>& raw) {
  const std::vector<std::string> args = unbundle(raw);
  Parsed p;
  if (args.empty()) p.cmd = Cmd::kList;  // as a bare `ipvsadm` does
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {  // ipvsadm prints its usage whatever else is there
      p.cmd = Cmd::kHelp;
      return p;
    }
    auto value = [&](std::string* out) -> absl::Status {
      if (i + 1 >= args.size()) return bad(absl::StrCat("option ", a, " needs a value"));
      *out = args[++i];
      return absl::OkStatus();
    };
    std::string v;
    absl::Status st;
    if (a == "-A" || a == "--add-service")
      st = setCmd(p, Cmd::kAddSvc, a);
    else if (a == "-E" || a == "--edit-service")
      st = setCmd(p, Cmd::kEditSvc, a);
    else if (a == "-D" || a == "--delete-service")
      st = setCmd(p, Cmd::kDelSvc, a);
    else if (a == "-C" || a == "--clear")
      st = setCmd(p, Cmd::kClear, a);
    else if (a == "-R" || a == "--restore")
      st = setCmd(p, Cmd::kRestore, a);
    else if (a == "-S" || a == "--save")
      st = setCmd(p, Cmd::kSave, a);
    else if (a == "-a" || a == "--add-server")
      st = setCmd(p, Cmd::kAddDest, a);
    else if (a == "-e" || a == "--edit-server")
      st = setCmd(p, Cmd::kEditDest, a);
    else if (a == "-d" || a == "--delete-server")
      st = setCmd(p, Cmd::kDelDest, a);
    else if (a == "-L" || a == "-l" || a == "--list")
      st = setCmd(p, Cmd::kList, a);
    else if (a == "-Z" || a == "--zero")
      st = setCmd(p, Cmd::kZero, a);
    else if (a == "--set") {
      st = setCmd(p, Cmd::kSet, a);
      for (int k = 0; k < 3 && st.ok(); ++k) {
        uint32_t t;
        if (i + 1 >= args.size()) {
          st = bad("--set needs three values: tcp tcpfin udp (seconds, 0 = unchanged)");
        } else if (!absl::SimpleAtoi(args[i + 1], &t) || t > kMaxSetTimeout) {
          // ipvsadm's own limit, 31 days (parse_timeout, MAX_TIMEOUT).
          st = bad("invalid timeout value `" + args[i + 1] + "' specified");
        } else {
          p.set_values.push_back(t);
          ++i;
        }
      }
    } else if (a == "-t" || a == "--tcp-service" || a == "-u" || a == "--udp-service") {
      if (auto o = setOpt(p, kOptService); !o.ok()) return o;
      st = value(&v);
      if (!st.ok()) return st;
      const uint8_t proto = (a == "-t" || a == "--tcp-service") ? kProtoTcp : kProtoUdp;
      auto ap = parseAddrPort(v, false, "service", proto);
      if (!ap.ok()) return ap.status();
      ServiceKey k;
      k.protocol = (a == "-t" || a == "--tcp-service") ? 6 : 17;
      k.addr = ap->first;
      k.port = *ap->second;
      p.svc = k;
    } else if (a == "-f" || a == "--fwmark-service") {
      if (auto o = setOpt(p, kOptService); !o.ok()) return o;
      st = value(&v);
      if (!st.ok()) return st;
      uint32_t m;
      if (!absl::SimpleAtoi(v, &m) || m == 0) return bad(absl::StrCat("illegal fwmark '", v, "'"));
      ServiceKey k;
      k.fwmark = m;
      p.svc = k;
    } else if (a == "-s" || a == "--scheduler") {
      if (auto o = setOpt(p, kOptScheduler); !o.ok()) return o;
      st = value(&p.scheduler);
      p.have_scheduler = true;
    } else if (a == "-r" || a == "--real-server") {
      if (auto o = setOpt(p, kOptServer); !o.ok()) return o;
      st = value(&v);
      if (!st.ok()) return st;
      auto ap = parseAddrPort(v, true, "real server",
                              p.svc && !p.svc->fwmark ? p.svc->protocol : kProtoTcp);
      if (!ap.ok()) return ap.status();
      p.real = *ap;
    } else if (a == "-m" || a == "--masquerading" || a == "-g" || a == "--gatewaying" ||
               a == "-i" || a == "--ipip") {
      st = setOpt(p, kOptForward);
      p.fwd = a == "-m" || a == "--masquerading" ? ForwardMethod::kMasq
              : a == "-g" || a == "--gatewaying" ? ForwardMethod::kRoute
                                                 : ForwardMethod::kTunnel;
    } else if (a == "-w" || a == "--weight") {
      if (auto o = setOpt(p, kOptWeight); !o.ok()) return o;
      st = value(&v);
      uint32_t w;
      // ipvsadm: string_to_number(optarg, 0, 65535).
      if (st.ok() && (!absl::SimpleAtoi(v, &w) || w > 65535u)) {
        return bad(absl::StrCat("illegal weight specified: '", v, "' (0 to 65535)"));
      }
      if (st.ok()) p.weight = w;
    } else if (a == "-n" || a == "--numeric") {
      st = setOpt(p, kOptNumeric);
      p.numeric = true;
    } else if (a == "--timeout") {
      st = setOpt(p, kOptTimeout);
      p.timeout = true;
    } else if (a == "--stats") {
      st = setOpt(p, kOptStats);
      p.stats = true;
    } else if (a == "--rate") {
      st = setOpt(p, kOptRate);
      p.rate = true;
    } else if (a == "--exact") {
      st = setOpt(p, kOptExact);
      p.exact = true;
    } else if (a == "--sort") {
      // ipvsadm: sorting is the default; --sort does nothing, for compatibility.
    } else if (a == "-c" || a == "--connection") {
      st = setOpt(p, kOptConnection);
      p.connections = true;
    } else if (a == "-b" || a == "--sched-flags") {
      if (auto o = setOpt(p, kOptSchedFlags); !o.ok()) return o;
      st = value(&p.sched_flags);
    } else if (a == "-x" || a == "--u-threshold" || a == "-y" || a == "--l-threshold") {
      const bool upper = a == "-x" || a == "--u-threshold";
      if (auto o = setOpt(p, upper ? kOptUThreshold : kOptLThreshold); !o.ok()) return o;
      st = value(&v);
      uint32_t t;
      // ipvsadm: string_to_number(optarg, 0, INT_MAX).
      if (st.ok() && (!absl::SimpleAtoi(v, &t) || t > 2147483647u)) {
        return bad(absl::StrCat("illegal ", upper ? "u" : "l", "_threshold specified"));
      }
      if (st.ok()) (upper ? p.u_threshold : p.l_threshold) = t;
    } else if (a == "--thresholds") {
      st = setOpt(p, kOptThresholds);
      p.thresholds = true;
    } else if (a == "--start-daemon" || a == "--stop-daemon") {
      const bool start = a == "--start-daemon";
      st = setCmd(p, start ? Cmd::kStartDaemon : Cmd::kStopDaemon, a);
      if (st.ok()) st = value(&v);
      if (!st.ok()) return st;
      if (v == "master" || v == "backup") {
        p.role = v == "master" ? kSyncMaster : kSyncBackup;
      } else {
        return own(start ? "illegal start-daemon parameter specified"
                         : "illegal start_daemon specified");  // ipvsadm's words
      }
    } else if (a == "--daemon") {
      st = setOpt(p, kOptDaemon);
      p.daemon = true;
    } else if (a == "--mcast-interface") {
      if (auto o = setOpt(p, kOptMcastInterface); !o.ok()) return o;
      st = value(&p.sync.ifname);
      if (st.ok() && (p.sync.ifname.empty() || p.sync.ifname.size() >= 16)) {
        return own("illegal mcast-interface specified (an interface name, at most 15 characters)");
      }
    } else if (a == "--syncid" || a == "--mcast-port" || a == "--mcast-ttl" ||
               a == "--sync-maxlen") {
      // ipvsadm's string_to_number(optarg, min, max) for each.
      struct Num {
        const char* flag;
        Opt opt;
        uint32_t lo, hi;
        uint32_t SyncDaemon::*field;
        const char* what;
      };
      static constexpr Num kNums[] = {
          {"--syncid", kOptSyncId, 0, 255, &SyncDaemon::syncid, "syncid"},
          {"--mcast-port", kOptMcastPort, 1, 65535, &SyncDaemon::port, "mcast-port"},
          {"--mcast-ttl", kOptMcastTtl, 1, 255, &SyncDaemon::ttl, "mcast-ttl"},
          {"--sync-maxlen", kOptSyncMaxlen, 1, 65535 - 20 - 8, &SyncDaemon::maxlen, "sync-maxlen"}};
      const Num* n = nullptr;
      for (const Num& k : kNums) {
        if (a == k.flag) n = &k;
      }
      if (auto o = setOpt(p, n->opt); !o.ok()) return o;
      st = value(&v);
      uint32_t x;
      if (st.ok() && (!absl::SimpleAtoi(v, &x) || x < n->lo || x > n->hi)) {
        return own(absl::StrCat("illegal ", n->what, " specified"));
      }
      if (st.ok()) p.sync.*(n->field) = x;
    } else if (a == "--mcast-group") {
      if (auto o = setOpt(p, kOptMcastGroup); !o.ok()) return o;
      st = value(&v);
      if (!st.ok()) return st;
      // ipvsadm 1.31: an address with a colon is an IPv6 group (the daemon's sockets
      // then IPv6 ones), else IPv4; either must be multicast.
      auto g = IpAddr::parse(v);
      if (v.find(':') != std::string::npos) {
        if (!g.ok() || !g->isV6() || g->b[0] != 0xff) {
          return own("invalid IPv6 mcast-group `" + v + "'");
        }
      } else if (!g.ok() || !g->isV4() || (g->b[0] & 0xf0) != 0xe0) {
        return own("invalid IPv4 mcast-group `" + v + "'");
      }
      p.sync.group = *g;
    } else if (a == "-p" || a == "--persistent") {
      if (auto o = setOpt(p, kOptPersistent); !o.ok()) return o;
      // popt's optional argument: the next word, unless it is an option.
      uint32_t t = kDefaultPersistence;
      if (i + 1 < args.size() && !args[i + 1].empty() && args[i + 1][0] != '-') {
        // ipvsadm's parse_timeout(optarg, 1, MAX_TIMEOUT).
        if (!absl::SimpleAtoi(args[i + 1], &t) || t < 1 || t > kMaxSetTimeout) {
          return bad("invalid timeout value `" + args[i + 1] + "' specified");
        }
        ++i;
      }
      p.persistent = t;
    } else if (a == "-M" || a == "--netmask") {
      if (auto o = setOpt(p, kOptNetmask); !o.ok()) return o;
      st = value(&p.netmask);
    } else if (a == "-6" || a == "--ipv6") {
      // ipvsadm: an fwmark service of IPv6 (its real servers IPv6, -M a prefix length).
      if (auto s = applyIpv6Option(p.svc ? &*p.svc : nullptr); !s.ok()) return s;
    } else if (a == "-o" || a == "--ops") {
      st = setOpt(p, kOptOps);
      p.ops = true;
    } else if (a == "--pe") {
      return bad(
          absl::StrCat("option --pe: persistence engines (the kernel's one is sip, which reads SIP "
                       "Call-IDs) are not supported by meshlb; -p persists by client address"));
    } else if (a == "--persistent-conn") {
      st = setOpt(p, kOptPersistentConn);
      p.persistent_conn = true;
    } else if (a == "--tun-info") {
      st = setOpt(p, kOptTunInfo);
      p.tun_info = true;
    } else if (a == "--nosort") {
      st = setOpt(p, kOptNoSort);
      p.nosort = true;
    } else if (a == "--tun-type") {
      if (auto o = setOpt(p, kOptTunType); !o.ok()) return o;
      st = value(&v);
      if (!st.ok()) return st;
      if (v == "ipip") {
        p.tun_type = TunnelType::kIpip;
      } else if (v == "gue") {
        p.tun_type = TunnelType::kGue;
      } else if (v == "gre") {
        p.tun_type = TunnelType::kGre;
      } else {
        return bad("illegal tunnel type specified");
      }
    } else if (a == "--tun-port") {
      if (auto o = setOpt(p, kOptTunPort); !o.ok()) return o;
      st = value(&v);
      uint32_t port;
      if (st.ok() && (!absl::SimpleAtoi(v, &port) || port < 1 || port > 65535)) {
        return bad("illegal tunnel port specified");
      }
      if (st.ok()) p.tun_port = static_cast<uint16_t>(port);
    } else if (a == "--tun-nocsum" || a == "--tun-csum" || a == "--tun-remcsum") {
      const bool no = a == "--tun-nocsum", yes = a == "--tun-csum";
      st = setOpt(p, no ? kOptTunNoCsum : yes ? kOptTunCsum : kOptTunRemCsum);
      p.tun_csum = no ? TunnelCsum::kNone : yes ? TunnelCsum::kCsum : TunnelCsum::kRemote;
    } else if (a == "ops" && p.cmd == Cmd::kAddSvc) {
      // ipvsadm -S writes one-packet scheduling as a bare " ops" (its print_service_entry),
      // which its own -R cannot read back; meshlb's takes it, so that a save restores.
      st = setOpt(p, kOptOps);
      p.ops = true;
    } else {
      return bad(absl::StrCat("unknown option '", a, "'"));
    }
    if (!st.ok()) return st;
  }
  if (p.cmd == Cmd::kNone) {
    if (p.timeout || p.daemon) {
      p.cmd = Cmd::kList;
    } else {
      return bad("no command given (one of -A -E -D -C -R -S -a -e -d -L -Z --set)");
    }
  }
  if (auto st = checkOptions(p); !st.ok()) return st;
  return p;
}

// ipvsadm's parse_sched_flags: comma-separated, sh-* only for sh, mh-* only for mh.
absl::StatusOr<uint32_t> parseSchedFlags(const std::string& text, const std::string& sched) {
  uint32_t flags = 0;
  for (absl::string_view name : absl::StrSplit(text, ',')) {
    uint32_t bit = 0;
    absl::string_view only;
    if (name == "flag-1") {
      bit = kSchedFlag1;
    } else if (name == "flag-2") {
      bit = kSchedFlag2;
    } else if (name == "flag-3") {
      bit = kSchedFlag3;
    } else if (name == "sh-fallback" || name == "mh-fallback") {
      bit = kSchedFallback, only = name.substr(0, 2);
    } else if (name == "sh-port" || name == "mh-port") {
      bit = kSchedPort, only = name.substr(0, 2);
    } else {
      return own(absl::StrCat("invalid scheduler flag `", name, "'"));
    }
    if (!only.empty() && sched != only) {
      return own(absl::StrCat("incompatible scheduler flag `", name, "'"));
    }
    flags |= bit;
  }
  return flags;
}

// ipvsadm's print_sched_flags: the names the service's scheduler gives its flags.
std::string schedFlagNames(const Service& s) {
  const bool named = s.scheduler == "sh" || s.scheduler == "mh";
  std::vector<std::string> out;
  if (s.sched_flags & kSchedFlag1) out.push_back(named ? s.scheduler + "-fallback" : "flag-1");
  if (s.sched_flags & kSchedFlag2) out.push_back(named ? s.scheduler + "-port" : "flag-2");
  if (s.sched_flags & kSchedFlag3) out.push_back("flag-3");
  return absl::StrJoin(out, ",");
}

// ipvsadm's port_to_anyname: without -n, a TCP or UDP port's name in /etc/services
// (getservbyport), else its number.
std::string portName(uint16_t port, uint8_t protocol, bool numeric) {
  if (!numeric && (protocol == kProtoTcp || protocol == kProtoUdp)) {
    servent entry{}, *found = nullptr;
    char buf[1024];
    if (getservbyport_r(htons(port), protocol == kProtoTcp ? "tcp" : "udp", &entry, buf,
                        sizeof(buf), &found) == 0 &&
        found) {
      return found->s_name;
    }
  }
  return std::to_string(port);
}

// How a listing names addresses and ports: numbers (-n), or names as ipvsadm's
// addrport_to_anyname gives them (the address's host name, else its number). Names
// come from the daemon's resolver (IpvsDataplane::host_name), which never makes the
// control thread wait: an address it has not resolved yet is `missing`, and the
// listing is run again once it has.
struct Naming {
  bool numeric = true;
  const IpvsDataplane* dp = nullptr;
  mutable bool missing = false;
  std::string host(const IpAddr& a) const {
    if (!numeric && dp && dp->host_name) {
      if (auto name = dp->host_name(a)) return *name;
      missing = true;
    }
    return a.str();
  }
};
const Naming kNumeric;

std::string addrPort(const IpAddr& a, uint16_t port, uint8_t protocol = 0,
                     const Naming& n = kNumeric) {
  const std::string p = portName(port, protocol, n.numeric);
  return a.family == Family::kIpv6 ? absl::StrCat("[", n.host(a), "]:", p)
                                   : absl::StrCat(n.host(a), ":", p);
}

// ipvsadm's svc_name: "TCP  1.2.3.4:80" / "FWM  256" for listings, "-t 1.2.3.4:80" for rules.
std::string serviceName(const ServiceKey& k, bool rule, const Naming& n = kNumeric) {
  if (k.fwmark) {
    const bool v6 = k.addr.family == Family::kIpv6;
    return rule ? absl::StrCat("-f ", k.fwmark, v6 ? " -6" : "")
                : absl::StrCat("FWM  ", k.fwmark, v6 ? " IPv6" : "");
  }
  std::string vname = addrPort(k.addr, k.port, k.protocol, n);
  if (rule) return absl::StrCat(k.protocol == 6 ? "-t " : "-u ", vname);
  std::string s = absl::StrCat(k.protocol == 6 ? "TCP" : "UDP", "  ", vname);
  if (k.addr.family != Family::kIpv6 && s.size() > 33) s.resize(33);
  return s;
}

}  // namespace

std::string serviceRuleName(const ServiceKey& k) { return serviceName(k, true); }
absl::Status applyIpv6Option(ServiceKey* k) {
  if (!k || !k->fwmark) return absl::InvalidArgumentError("-6 used before -f");
  k->addr = IpAddr();
  k->addr.family = Family::kIpv6;
  return absl::OkStatus();
}
std::string serviceListName(const ServiceKey& k) { return serviceName(k, false); }
std::string addrPortName(const IpAddr& a, uint16_t port) { return addrPort(a, port); }

namespace {

const char* fwdName(ForwardMethod f) {
  switch (f) {
    case ForwardMethod::kMasq:
      return "Masq";
    case ForwardMethod::kTunnel:
      return "Tunnel";
    default:
      return "Route";
  }
}
const char* fwdSwitch(ForwardMethod f) {
  switch (f) {
    case ForwardMethod::kMasq:
      return "-m";
    case ForwardMethod::kTunnel:
      return "-i";
    default:
      return "-g";
  }
}

// ipvsadm sorts with libipvs' comparisons, which subtract unsigned fields into an
// int: two addresses (or marks) 2^31 or more apart compare the wrong way round
// (198.18.0.1 sorts before 10.0.0.1), and with three or more such the comparison is
// not even an order, so the result is whatever glibc's qsort (a top-down merge sort
// in Debian 12's glibc 2.36) makes of it. Listings byte for byte as ipvsadm's take
// the same comparisons and the same merge.
int wrapped(uint32_t a, uint32_t b) { return static_cast<int>(a - b); }

int addrCompare(const IpAddr& a, const IpAddr& b) {
  if (a.family != Family::kIpv6) return wrapped(ntohl(a.v4().v), ntohl(b.v4().v));
  const Ipv6Addr x = a.v6(), y = b.v6();
  int r = 0;
  for (int i = 0; !r && i < 4; ++i) {
    uint32_t wx, wy;
    std::memcpy(&wx, x.b + 4 * i, 4);
    std::memcpy(&wy, y.b + 4 * i, 4);
    r = wrapped(ntohl(wx), ntohl(wy));
  }
  return r;
}

// glibc's msort_with_tmp: halves (the first n/2), each sorted, merged taking from the
// first half while cmp <= 0.
template <class T, class Cmp>
void glibcMergeSort(std::vector<T>& v, Cmp cmp) {
  std::vector<T> tmp(v.size());
  auto sort = [&](auto& self, size_t lo, size_t n) -> void {
    if (n <= 1) return;
    const size_t n1 = n / 2;
    self(self, lo, n1);
    self(self, lo + n1, n - n1);
    size_t i = lo, j = lo + n1, k = 0;
    const size_t end1 = lo + n1, end2 = lo + n;
    while (i < end1 && j < end2) tmp[k++] = cmp(v[i], v[j]) <= 0 ? v[i++] : v[j++];
    while (i < end1) tmp[k++] = v[i++];
    while (j < end2) tmp[k++] = v[j++];
    std::copy(tmp.begin(), tmp.begin() + static_cast<ptrdiff_t>(n),
              v.begin() + static_cast<ptrdiff_t>(lo));
  };
  sort(sort, 0, v.size());
}

// libipvs ipvs_cmp_services: fwmark, family, protocol, address, port.
std::vector<const Service*> sortedServices(const ServiceModel& m) {
  std::vector<const Service*> v;
  for (const auto& [k, s] : m.services()) v.push_back(&s);
  glibcMergeSort(v, [](const Service* a, const Service* b) {
    const ServiceKey &x = a->key, &y = b->key;
    if (int r = wrapped(x.fwmark, y.fwmark)) return r;
    if (int r = static_cast<int>(x.addr.family) - static_cast<int>(y.addr.family)) return r;
    if (int r = static_cast<int>(x.protocol) - static_cast<int>(y.protocol)) return r;
    if (!x.fwmark) {
      if (int r = addrCompare(x.addr, y.addr)) return r;
    }
    return static_cast<int>(x.port) - static_cast<int>(y.port);
  });
  return v;
}

// libipvs ipvs_cmp_dests: address, port; over the kernel's list, newest first.
std::vector<RealServer> sortedDests(const Service& s) {
  std::vector<RealServer> d(s.dests.rbegin(), s.dests.rend());
  glibcMergeSort(d, [](const RealServer& a, const RealServer& b) {
    if (a.addr.family != b.addr.family) {
      return static_cast<int>(a.addr.family) - static_cast<int>(b.addr.family);
    }
    if (int r = addrCompare(a.addr, b.addr)) return r;
    return static_cast<int>(a.port) - static_cast<int>(b.port);
  });
  return d;
}

enum class View { kList, kRules, kStats, kRate, kThresholds, kPersistConn, kTunInfo };

// ipvsadm's " persistent 300 mask 255.255.255.0" (-L) or " -p 300 -M 255.255.255.0" (-S);
// " ops" follows, inside the persistent part for -L and after it for -S, as ipvsadm
// prints them (-S without a dash: ipvsadm's own -R cannot read it back, meshlb's can).
std::string persistence(const Service& s, bool rule) {
  std::string out;
  const bool v6 = s.key.addr.family == Family::kIpv6;
  if (s.persistent) {
    absl::StrAppend(&out, rule ? " -p " : " persistent ", s.persistent);
    if (v6 && s.netmask != 128) absl::StrAppend(&out, rule ? " -M " : " mask ", s.netmask);
    if (!v6 && s.netmask != 0xffffffff) {
      in_addr mask{htonl(s.netmask)};
      absl::StrAppend(&out, rule ? " -M " : " mask ", inet_ntoa(mask));
    }
    if (!rule && s.ops) out += " ops";
  }
  if (rule && s.ops) out += " ops";
  return out;
}

// ipvsadm --tun-info's column: "ipip", "gue:PORT:FLAGS", "gre:FLAGS", or "n/a".
std::string tunnelInfo(const RealServer& d) {
  static constexpr const char* kFlags[] = {"-c", "+c", "r+c"};
  if (d.fwd != ForwardMethod::kTunnel) return "n/a";
  const char* flags = kFlags[static_cast<int>(d.tun_csum)];
  switch (d.tun_type) {
    case TunnelType::kGue:
      return absl::StrCat("gue:", d.tun_port, ":", flags);
    case TunnelType::kGre:
      return absl::StrCat("gre:", flags);
    default:
      return "ipip";
  }
}

// ipvsadm -S's tunnel options after "-i -w W" (print_tunnel_rule).
std::string tunnelRule(const RealServer& d) {
  static constexpr const char* kFlags[] = {"--tun-nocsum", "--tun-csum", "--tun-remcsum"};
  if (d.fwd != ForwardMethod::kTunnel) return "";
  const char* flags = kFlags[static_cast<int>(d.tun_csum)];
  switch (d.tun_type) {
    case TunnelType::kGue:
      return absl::StrCat(" --tun-type gue --tun-port ", d.tun_port, " ", flags);
    case TunnelType::kGre:
      return absl::StrCat(" --tun-type gre ", flags);
    default:
      return " --tun-type ipip";
  }
}

// ipvsadm's print_largenum: 9 columns, scaled K/M/G/T past 100 million unless --exact.
std::string largeNum(uint64_t i, bool exact) {
  if (exact) {
    const std::string d = std::to_string(i);
    return absl::StrFormat("%*u", d.size() <= 8 ? 9 : static_cast<int>(d.size()) + 1, i);
  }
  if (i < 100000000ull) return absl::StrFormat("%9u", i);
  if (i < 1000000000ull) return absl::StrFormat("%8uK", i / 1000);
  if (i < 100000000000ull) return absl::StrFormat("%8uM", i / 1000000);
  if (i < 100000000000000ull) return absl::StrFormat("%8uG", i / 1000000000ull);
  return absl::StrFormat("%8uT", i / 1000000000000ull);
}

std::string numbers(const DestCounters& c, View v, bool exact) {
  const uint64_t stats[] = {c.conns, c.inpkts, c.outpkts, c.inbytes, c.outbytes};
  const uint64_t rates[] = {c.cps, c.inpps, c.outpps, c.inbps, c.outbps};
  std::string out;
  for (uint64_t n : v == View::kStats ? stats : rates) out += largeNum(n, exact);
  return out;
}

void printService(std::string& out, const Service& s, View view, bool exact, const Naming& numeric,
                  bool sort, const IpvsDataplane& dp) {
  const bool rule = view == View::kRules;
  const std::string name = serviceName(s.key, rule, numeric);
  const auto dests =
      sort ? sortedDests(s) : std::vector<RealServer>(s.dests.rbegin(), s.dests.rend());
  std::vector<DestCounters> counters(dests.size());
  DestCounters total;
  if (dp.counters) {
    for (size_t i = 0; i < dests.size(); ++i) {
      counters[i] = dp.counters(dests[i].id);
      const DestCounters& c = counters[i];
      // A service's figures are its real servers' summed.
      total.conns += c.conns, total.inpkts += c.inpkts, total.outpkts += c.outpkts;
      total.inbytes += c.inbytes, total.outbytes += c.outbytes;
      total.cps += c.cps, total.inpps += c.inpps, total.outpps += c.outpps;
      total.inbps += c.inbps, total.outbps += c.outbps;
    }
  }
  if (dp.service_counters) {  // the service's own counts; rates stay its servers' summed
    const DestCounters own = dp.service_counters(s);
    total.conns = own.conns, total.inpkts = own.inpkts, total.outpkts = own.outpkts;
    total.inbytes = own.inbytes, total.outbytes = own.outbytes;
  }
  switch (view) {
    case View::kRules:
      absl::StrAppend(&out, "-A ", name, " -s ", s.scheduler);
      if (s.sched_flags) absl::StrAppend(&out, " -b ", schedFlagNames(s));
      absl::StrAppend(&out, persistence(s, true), "\n");
      break;
    case View::kThresholds:  // ipvsadm prints the service as -L does
    case View::kPersistConn:
    case View::kTunInfo:
    case View::kList:
      absl::StrAppend(&out, name, " ", s.scheduler);
      if (s.sched_flags) absl::StrAppend(&out, " (", schedFlagNames(s), ")");
      absl::StrAppend(&out, persistence(s, false), "\n");
      break;
    default:
      absl::StrAppend(&out, absl::StrFormat("%-33s", name), numbers(total, view, exact), "\n");
  }
  for (size_t i = 0; i < dests.size(); ++i) {
    const RealServer& d = dests[i];
    std::string dname = addrPort(d.addr, d.port, s.key.protocol, numeric);
    if (rule) {
      absl::StrAppend(&out, "-a ", name, " -r ", dname, " ", fwdSwitch(d.fwd), " -w ", d.weight,
                      tunnelRule(d), "\n");
      continue;
    }
    if (s.key.addr.family != Family::kIpv6 && d.addr.family != Family::kIpv6 && dname.size() > 28)
      dname.resize(28);
    if (view == View::kList) {
      absl::StrAppend(&out,
                      absl::StrFormat("  -> %-28s %-7s %-6d %-10u %-10u\n", dname, fwdName(d.fwd),
                                      d.liveWeight(), counters[i].active, counters[i].inactive));
    } else if (view == View::kPersistConn) {
      absl::StrAppend(&out, absl::StrFormat("  -> %-28s %-9u %-11u %-10u %-10u\n", dname,
                                            d.liveWeight(), counters[i].persistconns,
                                            counters[i].active, counters[i].inactive));
    } else if (view == View::kTunInfo) {
      absl::StrAppend(&out, absl::StrFormat("  -> %-28s %-7s %-13s %-6d %-10u %-10u\n", dname,
                                            fwdName(d.fwd), tunnelInfo(d), d.liveWeight(),
                                            counters[i].active, counters[i].inactive));
    } else if (view == View::kThresholds) {
      absl::StrAppend(&out,
                      absl::StrFormat("  -> %-28s %-10u %-10u %-10u %-10u\n", dname, d.u_threshold,
                                      d.l_threshold, counters[i].active, counters[i].inactive));
    } else {
      absl::StrAppend(&out, absl::StrFormat("  -> %-28s", dname), numbers(counters[i], view, exact),
                      "\n");
    }
  }
}

std::string title(View v) {
  if (v == View::kThresholds) {
    return absl::StrFormat("%-33s %-10s %-10s %-10s %-10s\n  -> RemoteAddress:Port\n",
                           "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn",
                           "InActConn");
  }
  if (v == View::kPersistConn) {
    return absl::StrFormat("%-33s %-9s %-11s %-10s %-10s\n  -> RemoteAddress:Port\n",
                           "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn",
                           "InActConn");
  }
  if (v == View::kTunInfo) {
    return "Prot LocalAddress:Port Scheduler Flags\n"
           "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n";
  }
  if (v == View::kList) {
    return "Prot LocalAddress:Port Scheduler Flags\n"
           "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n";
  }
  const bool stats = v == View::kStats;
  return absl::StrFormat("%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n",
                         "Prot LocalAddress:Port", stats ? "Conns" : "CPS",
                         stats ? "InPkts" : "InPPS", stats ? "OutPkts" : "OutPPS",
                         stats ? "InBytes" : "InBPS", stats ? "OutBytes" : "OutBPS");
}

absl::StatusOr<std::string> execute(ServiceModel& m, const Parsed& p, const std::string& input,
                                    bool nested, const IpvsDataplane& dp);

constexpr const char* kTunnelNames[] = {"ipip", "gue", "gre"};

// ipvsadm's checks of the tunnel options: only with -i, and its tunnel_types_v_options
// table (tun-port, tun-nocsum, tun-csum, tun-remcsum per type).
absl::Status checkTunnel(const Parsed& p, ForwardMethod fwd) {
  constexpr Opt kTunOpts[] = {kOptTunPort, kOptTunNoCsum, kOptTunCsum, kOptTunRemCsum};
  constexpr const char* kTable[] = {"xxxx", "+111", "x11x"};  // ipip, gue, gre
  uint64_t tun = 1ull << kOptTunType;
  for (Opt o : kTunOpts) tun |= 1ull << o;
  if ((p.opts & tun) && fwd != ForwardMethod::kTunnel) {
    return own("Tunnel options conflict with forward method");
  }
  const int type = static_cast<int>(p.tun_type);
  int last = -1;
  for (int j = 0; j < 4; ++j) {
    const Opt o = kTunOpts[j];
    const char rule = kTable[type][j];
    if (!(p.opts & (1ull << o))) {
      if (rule == '+') {
        return own(absl::StrCat("You need to supply the '", kOptNames[o], "' option for the '",
                                kTunnelNames[type], "' tunnel type"));
      }
      continue;
    }
    if (rule == 'x') {
      return own(absl::StrCat("Illegal '", kOptNames[o], "' option with the '", kTunnelNames[type],
                              "' tunnel type"));
    }
    if (rule == '1') {
      if (last >= 0) {
        return own(absl::StrCat("The option '", kOptNames[o], "' conflicts with the '",
                                kOptNames[last], "' option in the '", kTunnelNames[type],
                                "' tunnel type"));
      }
      last = o;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> restore(ServiceModel& m, const std::string& input) {
  ServiceModel::Transaction all_or_nothing(m);
  int lineno = 0;
  for (absl::string_view line : absl::StrSplit(input, '\n')) {
    ++lineno;
    std::vector<std::string> words =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    // As ipvsadm's restore reads a line: the word "ipvsadm" is dropped wherever it is
    // (so an `ipvsadm -S` turned into a script, or one with the prefix, restores).
    std::erase(words, "ipvsadm");
    if (words.empty() || words[0][0] == '#') continue;
    auto parsed = parse(words);
    absl::StatusOr<std::string> r =
        parsed.ok() ? execute(m, *parsed, "", true, IpvsDataplane{})
                    : absl::StatusOr<std::string>(withExitStatus(parsed.status(), 2));
    if (!r.ok()) {
      return withExitStatus(
          absl::Status(r.status().code(), absl::StrCat("line ", lineno, ": ", r.status().message(),
                                                       "; nothing was restored")),
          exitStatusOf(kernelsUnlessOwn(r.status())));
    }
  }
  all_or_nothing.commit();
  return std::string();
}

// ipvsadm -L and -S (readOnly()).
absl::StatusOr<std::string> list(const ServiceModel& m, const Parsed& p, const IpvsDataplane& dp,
                                 const Naming& naming) {
  const View view = p.cmd == Cmd::kSave ? View::kRules
                    : p.stats           ? View::kStats
                    : p.rate            ? View::kRate
                    : p.thresholds      ? View::kThresholds
                    : p.persistent_conn ? View::kPersistConn
                    : p.tun_info        ? View::kTunInfo
                                        : View::kList;
  if (p.stats && p.rate) return own("--stats and --rate exclude each other");
  if (p.connections) {
    // ipvsadm's list_conn / print_conn (persistence templates included, as the
    // kernel lists them: client port 0, protocol IP for a firewall mark's).
    std::string out = "IPVS connection entries\n";
    out += p.persistent_conn
               ? absl::StrFormat("pro expire %-11s %-18s %-18s %-18s %-16s %s\n", "state", "source",
                                 "virtual", "destination", "pe name", "pe_data")
               : absl::StrFormat("pro expire %-11s %-18s %-18s %s\n", "state", "source", "virtual",
                                 "destination");
    absl::StatusOr<std::vector<ConnEntry>> conns = std::vector<ConnEntry>{};
    if (dp.connections) conns = dp.connections();
    if (!conns.ok()) return conns.status();  // kUnavailable: the dump is not in yet
    for (const ConnEntry& c : *conns) {
      absl::StrAppend(
          &out, absl::StrFormat("%-3s %-6s %-11s %-18s %-18s %s\n",
                                c.protocol == kProtoTcp   ? "TCP"
                                : c.protocol == kProtoUdp ? "UDP"
                                                          : "IP",
                                absl::StrFormat("%02u:%02u", c.expires_s / 60, c.expires_s % 60),
                                c.state, addrPort(c.client, c.cport, c.protocol, naming),
                                addrPort(c.virt, c.vport, c.protocol, naming),
                                addrPort(c.dest, c.dport, c.protocol, naming)));
    }
    return out;
  }
  // --persistent-conn's counts are gathered once for the listing.
  struct Listing {
    const std::function<void(bool)>* hook;
    ~Listing() {
      if (hook) (*hook)(false);
    }
  } listing{view == View::kPersistConn && dp.listing ? &dp.listing : nullptr};
  if (listing.hook) (*listing.hook)(true);
  if (p.timeout) {
    const auto& t = m.timeouts();
    return absl::StrCat("Timeout (tcp tcpfin udp): ", t.tcp, " ", t.tcpfin, " ", t.udp, "\n");
  }
  if (p.daemon) {  // ipvsadm 1.31's list_daemon(), with what the kernel fills in
    std::string out;
    for (SyncRole role : {kSyncMaster, kSyncBackup}) {
      const SyncDaemon& d = m.syncDaemons()[role];
      if (!d.running) continue;
      absl::StrAppend(&out, role == kSyncMaster ? "master" : "backup",
                      " sync daemon (mcast=", d.ifname, ", syncid=", d.syncid,
                      ", maxlen=", d.maxlen, ", group=", d.group.str(), ", port=", d.port,
                      ", ttl=", d.ttl, ")\n");
    }
    return out;
  }
  std::string out;
  if (p.svc) {
    auto it = m.services().find(*p.svc);
    if (it == m.services().end()) {
      return withExitStatus(absl::NotFoundError("No such service"), 1);  // list_service
    }
    if (view != View::kRules) out += title(view);
    printService(out, it->second, view, p.exact, naming, !p.nosort, dp);
    return out;
  }
  if (view != View::kRules) {
    out = "IP Virtual Server version 1.2.1 (size=4096)\n";
    out += title(view);
  }
  std::vector<const Service*> services;
  if (p.nosort) {  // --nosort: in the order they were added (their slots' order)
    for (const auto& [k, s] : m.services()) services.push_back(&s);
    std::sort(services.begin(), services.end(),
              [](const Service* a, const Service* b) { return a->slot < b->slot; });
  } else {
    services = sortedServices(m);
  }
  for (const Service* s : services) {
    printService(out, *s, view, p.exact, naming, !p.nosort, dp);
  }
  return out;
}

// The commands that change no configuration: listings, -S, and -Z (counters).
absl::StatusOr<std::string> readOnly(const ServiceModel& m, const Parsed& p,
                                     const IpvsDataplane& dp) {
  switch (p.cmd) {
    case Cmd::kHelp:
      return std::string(kIpvsadmUsage);
    case Cmd::kZero: {
      // The counters of one service and its real servers, or of all.
      if (p.svc && m.services().find(*p.svc) == m.services().end()) {
        return absl::NotFoundError("No such service");
      }
      for (const auto& [k, svc] : m.services()) {
        if (p.svc && k != *p.svc) continue;
        std::vector<BackendId> ids;
        for (const RealServer& d : svc.dests) ids.push_back(d.id);
        if (dp.zero) dp.zero(svc.slot, ids);
      }
      return std::string();
    }
    case Cmd::kSave:
    case Cmd::kList: {
      const Naming naming{p.numeric, &dp};
      auto out = list(m, p, dp, naming);
      // Some address has no name yet: the daemon runs the listing again once it has.
      if (out.ok() && naming.missing) return absl::UnavailableError("resolving host names");
      return out;
    }
    default:
      break;
  }
  return bad("not a listing");
}

absl::StatusOr<std::string> execute(ServiceModel& m, const Parsed& p, const std::string& input,
                                    bool nested, const IpvsDataplane& dp) {
  auto needSvc = [&]() -> absl::Status {
    return p.svc ? absl::OkStatus() : own("a service is required (-t, -u or -f)");
  };
  switch (p.cmd) {
    case Cmd::kAddSvc:
    case Cmd::kEditSvc: {
      if (auto s = needSvc(); !s.ok()) return s;
      // As ipvsadm does for -A and -E alike: no -s is its default, wlc.
      ServiceOptions o;
      o.scheduler = p.have_scheduler ? p.scheduler : kDefaultScheduler;
      if (!p.sched_flags.empty()) {
        auto f = parseSchedFlags(p.sched_flags, o.scheduler);
        if (!f.ok()) return f.status();
        o.sched_flags = *f;
      }
      o.persistent = p.persistent.value_or(0);
      const bool v6 = p.svc->addr.family == Family::kIpv6;  // -f MARK -6 too
      o.netmask = v6 ? 128 : 0xffffffff;
      if (!p.netmask.empty()) {
        if (v6) {  // ipvsadm: a prefix length, 1 to 128
          if (!absl::SimpleAtoi(p.netmask, &o.netmask) || o.netmask < 1 || o.netmask > 128) {
            return own("illegal ipv6 netmask specified");
          }
        } else {
          in_addr mask{};
          if (inet_aton(p.netmask.c_str(), &mask) == 0) {
            return own("illegal virtual server persistent mask specified");
          }
          o.netmask = ntohl(mask.s_addr);
        }
      }
      o.ops = p.ops;
      if (o.ops && !p.svc->fwmark && p.svc->protocol != kProtoUdp) {
        return own("One-Packet Scheduling is only for UDP virtual services");
      }
      if (auto s = checkServiceAddress(*p.svc, o.persistent != 0, dp); !s.ok()) return s;
      auto s = p.cmd == Cmd::kAddSvc ? m.addService(*p.svc, o) : m.editService(*p.svc, o);
      if (!s.ok()) return s;
      return std::string();
    }
    case Cmd::kDelSvc: {
      if (auto s = needSvc(); !s.ok()) return s;
      if (auto s = m.deleteService(*p.svc); !s.ok()) return s;
      return std::string();
    }
    case Cmd::kClear:
      m.clear();
      return std::string();
    case Cmd::kAddDest:
    case Cmd::kEditDest:
    case Cmd::kDelDest: {
      if (auto s = needSvc(); !s.ok()) return s;
      if (!p.real) return own("a real server is required (-r)");
      const uint16_t port = p.real->second ? *p.real->second : (p.svc->fwmark ? 0 : p.svc->port);
      if (p.cmd == Cmd::kDelDest) {
        if (auto s = m.deleteDest(*p.svc, p.real->first, port); !s.ok()) return s;
        return std::string();
      }
      RealServer d;
      d.addr = p.real->first;
      d.port = port;
      d.weight = p.weight.value_or(1);
      d.u_threshold = p.u_threshold, d.l_threshold = p.l_threshold;
      if (d.l_threshold > d.u_threshold) {  // the kernel's ip_vs_add_dest/edit_dest: -ERANGE
        return bad(absl::StrCat("lower threshold ", d.l_threshold,
                                " is higher than the upper threshold ", d.u_threshold));
      }
      // ipvsadm's default forwarding method is direct routing (-g).
      d.fwd = p.fwd.value_or(ForwardMethod::kRoute);
      if (auto s = checkTunnel(p, d.fwd); !s.ok()) return s;
      if (d.fwd == ForwardMethod::kTunnel) {
        d.tun_type = p.tun_type, d.tun_port = p.tun_port, d.tun_csum = p.tun_csum;
      }
      // As the kernel does (ip_vs_add_dest): only masquerading rewrites the port, so
      // any other method's real server has the service's port.
      if (d.fwd != ForwardMethod::kMasq) d.port = p.svc->fwmark ? 0 : p.svc->port;
      // An fwmark service's family is IPv4 unless -6 made it IPv6 (the kernel refuses
      // a real server of the other family, but through a tunnel meshlb does not carry).
      const Family svc_family =
          p.svc->fwmark && p.svc->addr.family != Family::kIpv6 ? Family::kIpv4 : p.svc->addr.family;
      if (d.addr.family != svc_family) {
        return own("real server and service address families differ");
      }
      if (auto s = checkRealServer(m, d.addr); !s.ok()) return s;
      auto s = p.cmd == Cmd::kAddDest ? m.addDest(*p.svc, d) : m.editDest(*p.svc, d);
      if (!s.ok()) return s;
      return std::string();
    }
    case Cmd::kSet: {
      // The kernel refuses what its jiffies cannot hold (ip_vs_set_timeout: INT_MAX / HZ,
      // HZ = 1000); so does meshlb, whose flow deadlines are 31-bit milliseconds.
      for (uint32_t v : p.set_values) {
        if (v > kMaxKernelTimeout) {
          return bad("Invalid argument: timeout " + std::to_string(v) + " s is above " +
                     std::to_string(kMaxKernelTimeout) + " s (INT_MAX / HZ)");
        }
      }
      IpvsTimeouts t = m.timeouts();
      if (p.set_values[0]) t.tcp = p.set_values[0];
      if (p.set_values[1]) t.tcpfin = p.set_values[1];
      if (p.set_values[2]) t.udp = p.set_values[2];
      m.setTimeouts(t);
      return std::string();
    }
    case Cmd::kStartDaemon: {
      // start_sync_thread(): one daemon of each role; the interface's MTU sizes a
      // backup's messages (a master's stay within 1500).
      if (m.syncDaemons()[p.role].running) return bad("Daemon has already run");
      SyncDaemon d = p.sync;
      d.running = true;
      if (d.ifname.empty()) d.ifname = "eth0";  // ipvsadm's DEF_MCAST_IFN
      uint32_t mtu = 1500;
      if (dp.interface_mtu) {
        auto found = dp.interface_mtu(d.ifname);
        if (!found) return bad("No such device");
        mtu = *found;
      }
      const uint32_t kHeaders = (d.group.isV6() ? 40 : 20) + 8;  // the group's IP and UDP
      const bool backup = p.role == kSyncBackup;
      if (d.maxlen) {
        d.maxlen = std::clamp(d.maxlen, backup ? 1024u : 1u, 65535u - kHeaders);
      } else {
        d.maxlen = (backup ? std::clamp(mtu, 1500u, 65535u) : 1500u) - kHeaders;
      }
      m.setSyncDaemon(p.role, d);
      return std::string();
    }
    case Cmd::kStopDaemon:
      if (!m.syncDaemons()[p.role].running) return bad("No daemon is running");
      m.setSyncDaemon(p.role, SyncDaemon{});
      return std::string();
    case Cmd::kRestore:
      if (nested) return own("-R cannot be nested");
      return restore(m, input);
    case Cmd::kZero:
    case Cmd::kSave:
    case Cmd::kList:
    case Cmd::kHelp:
      return readOnly(m, p, dp);
    case Cmd::kNone:
      break;
  }
  return bad("no command given");
}

}  // namespace

bool ipvsadmReadsOnly(const std::vector<std::string>& args) {
  auto p = parse(args);
  return p.ok() && (p->cmd == Cmd::kList || p->cmd == Cmd::kSave || p->cmd == Cmd::kZero ||
                    p->cmd == Cmd::kHelp);
}

std::string syncDaemonRule(SyncRole role, const SyncDaemon& d) {
  return absl::StrCat("--start-daemon ", role == kSyncMaster ? "master" : "backup",
                      " --mcast-interface ", d.ifname, " --syncid ", d.syncid, " --sync-maxlen ",
                      d.maxlen, " --mcast-group ", d.group.str(), " --mcast-port ", d.port,
                      " --mcast-ttl ", d.ttl);
}

std::vector<std::string> ipvsadmThresholdRules(const ServiceModel& model) {
  std::vector<std::string> out;
  for (const Service* s : sortedServices(model)) {
    for (const RealServer& d : sortedDests(*s)) {
      if (!d.u_threshold && !d.l_threshold) continue;
      out.push_back(absl::StrCat("-e ", serviceName(s->key, true), " -r ", addrPort(d.addr, d.port),
                                 " ", fwdSwitch(d.fwd), " -w ", d.weight, " -x ", d.u_threshold,
                                 " -y ", d.l_threshold));
    }
  }
  return out;
}

bool ipvsadmRestores(const std::vector<std::string>& args) {
  auto p = parse(args);
  return p.ok() && p->cmd == Cmd::kRestore;
}

absl::StatusOr<std::string> listIpvsadm(const ServiceModel& model,
                                        const std::vector<std::string>& args,
                                        const IpvsDataplane& dp) {
  auto p = parse(args);
  if (!p.ok()) return withExitStatus(p.status(), 2);
  auto out = readOnly(model, *p, dp);
  if (!out.ok() && out.status().code() != absl::StatusCode::kUnavailable) {
    return kernelsUnlessOwn(out.status());
  }
  return out;
}

absl::StatusOr<std::string> runIpvsadm(ServiceModel& model, const std::vector<std::string>& args,
                                       const std::string& input, const IpvsDataplane& dp) {
  auto p = parse(args);
  if (!p.ok()) return withExitStatus(p.status(), 2);
  auto out = execute(model, *p, input, false, dp);
  if (!out.ok() && out.status().code() != absl::StatusCode::kUnavailable) {
    return kernelsUnlessOwn(out.status());
  }
  return out;
}

}  // namespace meshlb
