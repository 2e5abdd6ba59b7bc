#include "overlay.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/neighbour.h>
#include <netlink/cache.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/vxlan.h>
#include <netlink/route/neighbour.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cluster.h"

namespace meshlb::swarm {

namespace {

absl::Status nlError(absl::string_view what, int err) {
  return absl::InternalError(absl::StrCat("netlink ", what, ": ", nl_geterror(err)));
}

// RAII for libnl's reference-counted objects.
template <class T, void (*Free)(T*)>
struct Ref {
  T* p = nullptr;
  Ref() = default;
  explicit Ref(T* x) : p(x) {}
  ~Ref() {
    if (p) Free(p);
  }
  Ref(const Ref&) = delete;
  Ref& operator=(const Ref&) = delete;
  void reset(T* x) {
    if (p) Free(p);
    p = x;
  }
  T* operator->() const { return p; }
  operator T*() const { return p; }
};
using Cache = Ref<nl_cache, nl_cache_free>;
using Addr = Ref<nl_addr, nl_addr_put>;
using Link = Ref<rtnl_link, rtnl_link_put>;
using Neigh = Ref<rtnl_neigh, rtnl_neigh_put>;
using RAddr = Ref<rtnl_addr, rtnl_addr_put>;

nl_addr* ipAddr(const IpAddr& a) {
  return nl_addr_build(a.isV4() ? AF_INET : AF_INET6, a.b, a.isV4() ? 4 : 16);
}
nl_addr* macAddr(const std::array<uint8_t, 6>& m) { return nl_addr_build(AF_LLC, m.data(), 6); }

bool ipOf(nl_addr* a, IpAddr* out) {
  if (!a) return false;
  const int family = nl_addr_get_family(a);
  const unsigned len = nl_addr_get_len(a);
  if (!((family == AF_INET && len == 4) || (family == AF_INET6 && len == 16))) return false;
  *out = IpAddr{};
  out->family = family == AF_INET ? Family::kIpv4 : Family::kIpv6;
  std::memcpy(out->b, nl_addr_get_binary_addr(a), len);
  return true;
}
bool macOf(nl_addr* a, std::array<uint8_t, 6>* out) {
  if (!a || nl_addr_get_len(a) != 6) return false;
  std::memcpy(out->data(), nl_addr_get_binary_addr(a), 6);
  return true;
}

struct NsSwitch {  // enters a network namespace for the lifetime of the object
  int self = -1;
  ~NsSwitch() {
    if (self >= 0) {
      setns(self, CLONE_NEWNET);
      close(self);
    }
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<Netlink>> Netlink::open(const std::string& netns_path) {
  NsSwitch sw;
  if (!netns_path.empty()) {
    const int target = ::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (target < 0) {
      return absl::NotFoundError(absl::StrCat(netns_path, ": ", std::strerror(errno)));
    }
    sw.self = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    const int rc = sw.self < 0 ? -1 : setns(target, CLONE_NEWNET);
    const int saved = errno;
    close(target);
    if (rc != 0) {
      return absl::PermissionDeniedError(
          absl::StrCat("entering ", netns_path, ": ", std::strerror(saved)));
    }
  }
  nl_sock* s = nl_socket_alloc();
  if (!s) return absl::InternalError("nl_socket_alloc failed");
  // The socket stays in the namespace it was created in, whatever the thread does next.
  if (int err = nl_connect(s, NETLINK_ROUTE); err < 0) {
    nl_socket_free(s);
    return nlError("connect", err);
  }
  return std::unique_ptr<Netlink>(new Netlink(s));
}

Netlink::~Netlink() { nl_socket_free(sock_); }

absl::StatusOr<int> Netlink::findVxlan(uint32_t vni) {
  Cache links;
  if (int err = rtnl_link_alloc_cache(sock_, AF_UNSPEC, &links.p); err < 0) {
    return nlError("links", err);
  }
  for (nl_object* o = nl_cache_get_first(links); o; o = nl_cache_get_next(o)) {
    auto* l = reinterpret_cast<rtnl_link*>(o);
    uint32_t id = 0;
    if (rtnl_link_is_vxlan(l) && rtnl_link_vxlan_get_id(l, &id) >= 0 && id == vni) {
      return rtnl_link_get_ifindex(l);
    }
  }
  return 0;
}

absl::Status Netlink::removeLink(const std::string& name) {
  Link l(rtnl_link_alloc());
  rtnl_link_set_name(l, name.c_str());
  const int err = rtnl_link_delete(sock_, l);
  return err < 0 && err != -NLE_NODEV && err != -NLE_OBJ_NOTFOUND ? nlError("delete link", err)
                                                                  : absl::OkStatus();
}

absl::StatusOr<int> Netlink::ensureVxlan(const VxlanSpec& spec, int* changes) {
  *changes = 0;
  const auto mac = dockerMac(spec.addr);
  Cache links;
  if (int err = rtnl_link_alloc_cache(sock_, AF_UNSPEC, &links.p); err < 0) {
    return nlError("links", err);
  }
  Link have(rtnl_link_get_by_name(links, spec.name.c_str()));
  if (have) {
    uint32_t vni = 0, port = 0;
    IpAddr local;
    nl_addr* l = nullptr;
    const bool is_vx = rtnl_link_is_vxlan(have);
    if (is_vx && rtnl_link_vxlan_get_local(have, &l) >= 0) {
      ipOf(l, &local);
      nl_addr_put(l);
    }
    if (!is_vx || rtnl_link_vxlan_get_id(have, &vni) < 0 || vni != spec.vni ||
        rtnl_link_vxlan_get_port(have, &port) < 0 || port != spec.port || local != spec.local) {
      // Another network behind the same name: this one replaces it.
      if (int err = rtnl_link_delete(sock_, have); err < 0) return nlError("delete link", err);
      have.reset(nullptr);
      ++*changes;
    }
  }
  if (!have) {
    Link vx(rtnl_link_vxlan_alloc());
    Addr local(ipAddr(spec.local)), ll(macAddr(mac));
    rtnl_link_set_name(vx, spec.name.c_str());
    rtnl_link_vxlan_set_id(vx, spec.vni);
    rtnl_link_vxlan_set_port(vx, spec.port);
    rtnl_link_vxlan_set_local(vx, local);
    rtnl_link_vxlan_set_learning(vx, 0);
    rtnl_link_set_addr(vx, ll);
    rtnl_link_set_mtu(vx, spec.mtu);
    if (int err = rtnl_link_add(sock_, vx, NLM_F_CREATE | NLM_F_EXCL); err < 0) {
      return nlError(absl::StrCat("create ", spec.name), err);
    }
    ++*changes;
    nl_cache_refill(sock_, links);
    have.reset(rtnl_link_get_by_name(links, spec.name.c_str()));
    if (!have) return absl::InternalError(absl::StrCat(spec.name, " vanished after creation"));
  }
  const int ifindex = rtnl_link_get_ifindex(have);
  std::array<uint8_t, 6> cur_mac{};
  macOf(rtnl_link_get_addr(have), &cur_mac);
  if (cur_mac != mac || rtnl_link_get_mtu(have) != spec.mtu ||
      !(rtnl_link_get_flags(have) & IFF_UP)) {
    Link change(rtnl_link_alloc());
    Addr ll(macAddr(mac));
    rtnl_link_set_addr(change, ll);
    rtnl_link_set_mtu(change, spec.mtu);
    rtnl_link_set_flags(change, IFF_UP);
    if (int err = rtnl_link_change(sock_, have, change, 0); err < 0) {
      return nlError(absl::StrCat("set up ", spec.name), err);
    }
    ++*changes;
  }
  Cache addrs;
  if (int err = rtnl_addr_alloc_cache(sock_, &addrs.p); err < 0) return nlError("addresses", err);
  bool has_addr = false;
  for (nl_object* o = nl_cache_get_first(addrs); o; o = nl_cache_get_next(o)) {
    auto* a = reinterpret_cast<rtnl_addr*>(o);
    IpAddr ip;
    if (rtnl_addr_get_ifindex(a) != ifindex || !ipOf(rtnl_addr_get_local(a), &ip)) continue;
    if (ip == spec.addr && rtnl_addr_get_prefixlen(a) == spec.prefix) {
      has_addr = true;
    } else if (int err = rtnl_addr_delete(sock_, a, 0); err < 0) {
      return nlError("delete address", err);
    }
  }
  if (!has_addr) {
    RAddr a(rtnl_addr_alloc());
    Addr local(ipAddr(spec.addr));
    nl_addr_set_prefixlen(local, spec.prefix);
    rtnl_addr_set_ifindex(a, ifindex);
    rtnl_addr_set_local(a, local);
    if (int err = rtnl_addr_add(sock_, a, NLM_F_CREATE | NLM_F_REPLACE); err < 0) {
      return nlError(absl::StrCat("address on ", spec.name), err);
    }
    ++*changes;
  }
  return ifindex;
}

absl::StatusOr<int> Netlink::syncPeers(int ifindex, const std::map<IpAddr, IpAddr>& peers,
                                       bool exact) {
  Cache neighs;
  if (int err = rtnl_neigh_alloc_cache_flags(sock_, &neighs.p, NL_CACHE_AF_ITER); err < 0) {
    return nlError("neighbours", err);
  }
  std::map<IpAddr, std::array<uint8_t, 6>> have_neigh;
  std::map<std::array<uint8_t, 6>, IpAddr> have_fdb;
  std::vector<rtnl_neigh*> stale;
  std::map<std::array<uint8_t, 6>, IpAddr> want_fdb;
  for (const auto& [ip, node] : peers) want_fdb[dockerMac(ip)] = node;
  for (nl_object* o = nl_cache_get_first(neighs); o; o = nl_cache_get_next(o)) {
    auto* n = reinterpret_cast<rtnl_neigh*>(o);
    if (rtnl_neigh_get_ifindex(n) != ifindex) continue;
    std::array<uint8_t, 6> mac{};
    IpAddr ip;
    if (!macOf(rtnl_neigh_get_lladdr(n), &mac) || !ipOf(rtnl_neigh_get_dst(n), &ip)) continue;
    // Only entries as this code makes them are ever removed: permanent, for a
    // Docker-style MAC (02:42:...); what the kernel adds on its own is left alone.
    const bool ours =
        mac[0] == 0x02 && mac[1] == 0x42 && (rtnl_neigh_get_state(n) & NUD_PERMANENT) != 0;
    if (rtnl_neigh_get_family(n) == AF_BRIDGE) {
      have_fdb[mac] = ip;
      if (exact && ours && !want_fdb.contains(mac)) stale.push_back(n);
    } else {
      have_neigh[ip] = mac;
      if (exact && ours && !peers.contains(ip)) stale.push_back(n);
    }
  }
  int changes = 0;
  for (rtnl_neigh* n : stale) {
    if (int err = rtnl_neigh_delete(sock_, n, 0); err < 0 && err != -NLE_OBJ_NOTFOUND) {
      return nlError("delete neighbour", err);
    }
    ++changes;
  }
  for (const auto& [ip, node] : peers) {
    if (node.family == Family::kNone) continue;
    const auto mac = dockerMac(ip);
    auto hf = have_fdb.find(mac);
    if (hf == have_fdb.end() || hf->second != node) {
      Neigh f(rtnl_neigh_alloc());
      Addr ll(macAddr(mac)), dst(ipAddr(node));
      // The VTEP first: libnl refuses an address whose family differs from the
      // entry's, and the entry's family (AF_BRIDGE) is not the address's.
      rtnl_neigh_set_dst(f, dst);
      rtnl_neigh_set_family(f, AF_BRIDGE);
      rtnl_neigh_set_ifindex(f, ifindex);
      rtnl_neigh_set_lladdr(f, ll);
      rtnl_neigh_set_state(f, NUD_PERMANENT);
      rtnl_neigh_set_flags(f, NTF_SELF);
      if (int err = rtnl_neigh_add(sock_, f, NLM_F_CREATE | NLM_F_REPLACE); err < 0) {
        return nlError(absl::StrCat("fdb ", ip.str()), err);
      }
      ++changes;
    }
    auto hn = have_neigh.find(ip);
    if (hn == have_neigh.end() || hn->second != mac) {
      Neigh n(rtnl_neigh_alloc());
      Addr ll(macAddr(mac)), dst(ipAddr(ip));
      rtnl_neigh_set_ifindex(n, ifindex);
      rtnl_neigh_set_lladdr(n, ll);
      rtnl_neigh_set_dst(n, dst);
      rtnl_neigh_set_state(n, NUD_PERMANENT);
      if (int err = rtnl_neigh_add(sock_, n, NLM_F_CREATE | NLM_F_REPLACE); err < 0) {
        return nlError(absl::StrCat("neighbour ", ip.str()), err);
      }
      ++changes;
    }
  }
  return changes;
}

}  // namespace meshlb::swarm
