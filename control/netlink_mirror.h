// Mirrors the kernel twins' links, IPv4 addresses, neighbours and routes with the
// libnl-3 cache manager, so the operator configures the appliance with plain `ip`.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

struct nl_cache;
struct nl_cache_mngr;
struct nl_object;
struct nl_sock;

namespace meshlb {

struct KernelView {
  struct Addr {
    int ifindex;
    uint32_t addr;  // network order
    uint8_t prefixlen;
  };
  struct Neigh {
    int ifindex;
    uint32_t addr;  // network order
    std::array<uint8_t, 6> mac;
  };
  struct Route {
    uint32_t dst;  // network order
    uint8_t len;
    uint32_t gateway;  // 0 = on link
    int ifindex;
  };
  std::vector<Addr> addrs;
  std::vector<Neigh> neighs;
  std::vector<Route> routes;  // main table, unicast, IPv4
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
  KernelView view() const;
  static int ifindexOf(const std::string& name);

 private:
  static void onChange(nl_cache*, nl_object*, int, void* self);
  void resync();
  nl_cache_mngr* mngr_ = nullptr;
  nl_sock* sync_sock_ = nullptr;  // for full dumps after lost notifications
  uint64_t resyncs_ = 0;
  nl_cache* addr_ = nullptr;
  nl_cache* neigh_ = nullptr;
  nl_cache* route_ = nullptr;
  bool changed_ = true;
};

}  // namespace meshlb
