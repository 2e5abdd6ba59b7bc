// One vocabulary from the wire to the CLI: addresses of both families, endpoints,
// the real-server id that owns its bit layout, and the key of a virtual service.
// Every layer (parser, flow table, snapshot, service model, ipvsadm, the daemon's
// counters) uses these; nothing outside this file knows how an id is laid out or
// how many slots there are.
#pragma once

#include <compare>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"

namespace meshlb {

enum class Family : uint8_t { kNone = 0, kIpv4 = 4, kIpv6 = 6 };

// The dataplane's per-family address types: what a packet carries, network order.
struct Ipv4Addr {
  uint32_t v = 0;  // network byte order
  friend bool operator==(Ipv4Addr a, Ipv4Addr b) { return a.v == b.v; }
};
struct Ipv6Addr {
  uint8_t b[16] = {};
  friend bool operator==(const Ipv6Addr& a, const Ipv6Addr& c) {
    return std::memcmp(a.b, c.b, 16) == 0;
  }
};

// An address of either family, as the control plane, the mirror and the CLI hold
// it. Ordered by family, then by bytes (so IPv4 sorts before IPv6).
struct IpAddr {
  Family family = Family::kNone;
  uint8_t b[16] = {};  // network order; an IPv4 address in the first 4 bytes

  static IpAddr of(Ipv4Addr a) {
    IpAddr r;
    r.family = Family::kIpv4;
    std::memcpy(r.b, &a.v, 4);
    return r;
  }
  static IpAddr of(const Ipv6Addr& a) {
    IpAddr r;
    r.family = Family::kIpv6;
    std::memcpy(r.b, a.b, 16);
    return r;
  }
  // Numeric IPv4 or IPv6 text.
  static absl::StatusOr<IpAddr> parse(std::string_view text);
  std::string str() const;
  bool isV4() const { return family == Family::kIpv4; }
  bool isV6() const { return family == Family::kIpv6; }
  Ipv4Addr v4() const {
    Ipv4Addr a;
    std::memcpy(&a.v, b, 4);
    return a;
  }
  Ipv6Addr v6() const {
    Ipv6Addr a;
    std::memcpy(a.b, b, 16);
    return a;
  }
  friend auto operator<=>(const IpAddr&, const IpAddr&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const IpAddr& a) {
    return H::combine_contiguous(H::combine(std::move(h), a.family), a.b, a.isV6() ? 16 : 4);
  }
};

// An address and a port (network order, as on the wire).
template <class Addr>
struct Endpoint {
  Addr addr;
  uint16_t port = 0;  // network order; ignored for ICMP outer headers
};

// Prefix length -> IPv4 netmask, network order (0 matches everything).
inline uint32_t ipv4Mask(uint8_t len) {
  return len == 0 ? 0 : __builtin_bswap32(~uint32_t{0} << (32 - len));
}

// Virtual services: at most kMaxServices, each with a slot below it that stays
// the same while the service exists (the workers' scheduler state is by slot).
constexpr uint32_t kMaxServices = 1u << 17;

// A real server's id: its slot (1 .. kSlots - 1) indexes every per-backend array
// (liveness in the snapshot, counters on each worker), and its generation tells
// the server now in a slot from one deleted before, whose connections may still
// be tracked (expire_nodest_conn). 24 bits in all, as a flow record stores it:
// 20 for the slot (about 1M real servers), 4 for the generation (slots rotate over
// all 1M before one is reused, so 16 generations span 16M allocations, far longer
// than any connection lives).
class BackendId {
 public:
  static constexpr uint32_t kSlotBits = 20;
  static constexpr uint32_t kGenerationBits = 4;
  static constexpr uint32_t kBits = kSlotBits + kGenerationBits;
  static constexpr uint32_t kSlots = 1u << kSlotBits;  // slot 0 is never used
  static constexpr uint32_t kMaxLive = kSlots - 1;
  // Per-slot liveness bytes (the snapshot's live_backend): this bit, then the
  // generation of the id that has the slot.
  static constexpr uint8_t kLiveBit = 0x80;

  constexpr BackendId() = default;
  static constexpr BackendId make(uint32_t generation, uint32_t slot) {
    return BackendId(((generation & ((1u << kGenerationBits) - 1)) << kSlotBits) |
                     (slot & (kSlots - 1)));
  }
  static constexpr BackendId fromRaw(uint32_t raw) { return BackendId(raw & ((1u << kBits) - 1)); }
  constexpr uint32_t raw() const { return raw_; }
  constexpr uint32_t slot() const { return raw_ & (kSlots - 1); }
  constexpr uint32_t generation() const { return raw_ >> kSlotBits; }
  constexpr explicit operator bool() const { return raw_ != 0; }
  friend constexpr auto operator<=>(BackendId, BackendId) = default;

 private:
  constexpr explicit BackendId(uint32_t raw) : raw_(raw) {}
  uint32_t raw_ = 0;
};

// What a virtual service is keyed by in the control plane: a firewall mark, or
// protocol + address + port.
struct ServiceKey {
  uint32_t fwmark = 0;   // non-zero: fwmark service (address and port unused)
  uint8_t protocol = 0;  // 6 (TCP) or 17 (UDP) for address services
  IpAddr addr;
  uint16_t port = 0;  // host order
  friend auto operator<=>(const ServiceKey&, const ServiceKey&) = default;
};

}  // namespace meshlb
