// IPVS's connection sync protocol, version 1 (net/netfilter/ipvs/ip_vs_sync.c): the
// messages meshlb's daemons send and take, byte for byte as the kernel lays them out.
#include "sync.h"

#include <gtest/gtest.h>

namespace meshlb {
namespace {

Ipv4Addr ip(const char* s) { return IpAddr::parse(s).value().v4(); }

SyncConn conn(bool snat) {
  SyncConn c;
  c.protocol = kProtoTcp;
  c.flags = kConnFMasq;
  c.state = static_cast<uint16_t>(ConnState::kEstablished);
  c.caddr = ip("198.18.0.10"), c.cport = hton16(40000);
  c.vaddr = ip("198.18.0.100"), c.vport = hton16(8080);
  c.daddr = ip("198.19.1.1"), c.dport = hton16(80);
  c.timeout_s = 900;
  if (snat) c.has_snat = true, c.snat = ip("198.19.0.1"), c.snat_port = hton16(1025);
  return c;
}

std::string hex(const std::string& b) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : b) out += {d[c >> 4], d[c & 15]};
  return out;
}

TEST(SyncProtocol, TheKernelsLayout) {
  const auto m = encodeSyncMessages(7, {conn(false)}, 1472);
  ASSERT_EQ(m.size(), 1u);
  // ip_vs_sync_mesg: reserved 0, syncid, size 44, one connection, version 1, spare;
  // ip_vs_sync_v4: type 0, TCP, version 0 | size 36, flags, state ESTABLISHED, cport,
  // vport, dport, fwmark, timeout 900 s, caddr, vaddr, daddr.
  EXPECT_EQ(hex(m[0]),
            "0007002c01010000"
            "00060024000000000001"
            "9c401f900050"
            "0000000000000384"
            "c612000ac6120064c6130101");
}

TEST(SyncProtocol, RoundTripPaddingSplittingAndSnat) {
  std::vector<SyncConn> conns;
  for (int i = 0; i < 300; ++i) {
    SyncConn c = conn(i % 2);
    c.cport = hton16(static_cast<uint16_t>(10000 + i));
    conns.push_back(c);
  }
  const auto msgs = encodeSyncMessages(1, conns, 1472);
  std::vector<SyncConn> back;
  for (const std::string& m : msgs) {
    EXPECT_LE(m.size(), 1472u);
    SyncMessage out;
    std::string why;
    ASSERT_EQ(
        decodeSyncMessage(reinterpret_cast<const uint8_t*>(m.data()), m.size(), 1, &out, &why),
        SyncDecode::kOk)
        << why;
    back.insert(back.end(), out.conns.begin(), out.conns.end());
  }
  EXPECT_GT(msgs.size(), 1u);
  EXPECT_EQ(back, conns);
  // A backup of another syncid ignores the messages; syncid 0 takes them all.
  SyncMessage out;
  std::string why;
  const auto* d = reinterpret_cast<const uint8_t*>(msgs[0].data());
  EXPECT_EQ(decodeSyncMessage(d, msgs[0].size(), 2, &out, &why), SyncDecode::kOtherSyncId);
  EXPECT_EQ(decodeSyncMessage(d, msgs[0].size(), 0, &out, &why), SyncDecode::kOk);
}

TEST(SyncProtocol, WhatTheKernelSkipsAndRefuses) {
  std::string m = encodeSyncMessages(1, {conn(true)}, 1472)[0];
  SyncMessage out;
  std::string why;
  auto decode = [&](const std::string& b) {
    return decodeSyncMessage(reinterpret_cast<const uint8_t*>(b.data()), b.size(), 0, &out, &why);
  };
  // meshlb's SNAT parameter is optional (IPVS_OPT_F_PARAM): a kernel skips it. Made
  // mandatory, the connection is skipped, as the kernel does with one it cannot read.
  std::string mandatory = m;
  mandatory[8 + 36] = 8;
  ASSERT_EQ(decode(mandatory), SyncDecode::kOk);
  EXPECT_TRUE(out.conns.empty());
  EXPECT_EQ(out.skipped, 1u);
  // Bad input: every cut, a lying size, a count beyond the message, version 0.
  for (size_t n = 0; n < m.size(); ++n) {
    EXPECT_EQ(decode(m.substr(0, n)), SyncDecode::kBad) << n;
  }
  std::string more = m;
  more[4] = 2;
  EXPECT_EQ(decode(more), SyncDecode::kBad);
  std::string v0 = m;
  v0[5] = 0;
  EXPECT_EQ(decode(v0), SyncDecode::kBad);
  EXPECT_NE(why.find("version 1"), std::string::npos);
  std::string garbage(200, '\xff');
  garbage[2] = 0, garbage[3] = static_cast<char>(200);
  EXPECT_EQ(decode(garbage), SyncDecode::kBad);
}

}  // namespace
}  // namespace meshlb
