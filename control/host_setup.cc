#include "host_setup.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/neighbour.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/tc.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace meshlb {

std::string readSysctl(const std::string& name, const std::string& proc) {
  std::ifstream in(absl::StrCat(proc, "/sys/", name));
  std::string v;
  if (!std::getline(in, v)) return "";
  return std::string(absl::StripAsciiWhitespace(v));
}

absl::Status writeSysctl(const std::string& name, const std::string& value) {
  const std::string path = absl::StrCat("/proc/sys/", name);
  std::ofstream out(path);
  out << value << '\n';
  out.flush();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", value, " to ", path));
  return absl::OkStatus();
}

namespace {

nl_sock* routeSocket(absl::Status* st) {
  nl_sock* s = nl_socket_alloc();
  int err = s ? nl_connect(s, NETLINK_ROUTE) : -NLE_NOMEM;
  if (err < 0) {
    if (s) nl_socket_free(s);
    *st = absl::InternalError(absl::StrCat("netlink: ", nl_geterror(err)));
    return nullptr;
  }
  return s;
}

// The IPv4 addresses on `iface`, as "A.B.C.D/LEN".
std::vector<std::string> ipv4Addresses(const std::string& iface) {
  std::vector<std::string> out;
  ifaddrs* all = nullptr;
  if (getifaddrs(&all) != 0) return out;
  for (ifaddrs* a = all; a; a = a->ifa_next) {
    if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET || iface != a->ifa_name) continue;
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, text, sizeof text);
    int len = 0;
    if (a->ifa_netmask) {
      len = __builtin_popcount(reinterpret_cast<sockaddr_in*>(a->ifa_netmask)->sin_addr.s_addr);
    }
    out.push_back(absl::StrCat(text, "/", len));
  }
  freeifaddrs(all);
  return out;
}

// The clsact qdisc of `ifindex` (its filters go with it).
rtnl_qdisc* clsact(int ifindex) {
  rtnl_qdisc* q = rtnl_qdisc_alloc();
  rtnl_tc_set_ifindex(TC_CAST(q), ifindex);
  rtnl_tc_set_parent(TC_CAST(q), TC_H_CLSACT);
  rtnl_tc_set_handle(TC_CAST(q), TC_H_MAKE(TC_H_CLSACT, 0));
  rtnl_tc_set_kind(TC_CAST(q), "clsact");
  return q;
}

// A classifier program that drops every packet (tc's direct action: TC_ACT_SHOT).
int dropProgram() {
  const bpf_insn insns[] = {
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, TC_ACT_SHOT},  // r0 = TC_ACT_SHOT
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},                             // return r0
  };
  static const char kLicense[] = "GPL";
  bpf_attr attr{};
  attr.prog_type = BPF_PROG_TYPE_SCHED_CLS;
  attr.insns = reinterpret_cast<uint64_t>(insns);
  attr.insn_cnt = 2;
  attr.license = reinterpret_cast<uint64_t>(kLicense);
  std::strncpy(attr.prog_name, "meshlb_drop", sizeof attr.prog_name - 1);
  return static_cast<int>(syscall(__NR_bpf, BPF_PROG_LOAD, &attr, sizeof attr));
}

// `tc qdisc replace dev IF clsact; tc filter add dev IF ingress bpf da obj DROP`: an
// ingress classifier that drops everything (cls_bpf, in every distribution kernel,
// where cls_matchall and act_gact often are modules or missing).
absl::Status dropIngress(nl_sock* sock, int ifindex, const std::string& iface) {
  rtnl_qdisc* q = clsact(ifindex);
  rtnl_qdisc_delete(sock, q);  // a crashed meshlbd's (or none)
  int err = rtnl_qdisc_add(sock, q, NLM_F_CREATE | NLM_F_EXCL);
  rtnl_qdisc_put(q);
  std::string what = nl_geterror(err);
  if (err >= 0) {
    const int prog = dropProgram();
    if (prog < 0) {
      err = -1;
      what = absl::StrCat("loading the drop program: ", std::strerror(errno));
    } else {
      nl_msg* msg = nlmsg_alloc_simple(RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL);
      tcmsg tc{};
      tc.tcm_family = AF_UNSPEC;
      tc.tcm_ifindex = ifindex;
      tc.tcm_parent = TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS);
      tc.tcm_info = TC_H_MAKE(1u << 16, htons(ETH_P_ALL));  // priority 1, every protocol
      err = msg ? nlmsg_append(msg, &tc, sizeof tc, NLMSG_ALIGNTO) : -NLE_NOMEM;
      if (err >= 0) err = nla_put_string(msg, TCA_KIND, "bpf");
      nlattr* opts = err >= 0 ? nla_nest_start(msg, TCA_OPTIONS) : nullptr;
      if (!opts) err = -NLE_NOMEM;
      if (err >= 0) err = nla_put_u32(msg, TCA_BPF_FD, static_cast<uint32_t>(prog));
      if (err >= 0) err = nla_put_string(msg, TCA_BPF_NAME, "meshlb_drop");
      if (err >= 0) err = nla_put_u32(msg, TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT);
      if (err >= 0) nla_nest_end(msg, opts);
      if (err >= 0) {
        err = nl_send_sync(sock, msg);  // frees msg
      } else if (msg) {
        nlmsg_free(msg);
      }
      if (err < 0) what = nl_geterror(err);
      close(prog);  // the filter holds the program
    }
  }
  if (err < 0) {
    return absl::InternalError(absl::StrCat("data port ", iface,
                                            ": cannot keep the kernel off it (a tc clsact "
                                            "ingress drop; the kernel needs sch_ingress and "
                                            "cls_bpf): ",
                                            what));
  }
  return absl::OkStatus();
}

