#include "netlink_mirror.h"

#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/cache.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/vxlan.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/route.h>
#include <sys/socket.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace meshlb {

NetlinkMirror::~NetlinkMirror() {
  if (mngr_) nl_cache_mngr_free(mngr_);
  if (sync_sock_) nl_socket_free(sync_sock_);
}

void NetlinkMirror::onChange(nl_cache*, nl_object*, int, void* self) {
  static_cast<NetlinkMirror*>(self)->changed_ = true;
}

absl::Status NetlinkMirror::start() {
  int err = nl_cache_mngr_alloc(nullptr, NETLINK_ROUTE, NL_AUTO_PROVIDE, &mngr_);
  if (err < 0) return absl::InternalError(absl::StrCat("netlink: ", nl_geterror(err)));
  sync_sock_ = nl_socket_alloc();
  if (!sync_sock_ || (err = nl_connect(sync_sock_, NETLINK_ROUTE)) < 0) {
    return absl::InternalError(absl::StrCat("netlink sync socket: ", nl_geterror(err)));
  }
  struct {
    const char* name;
    nl_cache** cache;
  } caches[] = {{"route/link", &link_},
                {"route/addr", &addr_},
                {"route/neigh", &neigh_},
                {"route/route", &route_}};
  for (auto& c : caches) {
    // Each cache dumps every address family its kind has (NL_CACHE_AF_ITER): for
    // neighbours that includes AF_BRIDGE, the vxlan devices' FDB.
    err = nl_cache_alloc_name(c.name, c.cache);
    if (err >= 0) {
      nl_cache_set_flags(*c.cache, NL_CACHE_AF_ITER);
      err = nl_cache_mngr_add_cache(mngr_, *c.cache, &NetlinkMirror::onChange, this);
    }
    if (err < 0) {
      return absl::InternalError(absl::StrCat("netlink cache ", c.name, ": ", nl_geterror(err)));
    }
  }
  return absl::OkStatus();
}

int NetlinkMirror::fd() const { return nl_cache_mngr_get_fd(mngr_); }

void NetlinkMirror::resync() {
  ++resyncs_;
  for (nl_cache* c : {link_, addr_, neigh_, route_}) {
    nl_cache_resync(sync_sock_, c, &NetlinkMirror::onChange, this);
  }
  changed_ = true;
}

bool NetlinkMirror::poll() {
  // An error here is usually ENOBUFS: notifications were dropped, so the caches
  // may be stale; dump everything again rather than mirror a wrong state.
  if (nl_cache_mngr_data_ready(mngr_) < 0) resync();
  bool c = changed_;
  changed_ = false;
  return c;
}

int NetlinkMirror::ifindexOf(const std::string& name) {
  return static_cast<int>(if_nametoindex(name.c_str()));
}

namespace {
// An address of either family from libnl; false for anything else.
bool ipOf(nl_addr* a, IpAddr* out) {
  if (!a) return false;
  const int family = nl_addr_get_family(a);
  const unsigned len = nl_addr_get_len(a);
  if (family == AF_INET && len == 4) {
    *out = IpAddr{};
    out->family = Family::kIpv4;
  } else if (family == AF_INET6 && len == 16) {
    *out = IpAddr{};
    out->family = Family::kIpv6;
  } else {
    return false;
  }
  std::memcpy(out->b, nl_addr_get_binary_addr(a), len);
  return true;
}
bool ipFamily(int family) { return family == AF_INET || family == AF_INET6; }
}  // namespace

