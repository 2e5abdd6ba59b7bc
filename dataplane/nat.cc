#include "meshlb/nat.h"

#include "meshlb/bytes.h"
#include "meshlb/checksum.h"

namespace meshlb {

namespace {

// Where the L4 checksum of a TCP/UDP header lives, or nullptr when there is none
// to maintain (an IPv4 UDP datagram sent without one, or no L4 header here).
uint8_t* l4ChecksumField(uint8_t* frame, const L3L4Info& ip, uint32_t end, bool ipv4) {
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
void fixUdpZero(const L3L4Info& ip, uint8_t* csum) {
  if (csum && ip.l4_proto == kProtoUdp && load16(csum) == 0) store16(csum, 0xffff);
}

void setPort(uint8_t* port_field, uint16_t port, uint8_t* csum) {
  if (csum) csumReplace16(csum, load16(port_field), port);
  store16(port_field, port);
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

// Rewrites one IPv4 datagram's endpoints; `ip_csum` is its header checksum field
// (the quoted header's is recomputed by the caller instead).
void rewrite4(uint8_t* frame, const L3L4Info& ip, uint32_t end, const Rewrite4& rw,
              uint8_t* ip_csum) {
  uint8_t* h = frame + ip.l3_offset;
  uint8_t* csum = l4ChecksumField(frame, ip, end, true);
  uint8_t* l4 = frame + ip.l4_offset;
  uint64_t addr_delta = 0, port_delta = 0;
  if (rw.set_src) {
    addr_delta += delta32(load32(h + 12), rw.src.addr.v);
    store32(h + 12, rw.src.addr.v);
    if (ip.has_ports) {
      port_delta += delta16(load16(l4), rw.src.port);
      store16(l4, rw.src.port);
    }
  }
  if (rw.set_dst) {
    addr_delta += delta32(load32(h + 16), rw.dst.addr.v);
    store32(h + 16, rw.dst.addr.v);
    if (ip.has_ports) {
      port_delta += delta16(load16(l4 + 2), rw.dst.port);
      store16(l4 + 2, rw.dst.port);
    }
  }
  if (ip_csum) applyDelta(ip_csum, addr_delta);
  if (csum) {
    applyDelta(csum, addr_delta + port_delta);
    fixUdpZero(ip, csum);
  }
}

void rewrite6(uint8_t* frame, const L3L4Info& ip, uint32_t end, const Rewrite6& rw) {
  uint8_t* h = frame + ip.l3_offset;
  uint8_t* csum = l4ChecksumField(frame, ip, end, false);
  uint8_t* l4 = frame + ip.l4_offset;
  if (rw.set_src) {
    if (csum) csumReplace128(csum, h + 8, rw.src.addr.b);
    std::memcpy(h + 8, rw.src.addr.b, 16);
    if (ip.has_ports) setPort(l4, rw.src.port, csum);
  }
  if (rw.set_dst) {
    if (csum) csumReplace128(csum, h + 24, rw.dst.addr.b);
    std::memcpy(h + 24, rw.dst.addr.b, 16);
    if (ip.has_ports) setPort(l4 + 2, rw.dst.port, csum);
  }
  fixUdpZero(ip, csum);
}

uint32_t outerEnd(const ParsedPacket& p) { return p.ip.l3_offset + p.ip.l3_length; }

uint64_t pseudoHeader4(const uint8_t* ip, uint32_t l4_len, uint8_t proto) {
  uint64_t sum = load32(ip + 12);
  sum += load32(ip + 16);
  sum += hton16(proto);
  sum += hton16(static_cast<uint16_t>(l4_len));
  return sum;
}

uint64_t pseudoHeader6(const uint8_t* ip, uint32_t l4_len, uint8_t proto) {
  uint64_t sum = csumAdd(ip + 8, 32);
  sum += hton32(l4_len);
  sum += hton32(proto);
  return sum;
}

void recomputeIcmp(uint8_t* frame, const ParsedPacket& p) {
  uint8_t* icmp = frame + p.ip.l4_offset;
  uint32_t len = outerEnd(p) - p.ip.l4_offset;
  store16(icmp + 2, 0);
  uint64_t sum = p.ip.l3 == L3Type::kIpv6
                     ? pseudoHeader6(frame + p.ip.l3_offset, len, kProtoIcmpv6)
                     : 0;
  store16(icmp + 2, csumFull(icmp, len, sum));
}

}  // namespace

void natRewrite(uint8_t* frame, const ParsedPacket& p, const Rewrite4& rw) {
  rewrite4(frame, p.ip, outerEnd(p), rw, frame + p.ip.l3_offset + 10);
}

void natRewrite(uint8_t* frame, const ParsedPacket& p, const Rewrite6& rw) {
  rewrite6(frame, p.ip, outerEnd(p), rw);
}

void natRewriteIcmpError(uint8_t* frame, const ParsedPacket& p, const Rewrite4& outer,
                         const Rewrite4& inner) {
  uint8_t* h = frame + p.ip.l3_offset;
  if (outer.set_src) {
    csumReplace32(h + 10, load32(h + 12), outer.src.addr.v);
    store32(h + 12, outer.src.addr.v);
  }
  if (outer.set_dst) {
    csumReplace32(h + 10, load32(h + 16), outer.dst.addr.v);
    store32(h + 16, outer.dst.addr.v);
  }
  uint8_t* ih = frame + p.inner.l3_offset;
  rewrite4(frame, p.inner, outerEnd(p), inner, nullptr);
  uint32_t ihl = (ih[0] & 0x0f) * 4u;
  store16(ih + 10, 0);
  store16(ih + 10, csumFull(ih, ihl));
  recomputeIcmp(frame, p);
}

void natRewriteIcmpError(uint8_t* frame, const ParsedPacket& p, const Rewrite6& outer,
                         const Rewrite6& inner) {
  uint8_t* h = frame + p.ip.l3_offset;
  if (outer.set_src) std::memcpy(h + 8, outer.src.addr.b, 16);
  if (outer.set_dst) std::memcpy(h + 24, outer.dst.addr.b, 16);
  rewrite6(frame, p.inner, outerEnd(p), inner);
  recomputeIcmp(frame, p);
}

bool checksumsValid(const uint8_t* frame, const ParsedPacket& p) {
  const uint8_t* h = frame + p.ip.l3_offset;
  const bool v4 = p.ip.l3 == L3Type::kIpv4;
  if (v4 && csumFold(csumAdd(h, (h[0] & 0x0f) * 4u)) != 0xffff) return false;
  if (p.icmp_error && p.inner.l3 == L3Type::kIpv4) {
    const uint8_t* ih = frame + p.inner.l3_offset;
    if (csumFold(csumAdd(ih, (ih[0] & 0x0f) * 4u)) != 0xffff) return false;
  }
  if (p.ip.fragment) return true;  // the L4 checksum covers bytes not in this fragment
  const uint8_t* l4 = frame + p.ip.l4_offset;
  const uint32_t l4_len = outerEnd(p) - p.ip.l4_offset;
  uint8_t proto = p.ip.l4_proto;
  uint64_t pseudo = v4 ? pseudoHeader4(h, l4_len, proto) : pseudoHeader6(h, l4_len, proto);
  switch (proto) {
    case kProtoTcp:
      return csumFold(csumAdd(l4, l4_len, pseudo)) == 0xffff;
    case kProtoUdp:
      if (v4 && load16(l4 + 6) == 0) return true;
      return csumFold(csumAdd(l4, l4_len, pseudo)) == 0xffff;
    case kProtoIcmp:
      return !v4 || csumFold(csumAdd(l4, l4_len)) == 0xffff;
    case kProtoIcmpv6:
      return v4 || csumFold(csumAdd(l4, l4_len, pseudo)) == 0xffff;
    default:
      return true;
  }
}

}  // namespace meshlb
