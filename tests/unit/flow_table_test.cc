#include "meshlb/flow_table.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <tuple>

#include "golden.h"
#include "meshlb/proto.h"

namespace meshlb {
namespace {

using test::v4;
using test::v6;

template <class Addr>
Flow<Addr> makeFlow(Addr client, uint16_t cport, Addr vip, Addr backend, Addr local, uint16_t lport,
                    bool udp = false) {
  Flow<Addr> f{};
  f.client = client;
  f.cport = htons(cport);
  f.vip = vip;
  f.vport = htons(8080);
  f.backend = backend;
  f.bport = htons(80);
  f.local = local;
  f.lport = htons(lport);
  f.udp = udp;
  f.state = static_cast<uint32_t>(udp ? ConnState::kUdp : ConnState::kNone);
  f.backend_id = 7;
  f.expires_ms = 0;
  return f;
}

Flow<Ipv4Addr> flow4(uint32_t i, bool udp = false) {
  Ipv4Addr client, local;
  client.v = htonl(0xc6120000u + (i >> 16));  // 198.18.x.y
  local.v = htonl(0xc6130000u + (i >> 16));   // 198.19.x.y
  return makeFlow(client, static_cast<uint16_t>(i & 0xffff), v4("198.18.0.100"), v4("198.19.1.2"),
                  local, static_cast<uint16_t>(i & 0xffff), udp);
}

TEST(FlowTable, LayoutFitsTheMemoryBudget) {
  // 32-byte IPv4 records: two per cache line; with the buckets at load <= 0.8
  // that is at most 64 bytes per tracked IPv4 connection.
  EXPECT_EQ(sizeof(Flow<Ipv4Addr>), 32u);
  FlowTable4 t(1 << 20);
  EXPECT_LE(t.memoryBytes() / t.capacity(), 64u);
}

TEST(FlowTable, BothDirectionsFoundV4) {
  FlowTable4 t(1024, 42);
  auto f = flow4(5);
  auto* e = t.insert(f, 1000);
  ASSERT_NE(e, nullptr);
  auto hit = t.lookup(f.originalKey(), 1000);
  EXPECT_EQ(hit.flow, e);
  EXPECT_EQ(hit.dir, FlowDir::kOriginal);
  hit = t.lookup(f.replyKey(), 1000);
  EXPECT_EQ(hit.flow, e);
  EXPECT_EQ(hit.dir, FlowDir::kReply);
  auto other = f.originalKey();
  other.proto = kProtoUdp;
  EXPECT_EQ(t.lookup(other, 1000).flow, nullptr);
  EXPECT_EQ(t.size(), 1u);
}

TEST(FlowTable, BothDirectionsFoundV6) {
  FlowTable6 t(1024, 42);
  auto f = makeFlow(v6("2001:db8::10"), 40000, v6("2001:db8::100"), v6("2001:db8:2::2"),
                    v6("2001:db8:1::1"), 61000);
  auto* e = t.insert(f, 0);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(t.lookup(f.originalKey(), 0).flow, e);
  EXPECT_EQ(t.lookup(f.replyKey(), 0).flow, e);
  EXPECT_EQ(t.lookup(f.replyKey(), 0).dir, FlowDir::kReply);
}

TEST(FlowTable, ReplyKeyInUseIsRefusedAndCounted) {
  FlowTable4 t(64);
  auto a = flow4(1);
  ASSERT_NE(t.insert(a, 0), nullptr);
  auto b = flow4(2);
  b.local = a.local;
  b.lport = a.lport;  // same SNAT endpoint towards the same backend
  EXPECT_EQ(t.insert(b, 0), nullptr);
  EXPECT_EQ(t.counters().reply_key_in_use, 1u);
}

// The kernel's transitions for a NAT'd connection seen from both sides.
TEST(FlowTable, TcpStateMachineFollowsIpvs) {
  FlowTable4 t(64);
  auto* e = t.insert(flow4(1), 0);
  ASSERT_NE(e, nullptr);
  struct Step {
    FlowDir dir;
    uint8_t flags;
    ConnState expect;
    uint32_t timeout_s;
  };
  const Step steps[] = {
      {FlowDir::kOriginal, kTcpSyn, ConnState::kSynRecv, 60},
      {FlowDir::kReply, kTcpSyn | kTcpAck, ConnState::kSynRecv, 60},
      {FlowDir::kOriginal, kTcpAck, ConnState::kEstablished, 900},
      {FlowDir::kOriginal, kTcpAck | 0x08, ConnState::kEstablished, 900},
      {FlowDir::kReply, kTcpFin | kTcpAck, ConnState::kFinWait, 120},
      {FlowDir::kOriginal, kTcpAck, ConnState::kFinWait, 120},
      {FlowDir::kOriginal, kTcpFin | kTcpAck, ConnState::kTimeWait, 120},
      {FlowDir::kReply, kTcpAck, ConnState::kTimeWait, 120},
  };
  uint32_t now = 5000;
  for (const Step& s : steps) {
    t.onTcp(e, s.dir, s.flags, now);
    EXPECT_EQ(e->connState(), s.expect) << connStateName(e->connState());
    EXPECT_EQ(e->expires_ms, now + s.timeout_s * 1000);
    now += 10;
  }
}

// IPVS's ActiveConn / InActConn per real server, kept up to date by the table. As in
// current kernels (tcp_state_active_table), the handshake counts as active (issue 11:
// meshlb counted only ESTABLISHED, so a server taking a burst of new connections
// looked idle to wlc and ipvsadm -L).
TEST(FlowTable, PerBackendConnectionCounts) {
  std::vector<std::atomic<uint32_t>> counts(2 * FlowTable4::kCountSlots);
  FlowTable4 t(64);
  t.setConnCounts(counts.data());
  auto f = flow4(1);
  f.backend_id = BackendId::make(3, 42).raw();  // generation 3, slot 42
  auto* e = t.insert(f, 0);
  ASSERT_NE(e, nullptr);
  auto active = [&] { return counts[2 * 42].load(); };
  auto inactive = [&] { return counts[2 * 42 + 1].load(); };
  EXPECT_EQ(inactive(), 1u);  // NONE
  t.onTcp(e, FlowDir::kOriginal, kTcpSyn, 0);
  EXPECT_EQ(e->connState(), ConnState::kSynRecv);
  EXPECT_EQ(active(), 1u);
  EXPECT_EQ(inactive(), 0u);
  t.onTcp(e, FlowDir::kReply, kTcpSyn | kTcpAck, 0);  // still in the handshake: active
  EXPECT_EQ(active(), 1u);
  t.onTcp(e, FlowDir::kOriginal, kTcpAck, 0);
  EXPECT_EQ(e->connState(), ConnState::kEstablished);
  EXPECT_EQ(active(), 1u);
  EXPECT_EQ(inactive(), 0u);
  t.onTcp(e, FlowDir::kOriginal, kTcpFin | kTcpAck, 0);  // CLOSE_WAIT: inactive again
  EXPECT_EQ(active(), 0u);
  EXPECT_EQ(inactive(), 1u);
  auto u = flow4(2, true);
  u.backend_id = 42;
  t.onUdp(t.insert(u, 0), 0);  // UDP counts as inactive, as in IPVS
  EXPECT_EQ(inactive(), 2u);
  t.remove(e);
  EXPECT_EQ(inactive(), 1u);
  t.expireSome(1000000, 64);  // the UDP one times out
  EXPECT_EQ(inactive(), 0u);
  EXPECT_EQ(active(), 0u);
}

TEST(FlowTable, TcpTransitionSpotChecks) {
  // Client FIN first: ES -> CLOSE_WAIT, then the backend's FIN -> TIME_WAIT.
  EXPECT_EQ(nextTcpState(ConnState::kEstablished, false, kTcpFin), ConnState::kCloseWait);
  EXPECT_EQ(nextTcpState(ConnState::kCloseWait, true, kTcpFin), ConnState::kTimeWait);
  EXPECT_EQ(nextTcpState(ConnState::kEstablished, true, kTcpRst), ConnState::kClose);
  EXPECT_EQ(nextTcpState(ConnState::kSynRecv, false, kTcpRst), ConnState::kSynRecv);
  // The kernel's INPUT ack row starts at sES (what a sloppy_tcp connection begun on an
  // ACK becomes); meshlb's table had sCL there.
  EXPECT_EQ(nextTcpState(ConnState::kNone, false, kTcpAck), ConnState::kEstablished);
  EXPECT_EQ(nextTcpState(ConnState::kNone, true, kTcpAck), ConnState::kEstablished);
  EXPECT_EQ(nextTcpState(ConnState::kLastAck, false, kTcpAck), ConnState::kClose);
  EXPECT_EQ(nextTcpState(ConnState::kEstablished, false, 0), ConnState::kEstablished);
  // INPUT-ONLY (-g, -i: the client's side alone): its FIN is FIN_WAIT, not CLOSE_WAIT, and
  // a RST in SYNACK closes.
  EXPECT_EQ(nextTcpState(ConnState::kEstablished, detail::kTcpInputOnly, kTcpFin),
            ConnState::kFinWait);
  EXPECT_EQ(nextTcpState(ConnState::kSynAck, detail::kTcpInput, kTcpRst), ConnState::kSynRecv);
  EXPECT_EQ(nextTcpState(ConnState::kSynAck, detail::kTcpInputOnly, kTcpRst), ConnState::kClose);
  EXPECT_STREQ(connStateName(ConnState::kCloseWait), "CLOSE_WAIT");
}

// Every flag byte, state and direction against tcp_state_idx() written out as the
// kernel writes it: rst, then syn, fin, ack; none of them, no transition.
TEST(FlowTable, TcpTransitionsForEveryFlagByte) {
  for (unsigned flags = 0; flags < 256; ++flags) {
    int row = -1;
    if (flags & kTcpRst) {
      row = 3;
    } else if (flags & kTcpSyn) {
      row = 0;
    } else if (flags & kTcpFin) {
      row = 1;
    } else if (flags & kTcpAck) {
      row = 2;
    }
    for (unsigned dir = 0; dir < 4; ++dir) {  // INPUT, OUTPUT, INPUT-ONLY, OUTPUT
      for (int c = 0; c < kNumConnStates; ++c) {
        const auto cur = static_cast<ConnState>(c);
        const ConnState want = row < 0 || c >= 11 ? cur : detail::kTcpStates[dir][row][c];
        ASSERT_EQ(nextTcpState(cur, dir, static_cast<uint8_t>(flags)), want)
            << "flags " << flags << " state " << connStateName(cur) << " table " << dir;
      }
    }
  }
}

TEST(FlowTable, UdpTimeoutAndCustomTimeouts) {
  FlowTable4 t(64);
  auto* e = t.insert(flow4(1, true), 0);
  ASSERT_NE(e, nullptr);
  t.onUdp(e, 100);
  EXPECT_EQ(e->expires_ms, 100u + 300000u);
  t.timeouts().ms[static_cast<int>(ConnState::kUdp)] = 5000;  // ipvsadm --set ... 5
  t.onUdp(e, 200);
  EXPECT_EQ(e->expires_ms, 5200u);
}

// The longest timeout `ipvsadm --set` takes (2147483 s, the kernel's INT_MAX / HZ)
// holds a flow for all of it, across the millisecond clock's wrap (issue 13: above it
// every flow expired on its next packet).
TEST(FlowTable, TheLongestTimeoutHolds) {
  FlowTable4 t(64);
  t.timeouts().ms[static_cast<int>(ConnState::kUdp)] = 2147483u * 1000u;
  const auto f = flow4(1, true);
  auto* e = t.insert(f, 0);
  ASSERT_NE(e, nullptr);
  const uint32_t start = 0xfff00000u;  // the clock wraps during the flow's life
  t.onUdp(e, start);
  EXPECT_EQ(t.lookup(f.originalKey(), start + 1000).flow, e);
  EXPECT_EQ(t.lookup(f.originalKey(), start + 2147482999u).flow, e);
  EXPECT_EQ(t.lookup(f.originalKey(), start + 2147483000u).flow, nullptr);
}

TEST(FlowTable, ExpiredEntriesMissAndAreReclaimed) {
  FlowTable4 t(128);
  auto f = flow4(9);
  auto* e = t.insert(f, 0);
  t.onTcp(e, FlowDir::kOriginal, kTcpSyn, 0);  // SYN_RECV: 60 s
  EXPECT_NE(t.lookup(f.originalKey(), 59999).flow, nullptr);
  EXPECT_EQ(t.lookup(f.originalKey(), 60000).flow, nullptr);  // lazily removed
  EXPECT_EQ(t.size(), 0u);
  // The sweep frees expired records, never more than its budget per call.
  for (uint32_t i = 0; i < 100; ++i) t.onUdp(t.insert(flow4(i, true), 0), 0);
  EXPECT_EQ(t.expireSome(299999, 128), 0u);
  EXPECT_EQ(t.expireSome(300000, 16), 16u);
  uint32_t total = 16;
  while (t.size() > 0) total += t.expireSome(300000, 16);
  EXPECT_EQ(total, 100u);
  EXPECT_EQ(t.counters().expired, 101u);
}

TEST(FlowTable, FullTableEvictsEmbryonicBeforeEstablished) {
  const uint32_t cap = 256;
  FlowTable4 t(cap, 3);
  // Half established, half in the handshake, interleaved.
  for (uint32_t i = 0; i < cap; ++i) {
    auto* e = t.insert(flow4(i), 0);
    ASSERT_NE(e, nullptr);
    t.onTcp(e, FlowDir::kOriginal, kTcpSyn, 0);
    if (i % 2 == 0) t.onTcp(e, FlowDir::kOriginal, kTcpAck, 0);
  }
  ASSERT_EQ(t.size(), cap);
  for (uint32_t i = cap; i < cap + cap / 4; ++i) {
    auto* e = t.insert(flow4(i), 1000);
    ASSERT_NE(e, nullptr);
    t.onTcp(e, FlowDir::kOriginal, kTcpSyn, 1000);
  }
  EXPECT_EQ(t.size(), cap);
  EXPECT_EQ(t.counters().evicted_embryonic, cap / 4);
  EXPECT_EQ(t.counters().evicted_established, 0u);
  for (uint32_t i = 0; i < cap; i += 2) {
    EXPECT_NE(t.lookup(flow4(i).originalKey(), 1000).flow, nullptr) << i;
  }
}

TEST(FlowTable, FullOfEstablishedStillAcceptsAndCounts) {
  FlowTable4 t(32);
  for (uint32_t i = 0; i < 40; ++i) {
    auto* e = t.insert(flow4(i), 0);
    ASSERT_NE(e, nullptr);
    t.onTcp(e, FlowDir::kOriginal, kTcpSyn, 0);
    t.onTcp(e, FlowDir::kOriginal, kTcpAck, 0);
  }
  EXPECT_EQ(t.size(), 32u);
  EXPECT_EQ(t.counters().evicted_established, 8u);
}

// Randomised against a reference model: everything inserted and not removed is
// found from both sides, everything removed is gone, at high load.
TEST(FlowTable, MatchesReferenceModel) {
  const uint32_t cap = 50000;
  FlowTable4 t(cap, 99);
  std::mt19937 rng(7);
  std::map<uint32_t, Flow<Ipv4Addr>*> live;
  for (int round = 0; round < 300000; ++round) {
    uint32_t id = rng() % (cap * 3 / 2);
    auto it = live.find(id);
    if (it == live.end()) {
      if (live.size() >= cap - 1) continue;
      auto f = flow4(id);
      ASSERT_EQ(t.lookup(f.originalKey(), 0).flow, nullptr);
      auto* e = t.insert(f, 0);
      ASSERT_NE(e, nullptr);
      ASSERT_EQ(t.counters().evicted_established, 0u)
          << "evicted below capacity at " << live.size();
      t.onUdp(e, 0);
      live[id] = e;
    } else if (rng() % 2) {
      t.remove(it->second);
      live.erase(it);
    }
  }
  EXPECT_EQ(t.size(), live.size());
  EXPECT_EQ(t.counters().evicted_established + t.counters().evicted_embryonic, 0u);
  for (uint32_t id = 0; id < cap * 3 / 2; ++id) {
    auto f = flow4(id);
    bool want = live.count(id) > 0;
    auto o = t.lookup(f.originalKey(), 0);
    auto r = t.lookup(f.replyKey(), 0);
    ASSERT_EQ(o.flow != nullptr, want) << id;
    ASSERT_EQ(r.flow != nullptr, want) << id;
    if (want) {
      EXPECT_EQ(o.flow, r.flow);
      EXPECT_EQ(o.flow, live[id]);
    }
  }
}

TEST(FlowTable, BurstLookupAgreesWithSingleLookups) {
  FlowTable4 t(4096, 5);
  std::vector<FlowKey<Ipv4Addr>> keys;
  for (uint32_t i = 0; i < 37; ++i) {  // not a multiple of any unroll factor
    auto f = flow4(i * 3);
    if (i % 3 != 0) t.onUdp(t.insert(f, 0), 0);
    keys.push_back(i % 2 ? f.replyKey() : f.originalKey());
  }
  FlowTable4::Hit hits[FlowTable4::kMaxBurst];
  t.lookupBurst(keys.data(), static_cast<uint32_t>(keys.size()), hits, 0);
  for (size_t i = 0; i < keys.size(); ++i) {
    auto single = t.lookup(keys[i], 0);
    EXPECT_EQ(hits[i].flow, single.flow) << i;
    EXPECT_EQ(hits[i].flow != nullptr, i % 3 != 0) << i;
    if (hits[i].flow) {
      EXPECT_EQ(hits[i].dir, i % 2 ? FlowDir::kReply : FlowDir::kOriginal);
    }
  }
}

// Stage 2 names a candidate record per key; by stage 3 earlier packets of the
// burst may have removed that record, reused it for another connection, or let
// it expire. The lookup must then answer from the buckets, as a single lookup does.
TEST(FlowTable, StaleCandidatesAreCheckedInFull) {
  FlowTable4 t(8, 9);
  auto a = flow4(1), b = flow4(2), c = flow4(3);
  auto* ea = t.insert(a, 0);
  auto* eb = t.insert(b, 0);
  ASSERT_NE(ea, nullptr);
  ASSERT_NE(eb, nullptr);
  const FlowKey<Ipv4Addr> keys[3] = {a.originalKey(), b.replyKey(), a.replyKey()};
  uint64_t h[3];
  uint32_t cand[3];
  t.hashAndPrefetch(keys, 3, h);
  t.prefetchRecords(h, 3, cand);
  for (uint32_t i = 0; i < 3; ++i) ASSERT_NE(cand[i], 0u) << i;

  // a removed: its record is free (its old key bytes still in it).
  t.remove(ea);
  EXPECT_EQ(t.lookupCandidate(keys[0], h[0], cand[0], 0).flow, nullptr);
  // The free record reused for another connection: the key no longer matches.
  auto* ec = t.insert(c, 0);
  ASSERT_NE(ec, nullptr);
  EXPECT_EQ(t.lookupCandidate(keys[2], h[2], cand[2], 0).flow, nullptr);
  // b past its timeout: a miss, and b is gone from both directions.
  t.onTcp(eb, FlowDir::kOriginal, kTcpSyn, 0);
  const uint32_t later = t.timeouts().of(ConnState::kSynRecv) + 1;
  EXPECT_EQ(t.lookupCandidate(keys[1], h[1], cand[1], later).flow, nullptr);
  EXPECT_EQ(t.lookup(b.originalKey(), 0).flow, nullptr);
  // a inserted again (the caller missed it): found through the buckets even when
  // the stale candidate names another record.
  auto* ea2 = t.insert(a, 0);
  ASSERT_NE(ea2, nullptr);
  auto hit = t.lookupCandidate(keys[0], h[0], cand[0] ^ 2, 0);
  EXPECT_EQ(hit.flow, ea2);
  EXPECT_EQ(hit.dir, FlowDir::kOriginal);
  EXPECT_EQ(t.lookupCandidate(c.replyKey(), t.hash(c.replyKey()), 0, 0).flow, ec);
}

// A full small table puts many keys in their second bucket: the burst lookup
// (candidate from the first bucket, else from the second) must find every one.
TEST(FlowTable, BurstLookupFindsKeysInTheirSecondBucket) {
  FlowTable4 t(64, 11);
  std::vector<FlowKey<Ipv4Addr>> keys;
  std::vector<Flow<Ipv4Addr>*> owner;
  for (uint32_t i = 0; i < 64; ++i) {
    auto f = flow4(i * 7 + 1);
    auto* e = t.insert(f, 0);
    ASSERT_NE(e, nullptr) << i;
    keys.push_back(f.originalKey());
    owner.push_back(e);
    keys.push_back(f.replyKey());
    owner.push_back(e);
  }
  ASSERT_EQ(t.size(), 64u);
  EXPECT_GT(t.counters().displaced, 0u) << "not full enough to use second buckets";
  FlowTable4::Hit hits[FlowTable4::kMaxBurst];
  for (size_t base = 0; base < keys.size(); base += FlowTable4::kMaxBurst) {
    t.lookupBurst(&keys[base], FlowTable4::kMaxBurst, hits, 0);
    for (uint32_t i = 0; i < FlowTable4::kMaxBurst; ++i) {
      EXPECT_EQ(hits[i].flow, owner[base + i]) << base + i;
      EXPECT_EQ(hits[i].dir, (base + i) % 2 ? FlowDir::kReply : FlowDir::kOriginal);
    }
  }
}

}  // namespace
}  // namespace meshlb
