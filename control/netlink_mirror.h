// Mirrors the kernel twins' links, IPv4 addresses, neighbours and routes with the
// libnl-3 cache manager, so the operator configures the appliance with plain `ip`.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "meshlb/types.h"

struct nl_cache;
struct nl_cache_mngr;
struct nl_object;
struct nl_sock;

namespace meshlb {

// What the mirror saw, both address families.
struct KernelView {
  struct Addr {
    int ifindex;
    IpAddr addr;
    uint8_t prefixlen;
  };
  struct Neigh {
    int ifindex;
    IpAddr addr;
    std::array<uint8_t, 6> mac;
  };
  struct Route {
    friend bool operator==(const Route&, const Route&) = default;
    IpAddr dst;  // the prefix's address (family set, all zero for a default route)
    uint8_t len;
    IpAddr gateway;  // family kNone: on link
    int ifindex;
  };
  // A kernel vxlan device (`ip link add vxlan4097 type vxlan id 4097 dstport 4789
  // local UNDERLAY_IP nolearning`), as Docker's overlay driver creates one per network.
  struct Vxlan {
    int ifindex;
    uint32_t vni;
    uint16_t port;  // UDP destination port, host order
    IpAddr local;   // the local VTEP address (family kNone: not set)
    std::array<uint8_t, 6> mac;
    uint32_t mtu;
    bool up;
  };
  // A bridge FDB entry on a vxlan device: `bridge fdb add MAC dev vxlan4097 dst NODE_IP`.
  struct Fdb {
    friend bool operator==(const Fdb&, const Fdb&) = default;
    int ifindex;
    std::array<uint8_t, 6> mac;
    IpAddr dst;  // the remote VTEP
  };
  struct Link {
    int ifindex;
    uint32_t mtu;
  };
  std::vector<Link> links;
  std::vector<Addr> addrs;
  std::vector<Neigh> neighs;  // resolved (or permanent) ones only
  std::vector<Route> routes;  // main table, unicast
  std::vector<Vxlan> vxlans;
  std::vector<Fdb> fdb;
};

class NetlinkMirror {
 public:
  NetlinkMirror() = default;
  ~NetlinkMirror();
  NetlinkMirror(const NetlinkMirror&) = delete;
  NetlinkMirror& operator=(const NetlinkMirror&) = delete;

  absl::Status start();
  int fd() const;
  // Reads pending notifications; true when anything changed since the last call.
  // Lost notifications (a full socket buffer) trigger a full resync of the caches.
  bool poll();
  uint64_t resyncs() const { return resyncs_; }
  // Dumps everything again (also done by poll() after lost notifications).
  void resync();
  KernelView view() const;
  static int ifindexOf(const std::string& name);

 private:
  static void onChange(nl_cache*, nl_object*, int, void* self);
  nl_cache_mngr* mngr_ = nullptr;
  nl_sock* sync_sock_ = nullptr;  // for full dumps after lost notifications
  uint64_t resyncs_ = 0;
  nl_cache* addr_ = nullptr;
  nl_cache* neigh_ = nullptr;
  nl_cache* route_ = nullptr;
  nl_cache* link_ = nullptr;
  bool changed_ = true;
};

}  // namespace meshlb
