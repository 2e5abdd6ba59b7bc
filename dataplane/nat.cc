#include "meshlb/nat.h"

#include "meshlb/bytes.h"
#include "meshlb/checksum.h"

namespace meshlb {

namespace {

void setPort(uint8_t* port_field, uint16_t port, uint8_t* csum) {
  if (csum) csumReplace16(csum, load16(port_field), port);
  store16(port_field, port);
}

void rewrite6(uint8_t* frame, const L3L4Info& ip, uint32_t end, const Rewrite6& rw) {
  uint8_t* h = frame + ip.l3_offset;
  uint8_t* csum = detail::l4ChecksumField(frame, ip, end, false);
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
  detail::fixUdpZero(ip.l4_proto == kProtoUdp, csum);
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
  uint64_t sum =
      p.ip.l3 == L3Type::kIpv6 ? pseudoHeader6(frame + p.ip.l3_offset, len, kProtoIcmpv6) : 0;
  store16(icmp + 2, csumFull(icmp, len, sum));
}

}  // namespace

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
  detail::rewrite4(frame, p.inner, outerEnd(p), inner, nullptr);
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
