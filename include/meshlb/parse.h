// Packet parser: Ethernet, 802.1Q/802.1ad, IPv4 (options, fragments), IPv6 with its
// extension-header chain, TCP, UDP, ICMP/ICMPv6 errors with the quoted inner header,
// and VXLAN. It reads only; every rejection has a named reason that the dataplane
// counts.
#pragma once

#include <cstdint>

#include "meshlb/checksum.h"
#include "meshlb/proto.h"

namespace meshlb {

// X(name, counter label). kOk and kNotIp are not drops: kNotIp goes to the kernel twin.
#define MESHLB_PARSE_RESULTS(X)                                      \
  X(kOk, "ok")                                                       \
  X(kNotIp, "not_ip")                                                \
  X(kEthTruncated, "eth_truncated")                                  \
  X(kVlanTruncated, "vlan_truncated")                                \
  X(kVlanTooManyTags, "vlan_too_many_tags")                          \
  X(kIpv4Truncated, "ipv4_truncated")                                \
  X(kIpv4BadVersion, "ipv4_bad_version")                             \
  X(kIpv4BadIhl, "ipv4_bad_ihl")                                     \
  X(kIpv4BadTotalLength, "ipv4_bad_total_length")                    \
  X(kIpv4TotalLengthExceedsFrame, "ipv4_total_length_exceeds_frame") \
  X(kIpv4BadChecksum, "ipv4_bad_checksum")                           \
  X(kIpv4BadFragment, "ipv4_bad_fragment")                           \
  X(kIpv6Truncated, "ipv6_truncated")                                \
  X(kIpv6BadVersion, "ipv6_bad_version")                             \
  X(kIpv6PayloadExceedsFrame, "ipv6_payload_exceeds_frame")          \
  X(kIpv6ExtTruncated, "ipv6_ext_truncated")                         \
  X(kIpv6ExtChainTooLong, "ipv6_ext_chain_too_long")                 \
  X(kIpv6HopByHopNotFirst, "ipv6_hop_by_hop_not_first")              \
  X(kTcpTruncated, "tcp_truncated")                                  \
  X(kTcpBadDataOffset, "tcp_bad_data_offset")                        \
  X(kUdpTruncated, "udp_truncated")                                  \
  X(kUdpBadLength, "udp_bad_length")                                 \
  X(kIcmpTruncated, "icmp_truncated")                                \
  X(kIcmpInnerTruncated, "icmp_inner_truncated")                     \
  X(kIcmpInnerMalformed, "icmp_inner_malformed")                     \
  X(kVxlanTruncated, "vxlan_truncated")                              \
  X(kVxlanBadFlags, "vxlan_bad_flags")

enum class ParseResult : uint8_t {
#define MESHLB_X(name, label) name,
  MESHLB_PARSE_RESULTS(MESHLB_X)
#undef MESHLB_X
      kCount
};

const char* parseResultName(ParseResult r);

enum class L3Type : uint8_t { kNone = 0, kIpv4 = 4, kIpv6 = 6 };

// Offsets are from the start of the frame handed to parsePacket. Ports are in
// network byte order exactly as on the wire, so they can be hashed and compared
// without swapping.
struct L3L4Info {
  L3Type l3 = L3Type::kNone;
  uint8_t l4_proto = 0;   // last next-header value (TCP, UDP, ICMP, ...)
  bool fragment = false;  // any fragment (offset != 0 or more-fragments)
  bool first_fragment = false;
  uint16_t l3_offset = 0;
  uint16_t l4_offset = 0;
  uint16_t l3_length = 0;  // datagram length from the IP header (<= bytes present for outer)
  uint16_t sport = 0;      // TCP/UDP ports, network order; 0 when not present
  uint16_t dport = 0;
  bool has_ports = false;
};

struct ParsedPacket {
  uint16_t ethertype = 0;  // innermost, host order
  uint8_t vlan_count = 0;
  uint16_t vlan_tci = 0;  // outermost tag, host order
  L3L4Info ip;            // the outer datagram
  uint8_t tcp_flags = 0;
  uint8_t tcp_header_len = 0;
  uint16_t ipv4_flags_frag = 0;  // host order (DF/MF/offset)

  // ICMP / ICMPv6 errors: the quoted packet that caused them.
  bool icmp_error = false;
  uint8_t icmp_type = 0;
  uint8_t icmp_code = 0;
  L3L4Info inner;  // offsets relative to the frame; l3_length is as quoted (may exceed)

