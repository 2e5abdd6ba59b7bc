// Hot-path benchmarks, each beside a baseline measured in the same run.
//
//  BM_Baseline/F       an I/O-only stand-in: read the headers a forwarder reads
//                      and write the TTL, on the same packets in the same order.
//  BM_FastPath/F       parse + burst flow lookup + TCP state + full NAT rewrite
//                      for established flows, F flows in the table.
//  BM_ParseOnly/F      the parse stage alone on the same packets.
//  BM_*Ring/F          the same with packets written afresh into 4096 recycled
//                      buffers, as a NIC fills recycled mbufs (the packet itself
//                      is then no cache miss, as with DDIO), in both loops.
//  BM_*6/F             the baseline and the fast path on IPv6 flows (74-byte frames).
//  BM_NewFlow*         parse + miss + Maglev pick + insert + state + NAT for SYNs.
//  BM_MaglevBuild/N/M  table population, N backends, M slots; beside it a plain
//                      fill of the same table as the floor, and the one-pick-at-a-
//                      time population (the definition) it replaced.
//
// Packets are visited in a random order over the whole set, the worst case for
// caches. Flows come in mirror pairs so that every pass hits a real established
// flow: flow A turns C:c->V:v into L:l->B:b and its twin turns it back.
#include <arpa/inet.h>
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "meshlb/bytes.h"
#include "meshlb/checksum.h"
#include "meshlb/flow_table.h"
#include "meshlb/huge_array.h"
#include "meshlb/maglev.h"
#include "meshlb/nat.h"
#include "meshlb/packet_key.h"
#include "meshlb/parse.h"
#include "meshlb/vxlan.h"
#include "packets.h"

namespace meshlb {
namespace {

constexpr uint32_t kBurst = 32;

struct Workload {
  explicit Workload(uint32_t flows)
      : table(flows + flows / 8, 0x5eed), npkts(flows / 2), pkts(size_t{npkts} * kPktSize) {
    for (uint32_t i = 0; i < npkts; ++i) {
      uint32_t c = htonl(0xc6120000u + (i >> 14)), l = htonl(0xc6130000u + (i >> 14));
      uint16_t cp = htons(static_cast<uint16_t>(1024 + (i & 0x3fff))), lp = cp;
      uint32_t v = htonl(0xc6120064u), b = htonl(0xc6130102u + (i % 3));
      uint16_t vp = htons(8080), bp = htons(80);
      Flow<Ipv4Addr> a{};
      a.client.v = c;
      a.cport = cp;
      a.vip.v = v;
      a.vport = vp;
      a.backend.v = b;
      a.bport = bp;
      a.local.v = l;
      a.lport = lp;
      a.backend_id = 1;
      // The twin: L:l->B:b back to C:c->V:v.
      Flow<Ipv4Addr> t{};
      t.client.v = l;
      t.cport = lp;
      t.vip.v = b;
      t.vport = bp;
      t.backend.v = v;
      t.bport = vp;
      t.local.v = c;
      t.lport = cp;
      t.backend_id = 2;
      for (auto* f : {&a, &t}) {
        auto* e = table.insert(*f, 0);
        table.onTcp(e, FlowDir::kOriginal, kTcpSyn, 0);
        table.onTcp(e, FlowDir::kReply, kTcpSyn | kTcpAck, 0);
        table.onTcp(e, FlowDir::kOriginal, kTcpAck, 0);
      }
      buildTcp(&pkts[size_t{i} * kPktSize], c, v, cp, vp, kTcpAck);
    }
    // One random permutation, replayed: any 3 bursts in flight hold distinct packets.
    order.resize(npkts);
    std::iota(order.begin(), order.end(), 0u);
    std::shuffle(order.begin(), order.end(), std::mt19937(1));
  }
  // The "ring" packet source: packet j is written afresh into one of kRingSize
  // recycled buffers, as a NIC writes each frame into a recycled mbuf (with DDIO,
  // into the cache), instead of being read from a pool spread over all flows.
  static constexpr uint32_t kRingSize = 4096;
  // kPktSize bytes of headroom in front of every frame (for VXLAN's 50) when asked.
  uint8_t* receiveIntoRing(size_t j, bool headroom = false) {
    if (j >= npkts) j -= npkts;
    const uint32_t i = order[j];
    uint8_t* buf = headroom ? &roomy_ring[(ring_pos++ & (kRingSize - 1)) * 2 * kPktSize + kPktSize]
                            : &ring[(ring_pos++ & (kRingSize - 1)) * kPktSize];
    buildTcp(buf, htonl(0xc6120000u + (i >> 14)), htonl(0xc6120064u),
             htons(static_cast<uint16_t>(1024 + (i & 0x3fff))), htons(8080), kTcpAck);
    return buf;
  }

