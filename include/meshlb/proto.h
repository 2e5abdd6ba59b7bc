// Wire constants of the protocols the dataplane reads and writes.
#pragma once

#include <cstdint>

namespace meshlb {

constexpr uint16_t kEtherTypeIpv4 = 0x0800;
constexpr uint16_t kEtherTypeArp = 0x0806;
constexpr uint16_t kEtherTypeVlan = 0x8100;
constexpr uint16_t kEtherTypeQinQ = 0x88a8;
constexpr uint16_t kEtherTypeIpv6 = 0x86dd;

constexpr uint8_t kProtoHopByHop = 0;
constexpr uint8_t kProtoIcmp = 1;
constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;
constexpr uint8_t kProtoRouting = 43;
constexpr uint8_t kProtoFragment = 44;
constexpr uint8_t kProtoIcmpv6 = 58;
constexpr uint8_t kProtoNoNext = 59;
constexpr uint8_t kProtoDestOpts = 60;

constexpr uint32_t kEthHdrLen = 14;
constexpr uint32_t kVlanTagLen = 4;
constexpr uint32_t kIpv4MinHdrLen = 20;
constexpr uint32_t kIpv6HdrLen = 40;
constexpr uint32_t kTcpMinHdrLen = 20;
constexpr uint32_t kUdpHdrLen = 8;
constexpr uint32_t kIcmpHdrLen = 8;
constexpr uint32_t kVxlanHdrLen = 8;
// Outer Ethernet + IPv4 + UDP + VXLAN added in front of the inner frame.
constexpr uint32_t kVxlanEncapLen = kEthHdrLen + kIpv4MinHdrLen + kUdpHdrLen + kVxlanHdrLen;
// Over an IPv6 underlay (a vxlan device whose local address is IPv6): 70 bytes.
constexpr uint32_t kVxlanEncap6Len = kEthHdrLen + kIpv6HdrLen + kUdpHdrLen + kVxlanHdrLen;

constexpr uint16_t kVxlanPort = 4789;
constexpr uint8_t kVxlanFlagVni = 0x08;

constexpr uint8_t kTcpFin = 0x01;
constexpr uint8_t kTcpSyn = 0x02;
constexpr uint8_t kTcpRst = 0x04;
constexpr uint8_t kTcpAck = 0x10;

constexpr uint16_t kIpv4FlagDf = 0x4000;
constexpr uint16_t kIpv4FlagMf = 0x2000;
constexpr uint16_t kIpv4FragOffsetMask = 0x1fff;

constexpr uint8_t kIcmpEchoReply = 0;
constexpr uint8_t kIcmpDestUnreach = 3;
constexpr uint8_t kIcmpEchoRequest = 8;
constexpr uint8_t kIcmpTimeExceeded = 11;
constexpr uint8_t kIcmpParamProblem = 12;
constexpr uint8_t kIcmpCodePortUnreach = 3;
constexpr uint8_t kIcmpCodeFragNeeded = 4;

constexpr uint8_t kIcmpv6DestUnreach = 1;
constexpr uint8_t kIcmpv6PacketTooBig = 2;
constexpr uint8_t kIcmpv6TimeExceeded = 3;
constexpr uint8_t kIcmpv6ParamProblem = 4;

}  // namespace meshlb