// `ip link set IF up`: af_packet and af_xdp ports do not bring their interface up.
absl::Status bringUp(const std::string& iface) {
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, iface.c_str(), IFNAMSIZ - 1);
  bool ok = fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &ifr) == 0;
  if (ok && !(ifr.ifr_flags & IFF_UP)) {
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    ok = ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
  }
  const int e = errno;
  if (fd >= 0) close(fd);
  if (!ok) {
    return absl::InternalError(
        absl::StrCat("data port ", iface, ": cannot bring it up: ", std::strerror(e)));
  }
  return absl::OkStatus();
}

}  // namespace

PortGuard::~PortGuard() {
  if (sock_) nl_socket_free(sock_);
}

absl::Status PortGuard::guard(const std::string& iface, bool drop_ingress) {
  const int ifindex = static_cast<int>(if_nametoindex(iface.c_str()));
  if (ifindex == 0)
    return absl::NotFoundError(absl::StrCat("data port ", iface, ": no such interface"));
  if (auto addrs = ipv4Addresses(iface); !addrs.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "data port ", iface, " has address ", addrs[0],
        ": the kernel would answer for it beside meshlbd; addresses belong on the port's twin "
        "lbN (ip addr del ",
        addrs[0], " dev ", iface, ")"));
  }
  Guarded g{iface, ifindex, false};
  const std::string v6 = absl::StrCat("net/ipv6/conf/", iface, "/disable_ipv6");
  if (const std::string now = readSysctl(v6); !now.empty() && now != "1") {
    if (auto st = writeSysctl(v6, "1"); !st.ok()) return st;
  }
  if (auto st = bringUp(iface); !st.ok()) return st;
  if (drop_ingress) {
    if (!sock_) {
      absl::Status st;
      if (!(sock_ = routeSocket(&st))) return st;
    }
    if (auto st = dropIngress(sock_, ifindex, iface); !st.ok()) return st;
    g.dropped = true;
  }
  guarded_.push_back(std::move(g));
  return absl::OkStatus();
}

void PortGuard::restore() {
  for (const Guarded& g : guarded_) {
    if (static_cast<int>(if_nametoindex(g.iface.c_str())) != g.ifindex) continue;  // gone
    if (g.dropped && sock_) {
      rtnl_qdisc* q = clsact(g.ifindex);
      rtnl_qdisc_delete(sock_, q);
      rtnl_qdisc_put(q);
    }
  }
  guarded_.clear();
}

