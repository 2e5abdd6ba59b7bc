#include "meshlb/parse.h"

#include "meshlb/bytes.h"
#include "meshlb/checksum.h"

namespace meshlb {

const char* parseResultName(ParseResult r) {
  static constexpr const char* kNames[] = {
#define MESHLB_X(name, label) label,
      MESHLB_PARSE_RESULTS(MESHLB_X)
#undef MESHLB_X
  };
  auto i = static_cast<unsigned>(r);
  return i < static_cast<unsigned>(ParseResult::kCount) ? kNames[i] : "invalid";
}

namespace {

constexpr int kMaxIpv6ExtHeaders = 8;

// A datagram quoted inside an ICMP error may be cut short: its header must be
// present, its payload need not be, and its checksum is not ours to judge.
enum class Scope { kOuter, kQuoted };

ParseResult parseIpv4(const uint8_t* f, uint32_t len, uint32_t off, Scope scope, L3L4Info& ip,
                      uint16_t& flags_frag, uint32_t& end) {
  if (len - off < kIpv4MinHdrLen) return ParseResult::kIpv4Truncated;
  const uint8_t* p = f + off;
  if ((p[0] >> 4) != 4) return ParseResult::kIpv4BadVersion;
  uint32_t ihl = (p[0] & 0x0f) * 4u;
  if (ihl < kIpv4MinHdrLen) return ParseResult::kIpv4BadIhl;
  if (len - off < ihl) return ParseResult::kIpv4Truncated;
  uint32_t total = loadBe16(p + 2);
  if (total < ihl) return ParseResult::kIpv4BadTotalLength;
  if (scope == Scope::kOuter) {
    if (total > len - off) return ParseResult::kIpv4TotalLengthExceedsFrame;
    // The common 20-byte header summed as five words: no loop, no tail handling.
    uint64_t sum = ihl == kIpv4MinHdrLen ? uint64_t{load32(p)} + load32(p + 4) + load32(p + 8) +
                                               load32(p + 12) + load32(p + 16)
                                         : csumAdd(p, ihl);
    if (csumFold(sum) != 0xffff) return ParseResult::kIpv4BadChecksum;
    end = off + total;
  } else {
    end = total > len - off ? len : off + total;
  }
  flags_frag = loadBe16(p + 6);
  uint32_t frag_bytes = (flags_frag & kIpv4FragOffsetMask) * 8u;
  // A fragment whose end lies past 64 KiB can never be reassembled (ping of death).
  if (frag_bytes + (total - ihl) > 0xffff) return ParseResult::kIpv4BadFragment;
  ip.l3 = L3Type::kIpv4;
  ip.l3_offset = static_cast<uint16_t>(off);
  ip.l4_offset = static_cast<uint16_t>(off + ihl);
  ip.l3_length = static_cast<uint16_t>(total);
  ip.l4_proto = p[9];
  ip.fragment = frag_bytes != 0 || (flags_frag & kIpv4FlagMf);
  ip.first_fragment = ip.fragment && frag_bytes == 0;
  return ParseResult::kOk;
}

ParseResult parseIpv6(const uint8_t* f, uint32_t len, uint32_t off, Scope scope, L3L4Info& ip,
                      uint32_t& end) {
  if (len - off < kIpv6HdrLen) return ParseResult::kIpv6Truncated;
  const uint8_t* p = f + off;
  if ((p[0] >> 4) != 6) return ParseResult::kIpv6BadVersion;
  uint32_t total = kIpv6HdrLen + loadBe16(p + 4);
  if (scope == Scope::kOuter) {
    if (total > len - off) return ParseResult::kIpv6PayloadExceedsFrame;
    end = off + total;
  } else {
    end = total > len - off ? len : off + total;
  }
  uint8_t nh = p[6];
  uint32_t cur = off + kIpv6HdrLen;
  bool stop = false;
  for (int n = 0; !stop; ++n) {
    switch (nh) {
      case kProtoHopByHop:
        if (n != 0) return ParseResult::kIpv6HopByHopNotFirst;
        [[fallthrough]];
      case kProtoRouting:
      case kProtoDestOpts:
      case 51: /* AH */ {
        if (n >= kMaxIpv6ExtHeaders) return ParseResult::kIpv6ExtChainTooLong;
        if (end - cur < 8) return ParseResult::kIpv6ExtTruncated;
        uint32_t hlen = nh == 51 ? (f[cur + 1] + 2u) * 4u : (f[cur + 1] + 1u) * 8u;
        if (end - cur < hlen) return ParseResult::kIpv6ExtTruncated;
        nh = f[cur];
        cur += hlen;
        break;
      }
      case kProtoFragment: {
        if (n >= kMaxIpv6ExtHeaders) return ParseResult::kIpv6ExtChainTooLong;
        if (end - cur < 8) return ParseResult::kIpv6ExtTruncated;
        uint16_t offlg = loadBe16(f + cur + 2);
        ip.fragment = true;
        ip.first_fragment = (offlg & 0xfff8) == 0;
        nh = f[cur];
        cur += 8;
        break;
      }
      default:
        stop = true;
    }
  }
  ip.l3 = L3Type::kIpv6;
  ip.l3_offset = static_cast<uint16_t>(off);
  ip.l4_offset = static_cast<uint16_t>(cur);
  ip.l3_length = static_cast<uint16_t>(total);
  ip.l4_proto = nh;
  return ParseResult::kOk;
}

ParseResult parseIp(const uint8_t* f, uint32_t len, uint32_t off, uint16_t ethertype, Scope scope,
                    L3L4Info& ip, uint16_t& flags_frag, uint32_t& end) {
  if (ethertype == kEtherTypeIpv4) return parseIpv4(f, len, off, scope, ip, flags_frag, end);
  return parseIpv6(f, len, off, scope, ip, end);
}

bool l4Present(const L3L4Info& ip) { return !ip.fragment || ip.first_fragment; }

// The quoted datagram of an ICMP error: IP header plus at least the 8 bytes that
// hold the ports (RFC 792, RFC 4443).
ParseResult parseQuoted(const uint8_t* f, uint32_t len, uint32_t off, L3Type outer,
                        L3L4Info& inner) {
  uint16_t ff = 0;
  uint32_t end = 0;
  uint16_t et = outer == L3Type::kIpv4 ? kEtherTypeIpv4 : kEtherTypeIpv6;
  ParseResult r = parseIp(f, len, off, et, Scope::kQuoted, inner, ff, end);
  switch (r) {
    case ParseResult::kOk:
      break;
    case ParseResult::kIpv4Truncated:
    case ParseResult::kIpv6Truncated:
    case ParseResult::kIpv6ExtTruncated:
      return ParseResult::kIcmpInnerTruncated;
    default:
      return ParseResult::kIcmpInnerMalformed;
  }
  if ((inner.l4_proto == kProtoTcp || inner.l4_proto == kProtoUdp) && l4Present(inner)) {
    if (end - inner.l4_offset < 8) return ParseResult::kIcmpInnerTruncated;
    inner.sport = load16(f + inner.l4_offset);
    inner.dport = load16(f + inner.l4_offset + 2);
    inner.has_ports = true;
  }
  return ParseResult::kOk;
}

bool isIcmpError(L3Type l3, uint8_t type) {
  if (l3 == L3Type::kIpv4) {
    return type == kIcmpDestUnreach || type == kIcmpTimeExceeded || type == kIcmpParamProblem;
  }
  return type >= kIcmpv6DestUnreach && type <= kIcmpv6ParamProblem;
}

}  // namespace

ParseResult parsePacket(const uint8_t* f, uint32_t len, ParsedPacket& out, uint16_t vxlan_port) {
  out = ParsedPacket{};
  if (len < kEthHdrLen) return ParseResult::kEthTruncated;
  uint16_t et = loadBe16(f + 12);
  uint32_t off = kEthHdrLen;
  while (et == kEtherTypeVlan || et == kEtherTypeQinQ) {
    if (out.vlan_count == 2) return ParseResult::kVlanTooManyTags;
    if (len - off < kVlanTagLen) return ParseResult::kVlanTruncated;
    if (out.vlan_count == 0) out.vlan_tci = loadBe16(f + off);
    ++out.vlan_count;
    et = loadBe16(f + off + 2);
    off += kVlanTagLen;
  }
  out.ethertype = et;
  if (et != kEtherTypeIpv4 && et != kEtherTypeIpv6) return ParseResult::kNotIp;

  L3L4Info& ip = out.ip;
  uint32_t end = 0;
  ParseResult r = parseIp(f, len, off, et, Scope::kOuter, ip, out.ipv4_flags_frag, end);
  if (r != ParseResult::kOk) return r;
  if (!l4Present(ip)) return ParseResult::kOk;

  const uint32_t l4 = ip.l4_offset;
  const uint32_t avail = end - l4;
  const uint8_t* p = f + l4;
  switch (ip.l4_proto) {
    case kProtoTcp: {
      if (avail < kTcpMinHdrLen) return ParseResult::kTcpTruncated;
      uint32_t doff = (p[12] >> 4) * 4u;
      if (doff < kTcpMinHdrLen) return ParseResult::kTcpBadDataOffset;
      if (avail < doff) return ParseResult::kTcpTruncated;
      ip.sport = load16(p);
      ip.dport = load16(p + 2);
      ip.has_ports = true;
      out.tcp_flags = p[13];
      out.tcp_header_len = static_cast<uint8_t>(doff);
      break;
    }
    case kProtoUdp: {
      if (avail < kUdpHdrLen) return ParseResult::kUdpTruncated;
      uint32_t ulen = loadBe16(p + 4);
      // The UDP length covers the whole datagram, so only an unfragmented one can be checked.
      if (!ip.fragment && (ulen < kUdpHdrLen || ulen > avail)) return ParseResult::kUdpBadLength;
      ip.sport = load16(p);
      ip.dport = load16(p + 2);
      ip.has_ports = true;
      if (ip.dport == hton16(vxlan_port) && !ip.fragment) {
        uint32_t payload = (ulen < avail ? ulen : avail) - kUdpHdrLen;
        if (payload < kVxlanHdrLen + kEthHdrLen) return ParseResult::kVxlanTruncated;
        const uint8_t* vx = p + kUdpHdrLen;
        // RFC 7348: the I flag must be set; the reserved bits are ignored on receipt.
        if (!(vx[0] & kVxlanFlagVni)) return ParseResult::kVxlanBadFlags;
        out.vxlan = true;
        out.vni = loadBe32(vx + 4) >> 8;
        out.vxlan_inner_offset = static_cast<uint16_t>(l4 + kUdpHdrLen + kVxlanHdrLen);
      }
      break;
    }
    case kProtoIcmp:
    case kProtoIcmpv6: {
      if ((ip.l4_proto == kProtoIcmp) != (ip.l3 == L3Type::kIpv4)) break;  // foreign, not ours
      if (ip.fragment) break;  // errors are small; a fragmented one is passed on as is
      if (avail < kIcmpHdrLen) return ParseResult::kIcmpTruncated;
      out.icmp_type = p[0];
      out.icmp_code = p[1];
      if (!isIcmpError(ip.l3, p[0])) break;
      r = parseQuoted(f, end, l4 + kIcmpHdrLen, ip.l3, out.inner);
      if (r != ParseResult::kOk) return r;
      out.icmp_error = true;
      break;
    }
    default:
      break;
  }
  return ParseResult::kOk;
}

}  // namespace meshlb
