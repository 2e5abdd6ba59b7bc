// VXLAN (RFC 7348) encapsulation over IPv4 or IPv6, and the ICMP "fragmentation needed"
// / ICMPv6 "packet too big" a sender gets when its packet would not fit the
// underlay once encapsulated.
#pragma once

#include <cstdint>

#include "meshlb/parse.h"

namespace meshlb {

struct VxlanTunnel {
  uint8_t src_mac[6];
  uint8_t dst_mac[6];
  uint32_t src_ip = 0;  // network order (local VTEP)
  uint32_t dst_ip = 0;  // network order (remote VTEP)
  uint32_t vni = 0;
  uint16_t dst_port = kVxlanPort;  // host order
  uint8_t ttl = 64;
  uint16_t underlay_mtu = 1500;  // bytes of outer IP datagram
  // An IPv6 underlay: these addresses instead of src_ip and dst_ip.
  bool v6 = false;
  uint8_t src_ip6[16] = {}, dst_ip6[16] = {};
};

// Bytes written in front of the inner frame: 50 over IPv4, 70 over IPv6.
inline uint32_t vxlanEncapLen(const VxlanTunnel& t) {
  return t.v6 ? kVxlanEncap6Len : kVxlanEncapLen;
}
// Largest inner IP datagram that fits the tunnel (1450 for a 1500 IPv4 underlay, 1430
// over IPv6).
inline uint32_t vxlanInnerMtu(const VxlanTunnel& t) { return t.underlay_mtu - vxlanEncapLen(t); }

enum class EncapResult : uint8_t {
  kOk,
  kTooBigDf,    // would exceed the underlay MTU and may not be fragmented: send ICMP
  kTooBigNoDf,  // would exceed it; meshlb does not fragment the outer packet: drop
};

// Checks the inner packet against the tunnel MTU. `inner` is the parsed inner frame.
EncapResult vxlanCheckMtu(const ParsedPacket& inner, const VxlanTunnel& t);

// Writes the outer headers into the vxlanEncapLen(t) bytes before `inner_frame`
// (caller provides the headroom) and returns the start of the outer frame. The
// outer UDP source port is taken from `flow_hash` so that underlay ECMP/RSS
// spreads flows (RFC 7348 section 5); over IPv4 the outer UDP checksum is zero. Over
// IPv6 it is computed (RFC 8200 forbids a zero one; Linux's vxlan device drops it
// unless udp6zerocsumrx is set), and the flow label comes from the hash (RFC 6438).
uint8_t* vxlanEncap(uint8_t* inner_frame, uint32_t inner_len, const VxlanTunnel& t,
                    uint64_t flow_hash);

// Builds, at `out` (room for kTooBigMaxLen bytes), an Ethernet frame carrying
// ICMP type 3 code 4 (IPv4) or ICMPv6 type 2 (IPv6) to the sender of the
// packet `p` parsed from `frame`, advertising `mtu` (IPv4: another code of destination
// unreachable with `code`, mtu 0). The reply goes from
// `src_mac` to the packet's source MAC and from `src_addr` (4 or 16 bytes) to
// the packet's source address; it quotes as much of the packet as RFC 1812
// (576 bytes in all) or RFC 4443 (1280) allow. Returns the frame length.
constexpr uint32_t kTooBigMaxLen = kEthHdrLen + 2 * kVlanTagLen + 1280;
uint32_t buildTooBig(const uint8_t* frame, const ParsedPacket& p, uint32_t mtu,
                     const uint8_t* src_mac, const uint8_t* src_addr, uint8_t* out,
                     uint8_t code = kIcmpCodeFragNeeded);

}  // namespace meshlb
