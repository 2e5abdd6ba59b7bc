// NAT, VXLAN and ICMP "too big" against scapy's golden packets: every expected
// output was built by scapy with its checksums computed from scratch, so these
// compare meshlb's incremental updates (RFC 1624) with full recomputations; the
// checksum fold is also held to its definition.
#include "meshlb/nat.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <vector>

#include "golden.h"
#include "meshlb/vxlan.h"

namespace meshlb {
namespace {

using test::Bytes;
using test::golden;
using test::toHex;

constexpr auto a4 = test::v4;
constexpr auto a6 = test::v6;
template <class Addr>
Endpoint<Addr> ep(Addr a, uint16_t port) {
  return {a, htons(port)};
}

constexpr const char* kClient = "198.18.0.10";
constexpr const char* kVip = "198.18.0.100";
constexpr const char* kLb = "198.19.0.1";
constexpr const char* kTask = "198.19.1.2";
constexpr const char* kClient6 = "2001:db8::10";
constexpr const char* kVip6 = "2001:db8::100";
constexpr const char* kLb6 = "2001:db8:1::1";
constexpr const char* kTask6 = "2001:db8:2::2";

ParsedPacket parseOk(const Bytes& b) {
  ParsedPacket p;
  EXPECT_EQ(parsePacket(b.data(), static_cast<uint32_t>(b.size()), p), ParseResult::kOk);
  return p;
}

// Rewrites golden `NAME.in` and compares with scapy's `NAME.out`.
template <class Addr>
void expectNatMatchesScapy(const std::string& name, const Rewrite<Addr>& rw) {
  Bytes pkt = golden(name + ".in");
  ParsedPacket p = parseOk(pkt);
  ASSERT_TRUE(checksumsValid(pkt.data(), p));
  natRewrite(pkt.data(), p, rw);
  EXPECT_EQ(toHex(pkt), toHex(golden(name + ".out")));
  EXPECT_TRUE(checksumsValid(pkt.data(), parseOk(pkt)));
}

template <class Addr>
struct NatCase {
  const char* name;
  Rewrite<Addr> rw;
};
using Nat4Case = NatCase<Ipv4Addr>;
using Nat6Case = NatCase<Ipv6Addr>;

class Nat4 : public ::testing::TestWithParam<Nat4Case> {};
TEST_P(Nat4, MatchesScapy) { expectNatMatchesScapy(GetParam().name, GetParam().rw); }

Rewrite4 dnat4(uint16_t port) { return {false, true, {}, ep(a4(kTask), port)}; }
Rewrite4 fullnat4(uint16_t sport, uint16_t dport) {
  return {true, true, ep(a4(kLb), sport), ep(a4(kTask), dport)};
}

INSTANTIATE_TEST_SUITE_P(
    Golden, Nat4,
    ::testing::Values(Nat4Case{"nat_tcp4_dnat", dnat4(80)},
                      Nat4Case{"nat_tcp4_fullnat", fullnat4(61000, 80)},
                      Nat4Case{"nat_tcp4_reply",
                               {true, true, ep(a4(kVip), 8080), ep(a4(kClient), 40000)}},
                      Nat4Case{"nat_tcp4_options_snat", {true, false, ep(a4(kLb), 61001), {}}},
                      Nat4Case{"nat_vlan_tcp4_dnat", dnat4(80)},
                      Nat4Case{"nat_udp4_fullnat", fullnat4(61002, 5353)},
                      Nat4Case{"nat_udp4_zero_csum", fullnat4(61003, 5353)},
                      Nat4Case{"nat_frag4_first_dnat", dnat4(5353)}),
    [](const auto& info) { return std::string(info.param.name); });

class Nat6 : public ::testing::TestWithParam<Nat6Case> {};
TEST_P(Nat6, MatchesScapy) { expectNatMatchesScapy(GetParam().name, GetParam().rw); }

INSTANTIATE_TEST_SUITE_P(
    Golden, Nat6,
    ::testing::Values(Nat6Case{"nat_tcp6_fullnat",
                               {true, true, ep(a6(kLb6), 61004), ep(a6(kTask6), 80)}},
                      Nat6Case{"nat_udp6_dnat", {false, true, {}, ep(a6(kTask6), 5353)}}),
    [](const auto& info) { return std::string(info.param.name); });

// An ICMP error from a task about a full-NAT'd flow, translated for the client:
// outer task->LB becomes VIP->client; the quoted LB->task becomes client->VIP.
TEST(NatIcmp, Ipv4ErrorsMatchScapy) {
  struct {
    const char* name;
    uint16_t cport, vport;
  } cases[] = {{"nat_icmp4_port_unreach", 5000, 53}, {"nat_icmp4_frag_needed_tcp", 40000, 8080}};
  for (const auto& c : cases) {
    Bytes pkt = golden(std::string(c.name) + ".in");
    ParsedPacket p = parseOk(pkt);
    ASSERT_TRUE(p.icmp_error);
    ASSERT_TRUE(checksumsValid(pkt.data(), p));
    Rewrite4 outer{true, true, ep(a4(kVip), 0), ep(a4(kClient), 0)};
    Rewrite4 inner{true, true, ep(a4(kClient), c.cport), ep(a4(kVip), c.vport)};
    natRewriteIcmpError(pkt.data(), p, outer, inner);
    EXPECT_EQ(toHex(pkt), toHex(golden(std::string(c.name) + ".out"))) << c.name;
    EXPECT_TRUE(checksumsValid(pkt.data(), parseOk(pkt)));
  }
}

TEST(NatIcmp, Ipv6ErrorsMatchScapy) {
  struct {
    const char* name;
    uint16_t cport, vport;
  } cases[] = {{"nat_icmp6_too_big_tcp", 40003, 8080}, {"nat_icmp6_port_unreach", 5004, 53}};
  for (const auto& c : cases) {
    Bytes pkt = golden(std::string(c.name) + ".in");
    ParsedPacket p = parseOk(pkt);
    ASSERT_TRUE(p.icmp_error);
    ASSERT_TRUE(checksumsValid(pkt.data(), p));
    Rewrite6 outer{true, true, ep(a6(kVip6), 0), ep(a6(kClient6), 0)};
    Rewrite6 inner{true, true, ep(a6(kClient6), c.cport), ep(a6(kVip6), c.vport)};
    natRewriteIcmpError(pkt.data(), p, outer, inner);
    EXPECT_EQ(toHex(pkt), toHex(golden(std::string(c.name) + ".out"))) << c.name;
    EXPECT_TRUE(checksumsValid(pkt.data(), parseOk(pkt)));
  }
}

VxlanTunnel tunnel() {
  VxlanTunnel t{};
  const uint8_t lb_mac[6] = {2, 0, 0, 0, 0, 2}, node_mac[6] = {2, 0, 0, 0, 0, 3};
  std::memcpy(t.src_mac, lb_mac, 6);
  std::memcpy(t.dst_mac, node_mac, 6);
  t.src_ip = a4("198.19.0.1").v;
  t.dst_ip = a4("198.19.0.2").v;
  t.vni = 4097;
  return t;
}

TEST(Vxlan, EncapMatchesScapyAndDecapRoundTrips) {
  const Bytes& inner = golden("vxlan_encap.inner");
  Bytes buf(kVxlanEncapLen + inner.size());
  std::memcpy(buf.data() + kVxlanEncapLen, inner.data(), inner.size());
  // Outer source port = 49152 + (hash >> 32) * 16384 / 2^32: 848 << 18 gives 50000.
  const uint64_t hash = (848ull << 18) << 32;
  uint8_t* o =
      vxlanEncap(buf.data() + kVxlanEncapLen, static_cast<uint32_t>(inner.size()), tunnel(), hash);
  ASSERT_EQ(o, buf.data());
  EXPECT_EQ(toHex(buf), toHex(golden("vxlan_encap.out")));

  ParsedPacket outer = parseOk(buf);
  ASSERT_TRUE(outer.vxlan);
  EXPECT_EQ(outer.vni, 4097u);
  Bytes back(buf.begin() + outer.vxlan_inner_offset, buf.end());
  EXPECT_EQ(back, inner);
}

// RFC 7348 section 5: the outer source port comes from the inner flow's hash, in
// the dynamic range 49152-65535, so that the underlay's ECMP and RSS spread flows.
// Every hash stays in range, the same hash gives the same port, and the ports of
// many flows cover the range (a constant or a truncated hash fails).
TEST(Vxlan, SourcePortStaysInDynamicRange) {
  const Bytes& inner = golden("vxlan_encap.inner");
  Bytes buf(kVxlanEncapLen + inner.size());
  auto sportOf = [&](uint64_t h) {
    vxlanEncap(buf.data() + kVxlanEncapLen, static_cast<uint32_t>(inner.size()), tunnel(), h);
    return static_cast<uint16_t>(buf[34] << 8 | buf[35]);
  };
  std::set<uint16_t> seen;
  uint32_t low_half = 0;
  uint64_t h = 0x123456789abcdefull;
  for (int i = 0; i < 20000; ++i) {
    h = h * 6364136223846793005ull + 1442695040888963407ull;  // a spread of flow hashes
    const uint16_t sport = sportOf(h);
    ASSERT_GE(sport, 49152) << std::hex << h;
    ASSERT_EQ(sportOf(h), sport);
    seen.insert(sport);
    low_half += sport < 49152 + 8192;
  }
  for (uint64_t edge : {0ull, ~0ull, 0x8000000000000000ull}) EXPECT_GE(sportOf(edge), 49152);
  EXPECT_GT(seen.size(), 10000u);  // 16384 ports, 20000 flows: most are used
  EXPECT_GT(low_half, 9000u);
  EXPECT_LT(low_half, 11000u);
}

TEST(Vxlan, MtuCheck) {
  VxlanTunnel t = tunnel();
  EXPECT_EQ(vxlanInnerMtu(t), 1450u);
  EXPECT_EQ(vxlanCheckMtu(parseOk(golden("vxlan_encap.inner")), t), EncapResult::kOk);
  EXPECT_EQ(vxlanCheckMtu(parseOk(golden("too_big4.in")), t), EncapResult::kTooBigDf);
  EXPECT_EQ(vxlanCheckMtu(parseOk(golden("too_big6.in")), t), EncapResult::kTooBigDf);
  t.underlay_mtu = 9000;
  EXPECT_EQ(vxlanCheckMtu(parseOk(golden("too_big4.in")), t), EncapResult::kOk);
}

TEST(Vxlan, TooBigWithoutDfIsReported) {
  Bytes pkt = golden("too_big4.in");
  ParsedPacket p = parseOk(pkt);
  p.ipv4_flags_frag &= static_cast<uint16_t>(~kIpv4FlagDf);
  EXPECT_EQ(vxlanCheckMtu(p, tunnel()), EncapResult::kTooBigNoDf);
}

TEST(TooBig, Ipv4FragNeededMatchesScapy) {
  const Bytes& in = golden("too_big4.in");
  ParsedPacket p = parseOk(in);
  const uint8_t lb_mac[6] = {2, 0, 0, 0, 0, 2};
  Ipv4Addr vip = a4(kVip);
  Bytes out(kTooBigMaxLen);
  uint32_t n =
      buildTooBig(in.data(), p, 1450, lb_mac, reinterpret_cast<uint8_t*>(&vip.v), out.data());
  out.resize(n);
  EXPECT_EQ(toHex(out), toHex(golden("too_big4.out")));
}

TEST(TooBig, Ipv6PacketTooBigMatchesScapy) {
  const Bytes& in = golden("too_big6.in");
  ParsedPacket p = parseOk(in);
  const uint8_t lb_mac[6] = {2, 0, 0, 0, 0, 2};
  Ipv6Addr vip = a6(kVip6);
  Bytes out(kTooBigMaxLen);
  uint32_t n = buildTooBig(in.data(), p, 1450, lb_mac, vip.b, out.data());
  out.resize(n);
  EXPECT_EQ(toHex(out), toHex(golden("too_big6.out")));
}

}  // namespace
// csumFold against the definition: add the carries back until 16 bits remain.
TEST(Checksum, FoldMatchesTheDefinition) {
  auto reference = [](uint64_t sum) {
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<uint16_t>(sum);
  };
  std::vector<uint64_t> sums = {0,
                                1,
                                0xffff,
                                0x10000,
                                0x1fffe,
                                0xffffffff,
                                0x100000000,
                                0xffff0000ffff,
                                0xffffffffffffffff,
                                0x8000800080008000};
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    const uint64_t r = rng();
    sums.push_back(r);
    sums.push_back(r >> (r % 48));  // short sums too, as a header's are
  }
  for (uint64_t s : sums) ASSERT_EQ(csumFold(s), reference(s)) << std::hex << s;
}

}  // namespace meshlb
