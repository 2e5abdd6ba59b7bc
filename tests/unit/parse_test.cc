#include "meshlb/parse.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <set>

#include "golden.h"

namespace meshlb {
namespace {

using test::golden;

struct ParseCase {
  const char* packet;
  ParseResult verdict;
  L3Type l3 = L3Type::kNone;
  uint8_t l4_proto = 0;
  uint16_t sport = 0, dport = 0;  // host order; 0 = no ports expected
  bool fragment = false, first_fragment = false;
  uint8_t vlans = 0;
  bool icmp_error = false;
  uint16_t inner_sport = 0, inner_dport = 0;
  bool vxlan = false;
  uint32_t vni = 0;
};

class ParseTable : public ::testing::TestWithParam<ParseCase> {};

TEST_P(ParseTable, Verdict) {
  const ParseCase& c = GetParam();
  const auto& pkt = golden(c.packet);
  ParsedPacket p;
  ASSERT_EQ(parsePacket(pkt.data(), static_cast<uint32_t>(pkt.size()), p), c.verdict)
      << parseResultName(parsePacket(pkt.data(), static_cast<uint32_t>(pkt.size()), p));
  if (c.verdict != ParseResult::kOk) return;
  EXPECT_EQ(p.ip.l3, c.l3);
  EXPECT_EQ(p.ip.l4_proto, c.l4_proto);
  EXPECT_EQ(p.ip.has_ports, c.sport != 0);
  EXPECT_EQ(ntohs(p.ip.sport), c.sport);
  EXPECT_EQ(ntohs(p.ip.dport), c.dport);
  EXPECT_EQ(p.ip.fragment, c.fragment);
  EXPECT_EQ(p.ip.first_fragment, c.first_fragment);
  EXPECT_EQ(p.vlan_count, c.vlans);
  EXPECT_EQ(p.icmp_error, c.icmp_error);
  if (c.icmp_error) {
    EXPECT_EQ(ntohs(p.inner.sport), c.inner_sport);
    EXPECT_EQ(ntohs(p.inner.dport), c.inner_dport);
    EXPECT_EQ(p.inner.l3, c.l3);
  }
  EXPECT_EQ(p.vxlan, c.vxlan);
  EXPECT_EQ(p.vni, c.vni);
  // Offsets always stay inside the frame.
  EXPECT_LE(p.ip.l3_offset + p.ip.l3_length, pkt.size());
  EXPECT_LE(p.ip.l4_offset, p.ip.l3_offset + p.ip.l3_length);
}

constexpr auto v4 = L3Type::kIpv4;
constexpr auto v6 = L3Type::kIpv6;
constexpr auto ok = ParseResult::kOk;

INSTANTIATE_TEST_SUITE_P(
    Golden, ParseTable,
    ::testing::Values(
        ParseCase{"tcp4_syn", ok, v4, 6, 40000, 8080},
        ParseCase{"tcp4_options", ok, v4, 6, 40001, 8080}, ParseCase{"udp4", ok, v4, 17, 5000, 53},
        ParseCase{"udp4_zero_csum", ok, v4, 17, 5001, 53},
        ParseCase{"vlan_tcp4", ok, v4, 6, 40002, 8080, false, false, 1},
        ParseCase{"qinq_udp4", ok, v4, 17, 5002, 53, false, false, 2},
        ParseCase{"frag4_first", ok, v4, 17, 5003, 53, true, true},
        ParseCase{"frag4_later", ok, v4, 17, 0, 0, true, false},
        ParseCase{"frag4_first_tcp", ok, v4, 6, 40004, 8080, true, true},
        ParseCase{"tcp4_df", ok, v4, 6, 40005, 8080}, ParseCase{"tcp6", ok, v6, 6, 40003, 8080},
        ParseCase{"ipv6_ext_udp", ok, v6, 17, 5004, 53},
        ParseCase{"frag6_first", ok, v6, 17, 5005, 53, true, true},
        ParseCase{"frag6_later", ok, v6, 17, 0, 0, true, false},
        ParseCase{"icmp4_port_unreach", ok, v4, 1, 0, 0, false, false, 0, true, 61000, 53},
        ParseCase{"icmp4_frag_needed_tcp", ok, v4, 1, 0, 0, false, false, 0, true, 61001, 80},
        ParseCase{"icmp6_too_big_tcp", ok, v6, 58, 0, 0, false, false, 0, true, 61002, 80},
        ParseCase{"icmp4_echo", ok, v4, 1},
        ParseCase{"vxlan_tcp4", ok, v4, 17, 50123, 4789, false, false, 0, false, 0, 0, true, 4097},
        ParseCase{"arp", ParseResult::kNotIp},
        ParseCase{"bad_ipv4_checksum", ParseResult::kIpv4BadChecksum},
        ParseCase{"bad_ipv4_ihl", ParseResult::kIpv4BadIhl},
        ParseCase{"bad_ipv4_version", ParseResult::kIpv4BadVersion},
        ParseCase{"bad_ipv4_total_length_short", ParseResult::kIpv4BadTotalLength},
        ParseCase{"bad_ipv4_total_length_long", ParseResult::kIpv4TotalLengthExceedsFrame},
        ParseCase{"bad_ipv4_ping_of_death", ParseResult::kIpv4BadFragment},
        ParseCase{"bad_tcp_data_offset", ParseResult::kTcpBadDataOffset},
        ParseCase{"bad_tcp_data_offset_long", ParseResult::kTcpTruncated},
        ParseCase{"bad_udp_length_short", ParseResult::kUdpBadLength},
        ParseCase{"bad_udp_length_long", ParseResult::kUdpBadLength},
        ParseCase{"bad_vxlan_flags", ParseResult::kVxlanBadFlags},
        ParseCase{"bad_vxlan_truncated", ParseResult::kVxlanTruncated},
        ParseCase{"bad_ipv6_hbh_not_first", ParseResult::kIpv6HopByHopNotFirst},
        ParseCase{"bad_ipv6_chain_too_long", ParseResult::kIpv6ExtChainTooLong},
        ParseCase{"bad_ipv6_payload_long", ParseResult::kIpv6PayloadExceedsFrame},
        ParseCase{"bad_vlan_three_tags", ParseResult::kVlanTooManyTags},
        ParseCase{"bad_icmp_inner_truncated", ParseResult::kIcmpInnerTruncated},
        ParseCase{"bad_icmp_inner_version", ParseResult::kIcmpInnerMalformed}),
    [](const auto& info) { return std::string(info.param.packet); });

TEST(Parse, VxlanInnerFrameParses) {
  const auto& pkt = golden("vxlan_tcp4");
  ParsedPacket outer, inner;
  ASSERT_EQ(parsePacket(pkt.data(), static_cast<uint32_t>(pkt.size()), outer), ParseResult::kOk);
  ASSERT_TRUE(outer.vxlan);
  const uint8_t* f = pkt.data() + outer.vxlan_inner_offset;
  ASSERT_EQ(parsePacket(f, static_cast<uint32_t>(pkt.size() - outer.vxlan_inner_offset), inner),
            ParseResult::kOk);
  EXPECT_EQ(ntohs(inner.ip.sport), 80);
  EXPECT_EQ(ntohs(inner.ip.dport), 61000);
  EXPECT_EQ(inner.tcp_flags, 0x12);  // SYN+ACK
}

TEST(Parse, TcpFlagsAndHeaderLength) {
  const auto& pkt = golden("tcp4_options");
  ParsedPacket p;
  ASSERT_EQ(parsePacket(pkt.data(), static_cast<uint32_t>(pkt.size()), p), ParseResult::kOk);
  EXPECT_EQ(p.tcp_flags, 0x18);  // PSH+ACK
  EXPECT_EQ(p.tcp_header_len, 28);
  EXPECT_EQ(p.ip.l4_offset, 14 + 28);  // 8 bytes of IP options
}

// Every strict prefix of a valid packet is rejected with a named reason (or is
// still valid where the cut only removes Ethernet padding), never read past.
TEST(Parse, EveryTruncationIsRejectedCleanly) {
  for (const char* name : {"tcp4_options", "udp4", "tcp6", "ipv6_ext_udp", "icmp4_port_unreach",
                           "icmp6_too_big_tcp", "vxlan_tcp4", "qinq_udp4"}) {
    const auto& pkt = golden(name);
    for (size_t n = 0; n < pkt.size(); ++n) {
      std::vector<uint8_t> cut(pkt.begin(), pkt.begin() + static_cast<long>(n));
      ParsedPacket p;
      ParseResult r = parsePacket(cut.data(), static_cast<uint32_t>(n), p);
      EXPECT_NE(r, ParseResult::kOk) << name << " cut to " << n;
    }
  }
}

// The inline fast path gives the generic parser's verdict and fields on every
// golden packet (it handles the plain IPv4 TCP/UDP ones itself and hands the
// rest over); the fuzz harness checks the same on arbitrary input.
TEST_P(ParseTable, FastPathAgrees) {
  const auto& pkt = golden(GetParam().packet);
  ParsedPacket g, f;
  const auto n = static_cast<uint32_t>(pkt.size());
  ASSERT_EQ(parsePacketFast(pkt.data(), n, f), parsePacket(pkt.data(), n, g));
  EXPECT_EQ(f.ip.l4_offset, g.ip.l4_offset);
  EXPECT_EQ(f.ip.l3_length, g.ip.l3_length);
  EXPECT_EQ(f.ip.sport, g.ip.sport);
  EXPECT_EQ(f.ip.dport, g.ip.dport);
  EXPECT_EQ(f.ip.has_ports, g.ip.has_ports);
  EXPECT_EQ(f.tcp_flags, g.tcp_flags);
  EXPECT_EQ(f.ip.l3, g.ip.l3);
  EXPECT_EQ(f.ip.l4_proto, g.ip.l4_proto);
  EXPECT_EQ(f.ip.fragment, g.ip.fragment);
  EXPECT_EQ(f.ip.first_fragment, g.ip.first_fragment);
  EXPECT_EQ(f.vlan_count, g.vlan_count);
  EXPECT_EQ(f.icmp_error, g.icmp_error);
  EXPECT_EQ(f.vxlan, g.vxlan);
}

TEST(Parse, ResultNamesAreUniqueAndNonEmpty) {
  std::set<std::string> names;
  for (int i = 0; i < static_cast<int>(ParseResult::kCount); ++i) {
    std::string n = parseResultName(static_cast<ParseResult>(i));
    EXPECT_FALSE(n.empty());
    EXPECT_TRUE(names.insert(n).second) << n;
  }
}

}  // namespace
}  // namespace meshlb