  // VXLAN (UDP to the VXLAN port with a valid header).
  bool vxlan = false;
  uint32_t vni = 0;
  uint16_t vxlan_inner_offset = 0;  // offset of the inner Ethernet frame
};

// Parses `len` bytes at `frame`. On kOk every offset in `out` lies inside the
// frame, and each L4 header recorded is complete. VXLAN is recognised on UDP to
// `vxlan_port`; the inner frame is parsed by calling parsePacket again at
// frame + vxlan_inner_offset.
ParseResult parsePacket(const uint8_t* frame, uint32_t len, ParsedPacket& out,
                        uint16_t vxlan_port = kVxlanPort);

// The common case inline: an untagged, unfragmented IPv4 datagram without options
// carrying TCP or UDP (not to the VXLAN port). Same checks and same result as
// parsePacket for such a frame; anything else takes parsePacket. Fills only the
// fields such a packet has, so `out` must not be read for ICMP/VXLAN/VLAN detail
// unless the generic parser ran. `plain` says whether this path took the frame
// (then, on kOk, it is such a datagram, without reading `out` back).
inline ParseResult parsePacketFast(const uint8_t* f, uint32_t len, ParsedPacket& out, bool& plain,
                                   uint16_t vxlan_port = kVxlanPort) {
  plain = false;
  constexpr uint32_t kMin = kEthHdrLen + kIpv4MinHdrLen + kUdpHdrLen;
  // Bytes 12-14: EtherType 0x0800, then version 4 with IHL 5, compared as one word
  // (little-endian: byte 12 is the word's lowest).
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "words below are read little-endian");
  if (__builtin_expect(len < kMin, 0)) return parsePacket(f, len, out, vxlan_port);
  uint32_t head;
  __builtin_memcpy(&head, f + 12, 4);
  if (__builtin_expect((head & 0x00ffffff) != 0x00450008, 0)) {
    return parsePacket(f, len, out, vxlan_port);
  }
  const uint8_t* ip = f + kEthHdrLen;
  const uint32_t total = static_cast<uint32_t>(ip[2]) << 8 | ip[3];
  const uint8_t proto = ip[9];
  const uint32_t l4len = total - kIpv4MinHdrLen;
  // Fragment bits (MF, offset: the low 6 bits of byte 6 and all of byte 7) must be
  // clear; DF and the reserved bit may be set.
  uint16_t frag;
  __builtin_memcpy(&frag, ip + 6, 2);
  if (__builtin_expect(total > len - kEthHdrLen || total < kIpv4MinHdrLen + kUdpHdrLen ||
                           (frag & 0xff3f) || (proto != kProtoTcp && proto != kProtoUdp),
                       0)) {
    return parsePacket(f, len, out, vxlan_port);
  }
  uint64_t sum = 0;
  for (int i = 0; i < 20; i += 4) {
    uint32_t w;
    __builtin_memcpy(&w, ip + i, 4);
    sum += w;
  }
  if (__builtin_expect(csumFold(sum) != 0xffff, 0)) return ParseResult::kIpv4BadChecksum;
  const uint8_t* l4 = ip + kIpv4MinHdrLen;
  uint16_t sport, dport;
  __builtin_memcpy(&sport, l4, 2);
  __builtin_memcpy(&dport, l4 + 2, 2);
  if (proto == kProtoTcp) {
    const uint32_t doff = (l4[12] >> 4) * 4u;
    // (doff >= 20 and doff <= l4len together say that the header fits.)
    if (__builtin_expect(doff < kTcpMinHdrLen || doff > l4len, 0)) {
      return parsePacket(f, len, out, vxlan_port);
    }
    out.tcp_flags = l4[13];
    out.tcp_header_len = static_cast<uint8_t>(doff);
  } else {
    const uint32_t ulen = static_cast<uint32_t>(l4[4]) << 8 | l4[5];
    if (__builtin_expect(ulen < kUdpHdrLen || ulen > l4len ||
                             dport == static_cast<uint16_t>(__builtin_bswap16(vxlan_port)),
                         0)) {
      return parsePacket(f, len, out, vxlan_port);
    }
    out.tcp_flags = 0;
    out.tcp_header_len = 0;
  }
  out.ethertype = kEtherTypeIpv4;
  out.vlan_count = 0;
  out.vlan_tci = 0;
  out.ipv4_flags_frag = static_cast<uint16_t>(ip[6] << 8 | ip[7]);
  out.icmp_error = false;
  out.vxlan = false;
  L3L4Info& i = out.ip;
  i.l3 = L3Type::kIpv4;
  i.l4_proto = proto;
  i.fragment = false;
  i.first_fragment = false;
  i.l3_offset = kEthHdrLen;
  i.l4_offset = kEthHdrLen + kIpv4MinHdrLen;
  i.l3_length = static_cast<uint16_t>(total);
  i.sport = sport;
  i.dport = dport;
  i.has_ports = true;
  plain = true;
  return ParseResult::kOk;
}

inline ParseResult parsePacketFast(const uint8_t* f, uint32_t len, ParsedPacket& out,
                                   uint16_t vxlan_port = kVxlanPort) {
  bool plain;
  return parsePacketFast(f, len, out, plain, vxlan_port);
}

}  // namespace meshlb
