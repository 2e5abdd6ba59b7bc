// libFuzzer harness: NAT rewrite then VXLAN round trip. The input is 40 bytes of
// rewrite parameters followed by a frame. Oracles: a packet whose checksums were
// valid before the rewrite has valid checksums after it (full recomputation),
// still parses to the new endpoints, and comes back byte for byte from a VXLAN
// encapsulation and decapsulation; natRewritePlain4 (the worker's) writes the
// same bytes as natRewrite wherever the fast parser calls a frame plain.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "fuzz_check.h"
#include "meshlb/bytes.h"
#include "meshlb/nat.h"
#include "meshlb/vxlan.h"

using namespace meshlb;

namespace {

constexpr size_t kParamBytes = 40;
constexpr uint32_t kMaxFrame = 9216;
// No VXLAN recognition in the NAT part: a rewrite may legitimately aim at 4789.
constexpr uint16_t kNoVxlan = 0;

template <class Addr>
Rewrite<Addr> readRewrite(const uint8_t* prm) {
  Rewrite<Addr> rw;
  rw.set_src = prm[0] & 1;
  rw.set_dst = prm[0] & 2;
  std::memcpy(&rw.src.addr, prm + 4, sizeof(Addr));
  std::memcpy(&rw.dst.addr, prm + 20, sizeof(Addr));
  // Ports never 0: with kNoVxlan as "the VXLAN port", 0 would turn VXLAN parsing on.
  rw.src.port = static_cast<uint16_t>(load16(prm + 36) | 0x100);
  rw.dst.port = static_cast<uint16_t>(load16(prm + 38) | 0x100);
  return rw;
}

template <class Addr>
void natAndCheck(uint8_t* f, uint32_t len, const ParsedPacket& p, const uint8_t* prm) {
  Rewrite<Addr> rw = readRewrite<Addr>(prm);
  if (p.icmp_error) {
    Rewrite<Addr> inner = readRewrite<Addr>(prm + 1);
    inner.set_src = prm[0] & 4;
    inner.set_dst = prm[0] & 8;
    natRewriteIcmpError(f, p, rw, inner);
  } else {
    std::vector<uint8_t> orig(f, f + len);
    natRewrite(f, p, rw);
    // The fast path's rewrite of a frame the fast parser calls plain: the same bytes.
    ParsedPacket fp;
    bool plain = false;
    if constexpr (std::is_same_v<Addr, Ipv4Addr>) {
      if (parsePacketFast(orig.data(), len, fp, plain, kNoVxlan) == ParseResult::kOk && plain) {
        natRewritePlain4(orig.data(), rw);
        FUZZ_CHECK(std::memcmp(orig.data(), f, len) == 0);
      }
    }
  }
  ParsedPacket q;
  FUZZ_CHECK(parsePacket(f, len, q, kNoVxlan) == ParseResult::kOk);
  FUZZ_CHECK(checksumsValid(f, q));
  if (!p.icmp_error && p.ip.has_ports) {
    if (rw.set_src) FUZZ_CHECK(q.ip.sport == rw.src.port);
    if (rw.set_dst) FUZZ_CHECK(q.ip.dport == rw.dst.port);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < kParamBytes || size - kParamBytes > kMaxFrame) return 0;
  const uint8_t* prm = data;
  const uint32_t len = static_cast<uint32_t>(size - kParamBytes);
  std::vector<uint8_t> buf(kVxlanEncapLen + len);
  uint8_t* f = buf.data() + kVxlanEncapLen;
  std::memcpy(f, data + kParamBytes, len);

  ParsedPacket p;
  if (parsePacket(f, len, p, kNoVxlan) != ParseResult::kOk) return 0;
  const bool natable = p.icmp_error || p.ip.has_ports;
  if (natable && checksumsValid(f, p)) {
    if (p.ip.l3 == L3Type::kIpv4) {
      natAndCheck<Ipv4Addr>(f, len, p, prm);
    } else {
      natAndCheck<Ipv6Addr>(f, len, p, prm);
    }
  }

  // VXLAN round trip of whatever frame we now hold.
  std::vector<uint8_t> before(f, f + len);
  VxlanTunnel t{};
  std::memcpy(t.src_mac, prm + 4, 6);
  std::memcpy(t.dst_mac, prm + 10, 6);
  t.src_ip = load32(prm + 20);
  t.dst_ip = load32(prm + 24);
  t.vni = load32(prm + 28) & 0xffffff;
  uint64_t hash;
  std::memcpy(&hash, prm + 32, 8);
  ParsedPacket inner;
  FUZZ_CHECK(parsePacket(f, len, inner, kNoVxlan) == ParseResult::kOk);
  if (vxlanCheckMtu(inner, t) == EncapResult::kTooBigDf) {
    std::vector<uint8_t> icmp(kTooBigMaxLen);
    uint32_t n = buildTooBig(f, inner, vxlanInnerMtu(t), t.src_mac, prm + 20, icmp.data());
    FUZZ_CHECK(n <= kTooBigMaxLen);
    ParsedPacket ip;
    FUZZ_CHECK(parsePacket(icmp.data(), n, ip, kNoVxlan) == ParseResult::kOk);
    FUZZ_CHECK(checksumsValid(icmp.data(), ip));
  }
  uint8_t* o = vxlanEncap(f, len, t, hash);
  const uint32_t olen = len + kVxlanEncapLen;
  if (olen > 0xffff - 14) return 0;
  ParsedPacket outer;
  FUZZ_CHECK(parsePacket(o, olen, outer) == ParseResult::kOk);
  FUZZ_CHECK(outer.vxlan && outer.vni == t.vni);
  FUZZ_CHECK(checksumsValid(o, outer));
  FUZZ_CHECK(olen - outer.vxlan_inner_offset == len);
  FUZZ_CHECK(std::memcmp(o + outer.vxlan_inner_offset, before.data(), len) == 0);
  return 0;
}