  // k is kept below npkts by the callers (wrap()); j < 2 * npkts needs no division.
  uint8_t* pkt(size_t j) {
    if (j >= npkts) j -= npkts;
    return &pkts[size_t{order[j]} * kPktSize];
  }
  size_t wrap(size_t k) const { return k >= npkts ? k - npkts : k; }

  FlowTable4 table;
  uint32_t npkts;
  HugeArray<uint8_t> pkts;  // as DPDK mbufs on hugepages
  std::vector<uint32_t> order;
  HugeArray<uint8_t> ring{size_t{kRingSize} * kPktSize};
  HugeArray<uint8_t> roomy_ring{size_t{kRingSize} * 2 * kPktSize};
  uint32_t ring_pos = 0;
};

void report(benchmark::State& state, uint64_t packets) {
  state.SetItemsProcessed(static_cast<int64_t>(packets));
  state.counters["ns_per_pkt"] = benchmark::Counter(
      static_cast<double>(packets), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// Visits the workload's packets a burst at a time, prefetching the next burst, and
// calls `per_packet(frame)` on each: the frame of the I/O-only baselines.
template <class F>
void visitPackets(benchmark::State& state, bool ring, F&& per_packet) {
  Workload w(static_cast<uint32_t>(state.range(0)));
  size_t k = 0;
  uint64_t n = 0;
  for (auto _ : state) {
    if (ring) {
      for (uint32_t i = 0; i < kBurst; ++i) per_packet(w.receiveIntoRing(k + i));
    } else {
      for (uint32_t i = 0; i < kBurst; ++i) __builtin_prefetch(w.pkt(k + kBurst + i));
      for (uint32_t i = 0; i < kBurst; ++i) per_packet(w.pkt(k + i));
    }
    k = w.wrap(k + kBurst);
    n += kBurst;
  }
  report(state, n);
}

void baseline(benchmark::State& state, bool ring) {
  uint64_t sink = 0;
  visitPackets(state, ring, [&](uint8_t* f) {
    sink += load16(f + 12) + load32(f + 30) + load32(f + 34);
    f[22] ^= 1;  // the TTL
  });
  benchmark::DoNotOptimize(sink);
}

void BM_Baseline(benchmark::State& state) { baseline(state, false); }
void BM_RingBaseline(benchmark::State& state) { baseline(state, true); }

// The parse stage alone on the same packets: how much of the fast path it is.
void BM_ParseOnly(benchmark::State& state) {
  uint64_t sink = 0;
  ParsedPacket p;
  visitPackets(state, false, [&](uint8_t* f) {
    parsePacketFast(f, kPktSize, p);
    sink += p.ip.sport;
  });
  benchmark::DoNotOptimize(sink);
}

// Three bursts in flight, as a worker that has received ahead: burst t+2 is parsed,
// hashed and its buckets prefetched; burst t+1 has its records prefetched; burst t
// is looked up, its states advanced and its packets rewritten.
// vxlan: every rewritten packet is then encapsulated towards a node (vxlanEncap into
// the headroom), as a task behind the overlay makes it; ring receive, with headroom.
template <bool kVxlan = false>
void fastPath(benchmark::State& state, bool ring) {
  constexpr bool vxlan = kVxlan;  // a compile-time choice: no branch in the plain loop
  Workload w(static_cast<uint32_t>(state.range(0)));
  struct Burst {
    uint8_t* f[kBurst];
    ParsedPacket p[kBurst];
    bool plain[kBurst];
    FlowKey<Ipv4Addr> keys[kBurst];
    uint64_t h[kBurst];
    uint32_t cand[kBurst];
    FlowTable4::Hit hits[kBurst];
  };
  auto bursts = std::make_unique<Burst[]>(3);
  size_t k = 0;
  VxlanTunnel tunnel{
      {2, 0, 0, 0, 0, 2}, {2, 0, 0, 0, 0, 3}, htonl(0xc6130001u), htonl(0xc6130002u), 4097};
  auto receive = [&](Burst& b) {
    if (!ring) {
      for (uint32_t i = 0; i < kBurst; ++i) __builtin_prefetch(w.pkt(k + kBurst + i));
    }
    for (uint32_t i = 0; i < kBurst; ++i) {
      b.f[i] = ring ? w.receiveIntoRing(k + i, vxlan) : w.pkt(k + i);
      parsePacketFast(b.f[i], kPktSize, b.p[i], b.plain[i]);
      b.keys[i] = flowKey4(b.f[i], b.p[i]);
    }
    w.table.hashAndPrefetch(b.keys, kBurst, b.h);
    k = w.wrap(k + kBurst);
  };
  receive(bursts[0]);
  receive(bursts[1]);
  w.table.prefetchRecords(bursts[0].h, kBurst, bursts[0].cand);
  uint64_t n = 0, missed = 0;
  uint32_t t = 0;
  for (auto _ : state) {
    Burst& cur = bursts[t % 3];
    receive(bursts[(t + 2) % 3]);
    Burst& next = bursts[(t + 1) % 3];
    w.table.prefetchRecords(next.h, kBurst, next.cand);
    w.table.lookupHashed(cur.keys, cur.h, cur.cand, kBurst, cur.hits, 1000);
    for (uint32_t i = 0; i < kBurst; ++i) {
      auto* e = cur.hits[i].flow;
      if (__builtin_expect(e == nullptr, 0)) {
        ++missed;
        continue;
      }
      w.table.onTcp(e, cur.hits[i].dir, cur.p[i].tcp_flags, 1000);
      const Rewrite4 rw{true, true, {e->local, e->lport}, {e->backend, e->bport}};
      if (cur.plain[i]) {  // as the worker does
        natRewritePlain4(cur.f[i], rw);
      } else {
        natRewrite(cur.f[i], cur.p[i], rw);
      }
      if constexpr (kVxlan) vxlanEncap(cur.f[i], kEthHdrLen + 40, tunnel, cur.h[i]);
    }
    ++t;
    n += kBurst;
  }
  if (missed) state.SkipWithError("established flow missed");
  report(state, n);
  state.counters["flows"] = w.table.size();
  state.counters["bytes_per_flow"] =
      static_cast<double>(w.table.memoryBytes()) / w.table.capacity();
}

// IPv6: the same measure on IPv6 flows and 74-byte frames (kPkt6Size, each at a 128-byte
// stride), in the IPv6 table (100 bytes per connection against IPv4's 52), beside the
// I/O-only baseline on the same frames: read the headers, write the hop limit.
struct Workload6 {
  static constexpr size_t kStride = 128;
  static Ipv6Addr addr(uint16_t net, uint32_t host) {
    Ipv6Addr a{};
    a.b[0] = 0x20, a.b[1] = 0x01, a.b[2] = 0x0d, a.b[3] = 0xb8;
    storeBe16(a.b + 4, net);
    storeBe32(a.b + 12, host);
    return a;
  }
  explicit Workload6(uint32_t flows)
      : table(flows + flows / 8, 0x5eed), npkts(flows / 2), pkts(size_t{npkts} * kStride) {
    const Ipv6Addr v = addr(0, 0x100);
    for (uint32_t i = 0; i < npkts; ++i) {
      const Ipv6Addr c = addr(2, i >> 14), l = addr(1, 0x10000 + (i >> 14)), b = addr(1, 2 + i % 3);
      const uint16_t cp = htons(static_cast<uint16_t>(1024 + (i & 0x3fff))), lp = cp;
      Flow<Ipv6Addr> a{};
      a.client = c, a.cport = cp, a.vip = v, a.vport = htons(8080);
      a.backend = b, a.bport = htons(80), a.local = l, a.lport = lp, a.backend_id = 1;
      Flow<Ipv6Addr> t{};  // the twin: L:l->B:b back to C:c->V:v
      t.client = l, t.cport = lp, t.vip = b, t.vport = htons(80);
      t.backend = v, t.bport = htons(8080), t.local = c, t.lport = cp, t.backend_id = 2;
      for (auto* f : {&a, &t}) {
        auto* e = table.insert(*f, 0);
        table.onTcp(e, FlowDir::kOriginal, kTcpSyn, 0);
        table.onTcp(e, FlowDir::kReply, kTcpSyn | kTcpAck, 0);
        table.onTcp(e, FlowDir::kOriginal, kTcpAck, 0);
      }
      buildTcp6(&pkts[size_t{i} * kStride], c.b, v.b, cp, htons(8080), kTcpAck);
    }
    order.resize(npkts);
    std::iota(order.begin(), order.end(), 0u);
    std::shuffle(order.begin(), order.end(), std::mt19937(1));
  }
  uint8_t* pkt(size_t j) {
    if (j >= npkts) j -= npkts;
    return &pkts[size_t{order[j]} * kStride];
  }
  size_t wrap(size_t k) const { return k >= npkts ? k - npkts : k; }
  FlowTable6 table;
  uint32_t npkts;
  HugeArray<uint8_t> pkts;
  std::vector<uint32_t> order;
};

void BM_Baseline6(benchmark::State& state) {
  Workload6 w(static_cast<uint32_t>(state.range(0)));
  uint64_t sink = 0, n = 0;
  size_t k = 0;
  for (auto _ : state) {
    for (uint32_t i = 0; i < kBurst; ++i) __builtin_prefetch(w.pkt(k + kBurst + i));
    for (uint32_t i = 0; i < kBurst; ++i) {
      uint8_t* f = w.pkt(k + i);
      sink += load16(f + 12) + load32(f + 38) + load32(f + 50);
      f[21] ^= 1;  // the hop limit
    }
    k = w.wrap(k + kBurst);
    n += kBurst;
  }
  benchmark::DoNotOptimize(sink);
  report(state, n);
}

// The three bursts in flight of fastPath(), on IPv6 (the worker's IPv6 stages: the full
// parse, the key from the packet bytes, the same table code at 40-byte keys).
void BM_FastPath6(benchmark::State& state) {
  Workload6 w(static_cast<uint32_t>(state.range(0)));
  struct Burst {
    uint8_t* f[kBurst];
    ParsedPacket p[kBurst];
    FlowKey<Ipv6Addr> keys[kBurst];
    uint64_t h[kBurst];
    uint32_t cand[kBurst];
    FlowTable6::Hit hits[kBurst];
  };
  auto bursts = std::make_unique<Burst[]>(3);
  size_t k = 0;
  auto receive = [&](Burst& b) {
    for (uint32_t i = 0; i < kBurst; ++i) {
      __builtin_prefetch(w.pkt(k + kBurst + i));
      __builtin_prefetch(w.pkt(k + kBurst + i) + 64);  // the TCP header's second half
    }
    for (uint32_t i = 0; i < kBurst; ++i) {
      b.f[i] = w.pkt(k + i);
      bool plain;
      parsePacketFast(b.f[i], kPkt6Size, b.p[i], plain);
      const uint8_t* ip = b.f[i] + b.p[i].ip.l3_offset;
      std::memcpy(b.keys[i].src.b, ip + 8, 16);
      std::memcpy(b.keys[i].dst.b, ip + 24, 16);
      b.keys[i].sport = b.p[i].ip.sport;
      b.keys[i].dport = b.p[i].ip.dport;
      b.keys[i].proto = b.p[i].ip.l4_proto;
    }
    w.table.hashAndPrefetch(b.keys, kBurst, b.h);
    k = w.wrap(k + kBurst);
  };
  receive(bursts[0]);
  receive(bursts[1]);
  w.table.prefetchRecords(bursts[0].h, kBurst, bursts[0].cand);
  uint64_t n = 0, missed = 0;
  uint32_t t = 0;
  for (auto _ : state) {
    Burst& cur = bursts[t % 3];
    receive(bursts[(t + 2) % 3]);
    Burst& next = bursts[(t + 1) % 3];
    w.table.prefetchRecords(next.h, kBurst, next.cand);
    w.table.lookupHashed(cur.keys, cur.h, cur.cand, kBurst, cur.hits, 1000);
    for (uint32_t i = 0; i < kBurst; ++i) {
      auto* e = cur.hits[i].flow;
      if (__builtin_expect(e == nullptr, 0)) {
        ++missed;
        continue;
      }
      w.table.onTcp(e, cur.hits[i].dir, cur.p[i].tcp_flags, 1000);
      natRewrite(cur.f[i], cur.p[i],
                 Rewrite6{true, true, {e->local, e->lport}, {e->backend, e->bport}});
    }
    ++t;
    n += kBurst;
  }
  if (missed) state.SkipWithError("established flow missed");
  report(state, n);
  state.counters["flows"] = w.table.size();
  state.counters["bytes_per_flow"] =
      static_cast<double>(w.table.memoryBytes()) / w.table.capacity();
}

void BM_FastPath(benchmark::State& state) { fastPath(state, false); }
void BM_FastPathRing(benchmark::State& state) { fastPath(state, true); }
void BM_FastPathVxlan(benchmark::State& state) { fastPath<true>(state, true); }

// New connections: SYNs for tuples never seen, through the whole new-flow path in
// bursts: parse and hash all, prefetching the original keys' buckets; then miss,
// pick a backend with Maglev, choose the SNAT endpoint and prefetch the reply
// key's buckets; then insert, advance the state and rewrite.
void newFlowLoop(benchmark::State& state, bool baseline) {
  const uint32_t kCapacity = 1u << 20;
  auto table = std::make_unique<FlowTable4>(kCapacity, 7);
  std::vector<MaglevBackend> be;
  for (uint32_t i = 0; i < 100; ++i) be.push_back({"task" + std::to_string(i), 1, i + 1});
  auto mg = MaglevTable::build(be);
  std::vector<uint8_t> frames(kBurst * kPktSize);
  ParsedPacket p[kBurst];
  FlowKey<Ipv4Addr> keys[kBurst];
  uint64_t oh[kBurst], rh[kBurst];
  Flow<Ipv4Addr> fl[kBurst];
  bool fresh[kBurst];
  uint32_t next = 0;
  uint64_t n = 0, sink = 0;
  const uint32_t vip = htonl(0xc6120064u), lb = htonl(0xc6130001u);
  for (auto _ : state) {
    if (table->size() + kBurst > kCapacity * 7 / 8) {
      state.PauseTiming();
      table = std::make_unique<FlowTable4>(kCapacity, 7);
      state.ResumeTiming();
    }
    for (uint32_t i = 0; i < kBurst; ++i) {
      uint8_t* f = &frames[i * kPktSize];
      const uint32_t id = next + i;
      buildTcp(f, htonl(0xc6120000u + (id >> 16)), vip, htons(static_cast<uint16_t>(id)),
               htons(8080), kTcpSyn);
      if (baseline) {
        sink += load16(f + 12) + load32(f + 30) + load32(f + 34);
        f[22] ^= 1;
        continue;
      }
      parsePacketFast(f, kPktSize, p[i]);
      keys[i] = flowKey4(f, p[i]);
    }
    if (!baseline) {
      for (uint32_t i = 0; i < kBurst; ++i) {
        oh[i] = table->hash(keys[i]);
        table->prefetchBoth(oh[i]);  // new keys miss: both buckets are read
      }
      for (uint32_t i = 0; i < kBurst; ++i) {
        fresh[i] = table->lookup(keys[i], oh[i], 0).flow == nullptr;
        if (!fresh[i]) continue;
        const uint32_t id = next + i;
        const uint32_t backend = mg->lookup(oh[i]);
        Flow<Ipv4Addr>& e = fl[i];
        e = {};
        e.client = keys[i].src;
        e.cport = keys[i].sport;
        e.vip = keys[i].dst;
        e.vport = keys[i].dport;
        e.backend.v = htonl(0xc6130100u + backend);
        e.bport = htons(80);
        e.local.v = lb + (id >> 16);
        e.lport = htons(static_cast<uint16_t>(id));
        e.backend_id = backend;
        rh[i] = table->hash(e.replyKey());
        table->prefetchBoth(rh[i]);
      }
      for (uint32_t i = 0; i < kBurst; ++i) {
        if (!fresh[i]) continue;
        auto* e = table->insert(fl[i], 0, oh[i], rh[i]);
        if (!e) continue;
        table->onTcp(e, FlowDir::kOriginal, p[i].tcp_flags, 0);
        natRewrite(&frames[i * kPktSize], p[i],
                   Rewrite4{true, true, {e->local, e->lport}, {e->backend, e->bport}});
      }
    }
    next += kBurst;
    n += kBurst;
  }
  benchmark::DoNotOptimize(sink);
  report(state, n);
}
void BM_NewFlowBaseline(benchmark::State& state) { newFlowLoop(state, true); }
void BM_NewFlow(benchmark::State& state) { newFlowLoop(state, false); }

std::vector<MaglevBackend> backends(int n) {
  std::vector<MaglevBackend> v;
  for (int i = 0; i < n; ++i) {
    v.push_back({"198.19." + std::to_string(i / 250) + "." + std::to_string(i % 250) + ":80", 1,
                 static_cast<uint32_t>(i + 1)});
  }
  return v;
}

void BM_MaglevFillBaseline(benchmark::State& state) {
  const auto m = static_cast<uint32_t>(state.range(1));
  const auto nb = static_cast<uint32_t>(state.range(0));
  std::vector<uint32_t> slots;
  for (auto _ : state) {
    slots.assign(m, 0);
    for (uint32_t i = 0; i < m; ++i) slots[i] = i % nb + 1;
    benchmark::DoNotOptimize(slots.data());
  }
}

void maglevBuild(benchmark::State& state, bool one_by_one) {
  auto be = backends(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    auto t = MaglevTable::build(be, static_cast<uint32_t>(state.range(1)), one_by_one);
    benchmark::DoNotOptimize(t->slots().data());
  }
}
void BM_MaglevBuild(benchmark::State& state) { maglevBuild(state, false); }
// The one-pick-at-a-time definition the unit tests hold BM_MaglevBuild's table to.
void BM_MaglevBuildOneByOne(benchmark::State& state) { maglevBuild(state, true); }

BENCHMARK(BM_Baseline)->Arg(1000)->Arg(100000)->Arg(1000000)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_ParseOnly)->Arg(1000)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_FastPath)->Arg(1000)->Arg(100000)->Arg(1000000)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_Baseline6)->Arg(1000)->Arg(1000000)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_FastPath6)->Arg(1000)->Arg(1000000)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_RingBaseline)->Arg(1000000)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_FastPathRing)->Arg(1000)->Arg(1000000)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_FastPathVxlan)->Arg(1000)->Arg(1000000)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_NewFlowBaseline);
BENCHMARK(BM_NewFlow);
BENCHMARK(BM_MaglevFillBaseline)
    ->ArgsProduct({{10, 100, 1000}, {kDefaultMaglevSize, kLargeMaglevSize}})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MaglevBuild)
    ->ArgsProduct({{10, 100, 1000}, {kDefaultMaglevSize, kLargeMaglevSize}})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MaglevBuildOneByOne)
    ->ArgsProduct({{10, 100, 1000}, {kDefaultMaglevSize, kLargeMaglevSize}})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace meshlb

BENCHMARK_MAIN();