absl::Status configureTwin(const std::string& twin) {
  static constexpr std::pair<const char*, const char*> kSettings[] = {
      {"forwarding", "1"}, {"rp_filter", "0"}, {"accept_local", "1"}, {"send_redirects", "0"}};
  for (const auto& [name, value] : kSettings) {
    if (auto st = writeSysctl(absl::StrCat("net/ipv4/conf/", twin, "/", name), value); !st.ok()) {
      return absl::InternalError(absl::StrCat("kernel twin ", twin, ": ", st.message()));
    }
  }
  // IPv6 (where the host has it): the twin forwards, as a router's interface does.
  const std::string v6 = absl::StrCat("net/ipv6/conf/", twin, "/forwarding");
  if (!readSysctl(v6).empty()) {
    if (auto st = writeSysctl(v6, "1"); !st.ok()) {
      return absl::InternalError(absl::StrCat("kernel twin ", twin, ": ", st.message()));
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> hostLacks(const HostFacts& facts, const std::string& proc,
                                   const std::string& sys) {
  std::vector<std::string> out;
  const std::string rp = readSysctl("net/ipv4/conf/all/rp_filter", proc);
  if (!rp.empty() && rp != "0") {
    out.push_back(absl::StrCat(
        "host: net.ipv4.conf.all.rp_filter=", rp,
        " overrides the twins' 0: packets whose next hop is not resolved yet are dropped by the "
        "kernel instead of forwarded; set it to 0 (namespace-wide, so meshlbd leaves it)"));
  }
  // IPv6 forwarding is namespace-wide (ip6_forward reads only "all"): without it, an
  // IPv6 packet whose next hop the mirror has not resolved yet is dropped by the kernel.
  if (readSysctl("net/ipv6/conf/all/forwarding", proc) == "0") {
    out.push_back(
        "host: net.ipv6.conf.all.forwarding=0: IPv6 packets whose next hop is not resolved yet "
        "are dropped by the kernel instead of forwarded; set it to 1 (namespace-wide, so "
        "meshlbd leaves it)");
  }
  if (!facts.hugepages) {
    out.push_back(
        "host: running without hugepages (EAL --no-huge): packet buffers and connection tables "
        "use ordinary pages and TLB misses cost throughput; for production reserve them "
        "(echo 1024 > /proc/sys/vm/nr_hugepages) and drop --no-huge");
  }
  if (facts.pci_ports) {
    std::error_code ec;
    const std::filesystem::path groups = absl::StrCat(sys, "/kernel/iommu_groups");
    const bool iommu =
        std::filesystem::exists(groups, ec) && !std::filesystem::is_empty(groups, ec);
    if (!iommu) {
      out.push_back(
          "host: no IOMMU (no /sys/kernel/iommu_groups): vfio-pci ports need intel_iommu=on or "
          "amd_iommu=on on the kernel command line (or vfio's unsafe no-IOMMU mode)");
    }
  }
  return out;
}

NeighbourResolver::~NeighbourResolver() {
  if (sock_) nl_socket_free(sock_);
}

absl::Status NeighbourResolver::start() {
  absl::Status st;
  sock_ = routeSocket(&st);
  return st;
}

void NeighbourResolver::resolve(int ifindex, const IpAddr& nexthop) {
  if (!sock_ || ifindex <= 0 || nexthop.family == Family::kNone) return;
  const size_t len = nexthop.isV4() ? 4 : 16;
  std::string key(reinterpret_cast<const char*>(&ifindex), sizeof ifindex);
  key.append(reinterpret_cast<const char*>(nexthop.b), len);
  const auto now = std::chrono::steady_clock::now();
  auto [it, fresh] = last_.try_emplace(key, now);
  if (!fresh) {
    if (now - it->second < kRetry) return;
    it->second = now;
  }
  // Bounded: the oldest half of what was asked goes when the map is full.
  if (last_.size() > 65536) {
    absl::erase_if(last_, [&](const auto& kv) { return now - kv.second >= kRetry; });
  }
  // RTM_NEWNEIGH, state NUD_NONE, NDA_FLAGS_EXT = NTF_EXT_MANAGED: what
  // `ip neigh replace ADDR dev lbN managed` sends.
  nl_msg* msg = nlmsg_alloc_simple(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE);
  ndmsg nd{};
  nd.ndm_family = static_cast<uint8_t>(nexthop.isV4() ? AF_INET : AF_INET6);
  nd.ndm_ifindex = ifindex;
  nd.ndm_state = NUD_NONE;
  int err = msg ? nlmsg_append(msg, &nd, sizeof nd, NLMSG_ALIGNTO) : -NLE_NOMEM;
  if (err >= 0) err = nla_put(msg, NDA_DST, static_cast<int>(len), nexthop.b);
  if (err >= 0) err = nla_put_u32(msg, NDA_FLAGS_EXT, NTF_EXT_MANAGED);
  if (err >= 0)
    err = nl_send_sync(sock_, msg);  // frees msg, waits for the ACK
  else if (msg)
    nlmsg_free(msg);
  ++asked_;
  if (err < 0) {
    ++failed_;
    last_error_ = absl::StrCat("managed neighbour ", nexthop.str(), " on ifindex ", ifindex, ": ",
                               nl_geterror(err));
  }
}

}  // namespace meshlb
