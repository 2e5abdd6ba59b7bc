// IPVS's connection sync protocol, version 1 (net/netfilter/ipvs/ip_vs_sync.c): the
// messages meshlb's daemons send and take, byte for byte as the kernel lays them out.
#include "sync.h"

#include <gtest/gtest.h>

#include "absl/strings/str_split.h"
#include "ipvsadm.h"

namespace meshlb {
namespace {

IpAddr ip(const char* s) { return IpAddr::parse(s).value(); }

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

// An IPv6 connection: ip_vs_sync_v6 (type STYPE_F_INET6, size 72), and meshlb's SNAT
// parameter with the 16-byte address.
SyncConn conn6(bool snat) {
  SyncConn c = conn(false);
  c.caddr = ip("2001:db8:2::10"), c.vaddr = ip("2001:db8::100"), c.daddr = ip("2001:db8:1::11");
  if (snat) c.has_snat = true, c.snat = ip("2001:db8:1::1"), c.snat_port = hton16(1025);
  return c;
}

TEST(SyncProtocol, TheKernelsIpv6Layout) {
  SyncConn c = conn6(false);
  c.fwmark = 5;
  const auto m = encodeSyncMessages(7, {c}, 1472);
  ASSERT_EQ(m.size(), 1u);
  // ip_vs_sync_mesg of 80 bytes; ip_vs_sync_v6: type 1 (STYPE_F_INET6), TCP, size 72,
  // flags, state, ports, fwmark 5, timeout 900 s, caddr, vaddr, daddr.
  EXPECT_EQ(hex(m[0]),
            "0007005001010000"
            "01060048000000000001"
            "9c401f900050"
            "0000000500000384"
            "20010db8000200000000000000000010"
            "20010db8000000000000000000000100"
            "20010db8000100000000000000000011");
  // With the SNAT parameter: type 0x48, length 18, the address and the port.
  const auto s = encodeSyncMessages(7, {conn6(true)}, 1472);
  EXPECT_EQ(hex(s[0]).substr(hex(s[0]).size() - 40),
            "4812"
            "20010db8000100000000000000000001"
            "0401");
}

TEST(SyncProtocol, RoundTripPaddingSplittingAndSnat) {
  std::vector<SyncConn> conns;
  for (int i = 0; i < 300; ++i) {
    SyncConn c = i % 3 == 2 ? conn6(i % 2) : conn(i % 2);
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
  // A master's hello: the header alone, a message of no connection (a kernel takes it so).
  const std::string hello("\x00\x01\x00\x08\x00\x01\x00\x00", 8);
  EXPECT_EQ(decode(hello), SyncDecode::kOk);
  EXPECT_TRUE(out.conns.empty());
  EXPECT_EQ(out.skipped, 0u);
  std::string garbage(200, '\xff');
  garbage[2] = 0, garbage[3] = static_cast<char>(200);
  EXPECT_EQ(decode(garbage), SyncDecode::kBad);
}

// A backup's control thread: a connection's real server found by address among its
// own, the record given to the worker that owns the client's endpoint; a template
// given to the shared table with the service's slot; what it cannot place, counted.
TEST(SyncDaemons, ABackupPlacesConnectionsAndTemplatesByAddress) {
  ServiceModel m;
  for (const char* line :
       {"-A -t 198.18.0.100:8080 -s rr -p 300", "-a -t 198.18.0.100:8080 -r 198.19.1.1:80 -m",
        "-a -t 198.18.0.100:8080 -r 198.19.1.2:80 -m"}) {
    ASSERT_TRUE(runIpvsadm(m, absl::StrSplit(line, ' ')).ok()) << line;
  }
  std::vector<std::pair<uint16_t, SyncRecord>> given;
  std::vector<std::tuple<uint32_t, uint32_t, uint32_t, uint32_t>> templates;
  SyncDaemons::Hooks hooks;
  hooks.workers = 2;
  hooks.take = [](uint16_t, SyncRecord*, size_t) -> size_t { return 0; };
  hooks.give = [&](uint16_t w, const SyncRecord& r) {
    given.emplace_back(w, r);
    return true;
  };
  hooks.give_template = [&](uint32_t slot, const IpAddr& net, uint32_t backend, uint32_t ms) {
    templates.emplace_back(slot, net.v4().v, backend, ms);
    return true;
  };
  SyncDaemons d(hooks);
  d.apply(m, {});
  const Service& svc = m.services().begin()->second;
  SyncConn c = conn(true);
  c.daddr = ip("198.19.1.2");
  d.install(c);
  ASSERT_EQ(given.size(), 1u);
  EXPECT_EQ(given[0].first, ownerOf(Endpoint<Ipv4Addr>{c.caddr.v4(), c.cport}, 2));
  EXPECT_EQ(given[0].second.flow.backend_id, svc.dests[1].id.raw());
  EXPECT_EQ(given[0].second.flow.local, ip("198.19.0.1").v4());
  EXPECT_EQ(given[0].second.timeout_ms, 900'000u);
  SyncConn t = conn(false);
  t.flags = kConnFTemplate;
  t.cport = 0, t.state = 0, t.timeout_s = 120;
  d.install(t);
  ASSERT_EQ(templates.size(), 1u);
  EXPECT_EQ(templates[0],
            std::make_tuple(svc.slot, ip("198.18.0.10").v4().v, svc.dests[0].id.raw(), 120'000u));
  SyncConn nowhere = conn(false);
  nowhere.vport = hton16(9999);
  d.install(nowhere);
  SyncConn stranger = conn(false);
  stranger.daddr = ip("198.19.1.9");
  d.install(stranger);
  EXPECT_EQ(d.counters().rx_no_service, 1u);
  EXPECT_EQ(d.counters().rx_no_server, 1u);
  EXPECT_EQ(d.counters().rx_templates, 1u);
  EXPECT_EQ(given.size(), 1u);
}

// IPv6: a connection found among the backup's IPv6 real servers, given to the worker
// that owns the client's IPv6 endpoint with its SNAT address; an IPv6 firewall-mark
// service (-f 5 -6) is not the IPv4 one of the same mark; an IPv6 template keeps the
// masked client's 16 bytes.
TEST(SyncDaemons, ABackupPlacesIpv6ConnectionsAndTemplates) {
  ServiceModel m;
  for (const char* line :
       {"-A -t [2001:db8::100]:8080 -s rr -p 300 -M 64",
        "-a -t [2001:db8::100]:8080 -r [2001:db8:1::11]:80 -m",
        "-a -t [2001:db8::100]:8080 -r [2001:db8:1::12]:80 -m", "-A -f 5 -s rr",
        "-a -f 5 -r 198.19.1.3:0 -m", "-A -f 5 -6 -s rr", "-a -f 5 -6 -r [2001:db8:1::13]:0 -m"}) {
    ASSERT_TRUE(runIpvsadm(m, absl::StrSplit(line, ' ')).ok()) << line;
  }
  std::vector<std::pair<uint16_t, SyncRecord>> given;
  std::vector<std::pair<uint32_t, IpAddr>> templates;
  SyncDaemons::Hooks hooks;
  hooks.workers = 4;
  hooks.take = [](uint16_t, SyncRecord*, size_t) -> size_t { return 0; };
  hooks.give = [&](uint16_t w, const SyncRecord& r) {
    given.emplace_back(w, r);
    return true;
  };
  hooks.give_template = [&](uint32_t, const IpAddr& net, uint32_t backend, uint32_t) {
    templates.emplace_back(backend, net);
    return true;
  };
  SyncDaemons d(hooks);
  d.apply(m, {ip("2001:db8:1::1")});
  auto server = [&](const char* a) {
    for (const auto& [key, svc] : m.services()) {
      for (const RealServer& r : svc.dests) {
        if (r.addr == ip(a)) return r.id.raw();
      }
    }
    return 0u;
  };
  SyncConn c = conn6(true);
  c.daddr = ip("2001:db8:1::12");
  d.install(c);
  ASSERT_GE(given.size(), 1u);
  const SyncRecord& r = given[0].second;
  EXPECT_EQ(r.family, Family::kIpv6);
  EXPECT_EQ(given[0].first, ownerOf(Endpoint<Ipv6Addr>{c.caddr.v6(), c.cport}, 4));
  EXPECT_EQ(r.flow6.backend_id, server("2001:db8:1::12"));
  EXPECT_EQ(r.flow6.client, c.caddr.v6());
  EXPECT_EQ(r.flow6.local, ip("2001:db8:1::1").v6());
  EXPECT_EQ(r.flow6.lport, hton16(1025));
  // The reply's owner: this appliance's SNAT address, so by the port (1025 % 4 = 1).
  EXPECT_EQ(given.back().first, 1);

  given.clear();
  SyncConn marked = conn6(false);
  marked.fwmark = 5;
  marked.daddr = ip("2001:db8:1::13");
  d.install(marked);
  ASSERT_EQ(given.size(), 1u);
  EXPECT_EQ(given[0].second.flow6.backend_id, server("2001:db8:1::13"));
  SyncConn marked4 = conn(false);
  marked4.fwmark = 5;
  marked4.daddr = ip("198.19.1.3");
  d.install(marked4);
  ASSERT_EQ(given.size(), 2u);
  EXPECT_EQ(given[1].second.family, Family::kIpv4);
  EXPECT_EQ(given[1].second.flow.backend_id, server("198.19.1.3"));

  SyncConn t = conn6(false);
  t.flags = kConnFTemplate;
  t.caddr = ip("2001:db8:2::");
  t.cport = 0, t.state = 0, t.timeout_s = 120;
  d.install(t);
  ASSERT_EQ(templates.size(), 1u);
  EXPECT_EQ(templates[0], std::make_pair(server("2001:db8:1::11"), ip("2001:db8:2::")));
  EXPECT_EQ(d.counters().rx_unsupported, 0u);
  EXPECT_EQ(d.counters().rx_no_service + d.counters().rx_no_server, 0u);
}

}  // namespace
}  // namespace meshlb
