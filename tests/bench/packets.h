// A 64-byte IPv4 TCP frame with valid checksums, for the benchmarks.
#pragma once

#include <cstdint>
#include <cstring>

#include "meshlb/bytes.h"
#include "meshlb/checksum.h"
#include "meshlb/proto.h"

namespace meshlb {

constexpr uint32_t kPktSize = 64;

// Addresses and ports in network order.
inline void buildTcp(uint8_t* f, uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport,
                     uint8_t flags) {
  std::memset(f, 0, kPktSize);
  const uint8_t macs[12] = {2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1};
  std::memcpy(f, macs, 12);
  storeBe16(f + 12, kEtherTypeIpv4);
  uint8_t* ip = f + 14;
  ip[0] = 0x45;
  storeBe16(ip + 2, 40);
  ip[8] = 64;
  ip[9] = kProtoTcp;
  store32(ip + 12, src);
  store32(ip + 16, dst);
  store16(ip + 10, csumFull(ip, 20));
  uint8_t* tcp = ip + 20;
  store16(tcp, sport);
  store16(tcp + 2, dport);
  tcp[12] = 5 << 4;
  tcp[13] = flags;
  storeBe16(tcp + 14, 65535);
  uint64_t pseudo = load32(ip + 12) + load32(ip + 16) + hton16(kProtoTcp) + hton16(20);
  store16(tcp + 16, csumFull(tcp, 20, pseudo));
}

// A 74-byte IPv6 TCP frame (no extension headers) with a valid checksum.
constexpr uint32_t kPkt6Size = 74;
inline void buildTcp6(uint8_t* f, const uint8_t* src, const uint8_t* dst, uint16_t sport,
                      uint16_t dport, uint8_t flags) {
  std::memset(f, 0, kPkt6Size);
  const uint8_t macs[12] = {2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1};
  std::memcpy(f, macs, 12);
  storeBe16(f + 12, kEtherTypeIpv6);
  uint8_t* ip = f + 14;
  ip[0] = 0x60;
  storeBe16(ip + 4, 20);
  ip[6] = kProtoTcp;
  ip[7] = 64;
  std::memcpy(ip + 8, src, 16);
  std::memcpy(ip + 24, dst, 16);
  uint8_t* tcp = ip + 40;
  store16(tcp, sport);
  store16(tcp + 2, dport);
  tcp[12] = 5 << 4;
  tcp[13] = flags;
  storeBe16(tcp + 14, 65535);
  const uint64_t pseudo = csumAdd(ip + 8, 32) + hton32(20) + hton32(kProtoTcp);
  store16(tcp + 16, csumFull(tcp, 20, pseudo));
}

}  // namespace meshlb
