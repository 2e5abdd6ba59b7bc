#include "meshlb/vxlan.h"

#include <algorithm>
#include <cstring>

#include "meshlb/bytes.h"
#include "meshlb/checksum.h"
#include "meshlb/hash.h"

namespace meshlb {

EncapResult vxlanCheckMtu(const ParsedPacket& inner, const VxlanTunnel& t) {
  // Outer IP datagram: IPv4 + UDP + VXLAN + the inner frame (its L2 header included).
  uint32_t outer = vxlanEncapLen(t) - kEthHdrLen + inner.ip.l3_offset + inner.ip.l3_length;
  if (outer <= t.underlay_mtu) return EncapResult::kOk;
  bool df = inner.ip.l3 == L3Type::kIpv6 || (inner.ipv4_flags_frag & kIpv4FlagDf);
  return df ? EncapResult::kTooBigDf : EncapResult::kTooBigNoDf;
}

namespace {

// The UDP header and VXLAN header at `udp`; the checksum field left 0.
void writeUdpVxlan(uint8_t* udp, uint32_t udp_len, const VxlanTunnel& t, uint64_t flow_hash) {
  // Source port in the dynamic range 49152-65535 (RFC 7348 section 5).
  uint16_t sport =
      static_cast<uint16_t>(49152 + fastRange32(static_cast<uint32_t>(flow_hash >> 32), 16384));
  storeBe16(udp, sport);
  storeBe16(udp + 2, t.dst_port);
  storeBe16(udp + 4, static_cast<uint16_t>(udp_len));
  store16(udp + 6, 0);
  uint8_t* vx = udp + kUdpHdrLen;
  storeBe32(vx, static_cast<uint32_t>(kVxlanFlagVni) << 24);
  storeBe32(vx + 4, (t.vni & 0xffffff) << 8);
}

// The outer IPv6 header and UDP/VXLAN at `ip`, the UDP checksum computed.
void writeIpv6Outer(uint8_t* ip, uint32_t udp_len, const VxlanTunnel& t, uint64_t flow_hash) {
  storeBe32(ip, 0x60000000u | (static_cast<uint32_t>(flow_hash) & 0xfffff));
  storeBe16(ip + 4, static_cast<uint16_t>(udp_len));
  ip[6] = kProtoUdp;
  ip[7] = t.ttl;
  std::memcpy(ip + 8, t.src_ip6, 16);
  std::memcpy(ip + 24, t.dst_ip6, 16);
  uint8_t* udp = ip + kIpv6HdrLen;
  writeUdpVxlan(udp, udp_len, t, flow_hash);
  // The pseudo-header (addresses, length, next header), then the whole datagram.
  uint64_t sum = csumAdd(ip + 8, 32);
  sum += hton32(udp_len);
  sum += hton32(kProtoUdp);
  uint16_t c = csumFull(udp, udp_len, sum);
  store16(udp + 6, c == 0 ? 0xffff : c);  // 0 is "no checksum": sent as all ones
}

}  // namespace

uint8_t* vxlanEncap(uint8_t* inner_frame, uint32_t inner_len, const VxlanTunnel& t,
                    uint64_t flow_hash) {
  uint8_t* o = inner_frame - vxlanEncapLen(t);
  std::memcpy(o, t.dst_mac, 6);
  std::memcpy(o + 6, t.src_mac, 6);
  storeBe16(o + 12, t.v6 ? kEtherTypeIpv6 : kEtherTypeIpv4);
  uint8_t* ip = o + kEthHdrLen;
  const uint32_t udp_len = kUdpHdrLen + kVxlanHdrLen + inner_len;
  if (t.v6) {
    writeIpv6Outer(ip, udp_len, t, flow_hash);
    return o;
  }
  ip[0] = 0x45;
  ip[1] = 0;
  storeBe16(ip + 2, static_cast<uint16_t>(kIpv4MinHdrLen + udp_len));
  // DF with ID 0 (an atomic datagram, RFC 6864): vxlanCheckMtu keeps the outer
  // packet within the underlay MTU, so it never needs fragmenting.
  storeBe16(ip + 4, 0);
  storeBe16(ip + 6, kIpv4FlagDf);
  ip[8] = t.ttl;
  ip[9] = kProtoUdp;
  store16(ip + 10, 0);
  store32(ip + 12, t.src_ip);
  store32(ip + 16, t.dst_ip);
  store16(ip + 10, csumFull(ip, kIpv4MinHdrLen));

  // Zero UDP checksum over IPv4 (RFC 7348 section 5).
  writeUdpVxlan(ip + kIpv4MinHdrLen, udp_len, t, flow_hash);
  return o;
}

uint32_t buildTooBig(const uint8_t* frame, const ParsedPacket& p, uint32_t mtu,
                     const uint8_t* src_mac, const uint8_t* src_addr, uint8_t* out, uint8_t code) {
  // L2: the original header (VLAN tags kept) with the MACs swapped towards the sender.
  const uint32_t l2 = p.ip.l3_offset;
  std::memcpy(out, frame, l2);
  std::memcpy(out, frame + 6, 6);
  std::memcpy(out + 6, src_mac, 6);
  const uint8_t* orig = frame + p.ip.l3_offset;
  uint8_t* ip = out + l2;

  if (p.ip.l3 == L3Type::kIpv4) {
    const uint32_t quoted = std::min<uint32_t>(p.ip.l3_length, 576 - kIpv4MinHdrLen - kIcmpHdrLen);
    ip[0] = 0x45;
    ip[1] = 0xc0;  // internetwork control, as the kernel's ICMP
    storeBe16(ip + 2, static_cast<uint16_t>(kIpv4MinHdrLen + kIcmpHdrLen + quoted));
    storeBe16(ip + 4, 0);
    storeBe16(ip + 6, 0);
    ip[8] = 64;
    ip[9] = kProtoIcmp;
    store16(ip + 10, 0);
    std::memcpy(ip + 12, src_addr, 4);
    std::memcpy(ip + 16, orig + 12, 4);
    store16(ip + 10, csumFull(ip, kIpv4MinHdrLen));
    uint8_t* icmp = ip + kIpv4MinHdrLen;
    icmp[0] = kIcmpDestUnreach;
    icmp[1] = code;
    store16(icmp + 2, 0);
    storeBe16(icmp + 4, 0);
    storeBe16(icmp + 6, static_cast<uint16_t>(mtu));
    std::memcpy(icmp + kIcmpHdrLen, orig, quoted);
    store16(icmp + 2, csumFull(icmp, kIcmpHdrLen + quoted));
    return l2 + kIpv4MinHdrLen + kIcmpHdrLen + quoted;
  }

  const uint32_t quoted = std::min<uint32_t>(p.ip.l3_length, 1280 - kIpv6HdrLen - kIcmpHdrLen);
  const uint32_t plen = kIcmpHdrLen + quoted;
  storeBe32(ip, 0x60000000u);
  storeBe16(ip + 4, static_cast<uint16_t>(plen));
  ip[6] = kProtoIcmpv6;
  ip[7] = 64;
  std::memcpy(ip + 8, src_addr, 16);
  std::memcpy(ip + 24, orig + 8, 16);
  uint8_t* icmp = ip + kIpv6HdrLen;
  icmp[0] = kIcmpv6PacketTooBig;
  icmp[1] = 0;
  store16(icmp + 2, 0);
  storeBe32(icmp + 4, mtu);
  std::memcpy(icmp + kIcmpHdrLen, orig, quoted);
  uint64_t pseudo = csumAdd(ip + 8, 32) + hton32(plen) + hton32(kProtoIcmpv6);
  store16(icmp + 2, csumFull(icmp, plen, pseudo));
  return l2 + kIpv6HdrLen + plen;
}

}  // namespace meshlb
