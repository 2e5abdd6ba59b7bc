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

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
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
