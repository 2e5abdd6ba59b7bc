// In-place NAT of parsed packets with incremental checksum updates (RFC 1624).
//
// A rewrite names the new source and/or destination endpoint. TCP and UDP
// checksums follow the pseudo-header; an IPv4 UDP checksum of zero ("none")
// stays zero. ICMP errors are rewritten the way IPVS does it: the outer
// addresses, the quoted datagram's addresses and ports (and its IPv4 header
// checksum and, where quoted, its L4 checksum), then the ICMP checksum is
// recomputed over the whole message.
#pragma once

#include <cstdint>

#include "meshlb/bytes.h"
#include "meshlb/checksum.h"
#include "meshlb/flow_table.h"
#include "meshlb/parse.h"

namespace meshlb {

template <class Addr>
struct Rewrite {
  bool set_src = false;
  bool set_dst = false;
  Endpoint<Addr> src;
  Endpoint<Addr> dst;
};

using Rewrite4 = Rewrite<Ipv4Addr>;
using Rewrite6 = Rewrite<Ipv6Addr>;

// Inline: the IPv4 rewrite runs for every packet (and for the quoted datagram of
// an ICMP error, whose header checksum the caller recomputes: ip_csum nullptr).
namespace detail {

// Where the L4 checksum of a TCP/UDP header lives, or nullptr when there is none
// to maintain (an IPv4 UDP datagram sent without one, or no L4 header here).
inline uint8_t* l4ChecksumField(uint8_t* frame, const L3L4Info& ip, uint32_t end, bool ipv4) {
  if (!ip.has_ports) return nullptr;
  uint8_t* l4 = frame + ip.l4_offset;
  if (ip.l4_proto == kProtoTcp) {
    return ip.l4_offset + 18u <= end ? l4 + 16 : nullptr;
  }
  if (ip.l4_proto == kProtoUdp) {
    if (ipv4 && load16(l4 + 6) == 0) return nullptr;
    return l4 + 6;
  }
  return nullptr;
}

// A UDP checksum that computes to zero is sent as all ones (RFC 768).
inline void fixUdpZero(bool udp, uint8_t* csum) {
  if (csum && udp && load16(csum) == 0) store16(csum, 0xffff);
}

// One's-complement difference of replacing `old_word` by `new_word` (RFC 1624):
// accumulated per field, folded once per checksum.
inline uint64_t delta32(uint32_t old_word, uint32_t new_word) {
  return static_cast<uint64_t>(static_cast<uint32_t>(~old_word)) + new_word;
}
inline uint64_t delta16(uint16_t old_word, uint16_t new_word) {
  return static_cast<uint64_t>(static_cast<uint16_t>(~old_word)) + new_word;
}
inline void applyDelta(uint8_t* field, uint64_t delta) {
  uint64_t sum = static_cast<uint16_t>(~load16(field)) + delta;
  store16(field, static_cast<uint16_t>(~csumFold(sum)));
}

// Rewrites the endpoints of the IPv4 header at `h`: its ports at `l4` too unless
// that is nullptr, `l4_csum` (nullptr: none to maintain) and `ip_csum` (nullptr:
// the caller recomputes the header's, as for a quoted datagram).
inline void rewriteEndpoints4(uint8_t* h, uint8_t* l4, uint8_t* l4_csum, bool udp,
                              const Rewrite4& rw, uint8_t* ip_csum) {
  uint64_t addr_delta = 0, port_delta = 0;
  if (rw.set_src) {
    addr_delta += delta32(load32(h + 12), rw.src.addr.v);
    store32(h + 12, rw.src.addr.v);
    if (l4) {
      port_delta += delta16(load16(l4), rw.src.port);
      store16(l4, rw.src.port);
    }
  }
  if (rw.set_dst) {
    addr_delta += delta32(load32(h + 16), rw.dst.addr.v);
    store32(h + 16, rw.dst.addr.v);
    if (l4) {
      port_delta += delta16(load16(l4 + 2), rw.dst.port);
      store16(l4 + 2, rw.dst.port);
    }
  }
  if (ip_csum) applyDelta(ip_csum, addr_delta);
  if (l4_csum) {
    applyDelta(l4_csum, addr_delta + port_delta);
    fixUdpZero(udp, l4_csum);
  }
}

// One parsed IPv4 datagram (or the datagram an ICMP error quotes).
inline void rewrite4(uint8_t* frame, const L3L4Info& ip, uint32_t end, const Rewrite4& rw,
                     uint8_t* ip_csum) {
  rewriteEndpoints4(frame + ip.l3_offset, ip.has_ports ? frame + ip.l4_offset : nullptr,
                    l4ChecksumField(frame, ip, end, true), ip.l4_proto == kProtoUdp, rw, ip_csum);
}

}  // namespace detail

// TCP/UDP datagram (first fragment or unfragmented; ports are not touched in a
// non-first fragment, addresses are). `p` must come from parsePacket on `frame`.
inline void natRewrite(uint8_t* frame, const ParsedPacket& p, const Rewrite4& rw) {
  detail::rewrite4(frame, p.ip, p.ip.l3_offset + p.ip.l3_length, rw, frame + p.ip.l3_offset + 10);
}
void natRewrite(uint8_t* frame, const ParsedPacket& p, const Rewrite6& rw);

// The same for a frame parsePacketFast called plain (untagged IPv4 without options,
// not a fragment, TCP or UDP with its whole header inside the datagram): the
// offsets are constants, so nothing is read back from the ParsedPacket.
inline void natRewritePlain4(uint8_t* frame, const Rewrite4& rw) {
  uint8_t* h = frame + kEthHdrLen;
  uint8_t* l4 = h + kIpv4MinHdrLen;
  const bool udp = h[9] == kProtoUdp;
  uint8_t* csum = !udp ? l4 + 16 : load16(l4 + 6) != 0 ? l4 + 6 : nullptr;
  detail::rewriteEndpoints4(h, l4, csum, udp, rw, h + 10);
}

// ICMP/ICMPv6 error (p.icmp_error): `outer` changes the outer addresses,
// `inner` the quoted datagram's endpoints.
void natRewriteIcmpError(uint8_t* frame, const ParsedPacket& p, const Rewrite4& outer,
                         const Rewrite4& inner);
void natRewriteIcmpError(uint8_t* frame, const ParsedPacket& p, const Rewrite6& outer,
                         const Rewrite6& inner);

// Recomputes from scratch every checksum natRewrite maintains and reports
// whether the stored values agree: the oracle for tests and the fuzzer.
bool checksumsValid(const uint8_t* frame, const ParsedPacket& p);

}  // namespace meshlb