KernelView NetlinkMirror::view() const {
  KernelView v;
  for (nl_object* o = nl_cache_get_first(addr_); o; o = nl_cache_get_next(o)) {
    auto* a = reinterpret_cast<rtnl_addr*>(o);
    IpAddr ip;
    if (!ipOf(rtnl_addr_get_local(a), &ip)) continue;
    v.addrs.push_back(
        {rtnl_addr_get_ifindex(a), ip, static_cast<uint8_t>(rtnl_addr_get_prefixlen(a))});
  }
  for (nl_object* o = nl_cache_get_first(link_); o; o = nl_cache_get_next(o)) {
    auto* l = reinterpret_cast<rtnl_link*>(o);
    v.links.push_back({rtnl_link_get_ifindex(l), rtnl_link_get_mtu(l)});
    if (!rtnl_link_is_vxlan(l)) continue;
    KernelView::Vxlan x{};
    x.ifindex = rtnl_link_get_ifindex(l);
    uint32_t val = 0;
    if (rtnl_link_vxlan_get_id(l, &val) < 0) continue;
    x.vni = val;
    x.port = rtnl_link_vxlan_get_port(l, &val) < 0 ? 0 : static_cast<uint16_t>(val);
    nl_addr* local = nullptr;
    if (rtnl_link_vxlan_get_local(l, &local) >= 0) {
      ipOf(local, &x.local);
      nl_addr_put(local);
    }
    nl_addr* ll = rtnl_link_get_addr(l);
    if (ll && nl_addr_get_len(ll) == 6) std::memcpy(x.mac.data(), nl_addr_get_binary_addr(ll), 6);
    x.mtu = rtnl_link_get_mtu(l);
    x.up = (rtnl_link_get_flags(l) & IFF_UP) != 0;
    v.vxlans.push_back(x);
  }
  for (nl_object* o = nl_cache_get_first(neigh_); o; o = nl_cache_get_next(o)) {
    auto* n = reinterpret_cast<rtnl_neigh*>(o);
    if (rtnl_neigh_get_family(n) == AF_BRIDGE) {
      // An FDB entry: the MAC is the lladdr, the remote VTEP the NDA_DST.
      KernelView::Fdb f{};
      nl_addr* ll = rtnl_neigh_get_lladdr(n);
      if (!ll || nl_addr_get_len(ll) != 6 || !ipOf(rtnl_neigh_get_dst(n), &f.dst)) continue;
      f.ifindex = rtnl_neigh_get_ifindex(n);
      std::memcpy(f.mac.data(), nl_addr_get_binary_addr(ll), 6);
      v.fdb.push_back(f);
      continue;
    }
    IpAddr ip;
    if (!ipOf(rtnl_neigh_get_dst(n), &ip)) continue;
    int state = rtnl_neigh_get_state(n);
    if (!(state & (NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT))) continue;
    nl_addr* ll = rtnl_neigh_get_lladdr(n);
    if (!ll || nl_addr_get_len(ll) != 6) continue;
    KernelView::Neigh e{rtnl_neigh_get_ifindex(n), ip, {}};
    std::memcpy(e.mac.data(), nl_addr_get_binary_addr(ll), 6);
    v.neighs.push_back(e);
  }
  for (nl_object* o = nl_cache_get_first(route_); o; o = nl_cache_get_next(o)) {
    auto* r = reinterpret_cast<rtnl_route*>(o);
    const int family = rtnl_route_get_family(r);
    if (!ipFamily(family) || rtnl_route_get_table(r) != RT_TABLE_MAIN ||
        rtnl_route_get_type(r) != RTN_UNICAST || rtnl_route_get_nnexthops(r) < 1) {
      continue;
    }
    KernelView::Route e{};
    e.dst.family = family == AF_INET ? Family::kIpv4 : Family::kIpv6;
    nl_addr* dst = rtnl_route_get_dst(r);
    if (dst && nl_addr_get_len(dst) > 0) ipOf(dst, &e.dst);
    e.len = dst ? static_cast<uint8_t>(nl_addr_get_prefixlen(dst)) : 0;
    rtnl_nexthop* nh = rtnl_route_nexthop_n(r, 0);
    ipOf(rtnl_route_nh_get_gateway(nh), &e.gateway);
    e.ifindex = rtnl_route_nh_get_ifindex(nh);
    v.routes.push_back(e);
  }
  return v;
}

}  // namespace meshlb
