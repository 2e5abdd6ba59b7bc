// libFuzzer harness: the parser on arbitrary frames. Whatever it accepts must
// describe bytes that are really there.
#include <cstddef>
#include <cstdint>

#include "fuzz_check.h"
#include "meshlb/parse.h"

using namespace meshlb;

namespace {
void checkInfo(const L3L4Info& ip, size_t size, bool outer) {
  if (ip.l3 == L3Type::kNone) return;
  FUZZ_CHECK(ip.l3_offset < size);
  FUZZ_CHECK(ip.l4_offset <= size);
  FUZZ_CHECK(ip.l4_offset >= ip.l3_offset);
  if (outer) FUZZ_CHECK(static_cast<size_t>(ip.l3_offset) + ip.l3_length <= size);
  if (ip.has_ports) FUZZ_CHECK(static_cast<size_t>(ip.l4_offset) + 4 <= size);
}
}  // namespace

// The inline fast path must agree with the generic parser on every input.
void checkFastPathAgrees(const uint8_t* data, size_t size) {
  ParsedPacket g, f;
  ParseResult rg = parsePacket(data, static_cast<uint32_t>(size), g);
  ParseResult rf = parsePacketFast(data, static_cast<uint32_t>(size), f);
  FUZZ_CHECK(rg == rf);
  if (rg != ParseResult::kOk) return;
  FUZZ_CHECK(g.ip.l3 == f.ip.l3 && g.ip.l4_proto == f.ip.l4_proto);
  FUZZ_CHECK(g.ip.l3_offset == f.ip.l3_offset && g.ip.l4_offset == f.ip.l4_offset);
  FUZZ_CHECK(g.ip.l3_length == f.ip.l3_length && g.ip.has_ports == f.ip.has_ports);
  FUZZ_CHECK(g.ip.sport == f.ip.sport && g.ip.dport == f.ip.dport);
  FUZZ_CHECK(g.ip.fragment == f.ip.fragment && g.vlan_count == f.vlan_count);
  FUZZ_CHECK(g.icmp_error == f.icmp_error && g.vxlan == f.vxlan);
  if (g.ip.l4_proto == kProtoTcp) FUZZ_CHECK(g.tcp_flags == f.tcp_flags);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  checkFastPathAgrees(data, size);
  ParsedPacket p;
  ParseResult r = parsePacket(data, static_cast<uint32_t>(size), p);
  FUZZ_CHECK(static_cast<int>(r) < static_cast<int>(ParseResult::kCount));
  if (r != ParseResult::kOk) return 0;
  checkInfo(p.ip, size, true);
  if (p.icmp_error) {
    checkInfo(p.inner, size, false);
    FUZZ_CHECK(p.inner.l3_offset >= p.ip.l4_offset + 8);
  }
  if (p.vxlan) {
    FUZZ_CHECK(p.vxlan_inner_offset + 14u <= size);
    ParsedPacket inner;
    parsePacket(data + p.vxlan_inner_offset, static_cast<uint32_t>(size - p.vxlan_inner_offset),
                inner);
  }
  return 0;
}
