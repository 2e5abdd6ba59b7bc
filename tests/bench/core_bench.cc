// Hot-path benchmarks, each beside a baseline measured in the same run.
//
//  BM_Baseline/F       an I/O-only stand-in: read the headers a forwarder reads
//                      and write the TTL, on the same packets in the same order.
//  BM_FastPath/F       parse + burst flow lookup + TCP state + full NAT rewrite
//                      for established flows, F flows in the table.
//  BM_NewFlow*         parse + miss + Maglev pick + insert + state + NAT for SYNs.
//  BM_MaglevBuild/N/M  table population, N backends, M slots; beside it a plain
//                      fill of the same table as the floor.
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
#include "meshlb/maglev.h"
#include "meshlb/nat.h"
#include "meshlb/parse.h"

namespace meshlb {
namespace {

constexpr uint32_t kBurst = 32;
constexpr uint32_t kPktSize = 64;

void buildTcp(uint8_t* f, uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport,
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

struct Workload {
  explicit Workload(uint32_t flows)
      : table(flows + flows / 8, 0x5eed), npkts(flows / 2), pkts(size_t{npkts} * kPktSize) {
    for (uint32_t i = 0; i < npkts; ++i) {
      uint32_t c = htonl(0xc6120000u + (i >> 14)), l = htonl(0xc6130000u + (i >> 14));
      uint16_t cp = htons(static_cast<uint16_t>(1024 + (i & 0x3fff))), lp = cp;
      uint32_t v = htonl(0xc6120064u), b = htonl(0xc6130102u + (i % 3));
      uint16_t vp = htons(8080), bp = htons(80);
      Flow<Ipv4Addr> a{};
      a.client.v = c; a.cport = cp; a.vip.v = v; a.vport = vp;
      a.backend.v = b; a.bport = bp; a.local.v = l; a.lport = lp;
      a.backend_id = 1;
      // The twin: L:l->B:b back to C:c->V:v.
      Flow<Ipv4Addr> t{};
      t.client.v = l; t.cport = lp; t.vip.v = b; t.vport = bp;
      t.backend.v = v; t.bport = vp; t.local.v = c; t.lport = cp;
      t.backend_id = 2;
      for (auto* f : {&a, &t}) {
        auto* e = table.insert(*f, 0);
        table.onTcp(e, FlowDir::kOriginal, kTcpSyn, 0);
        table.onTcp(e, FlowDir::kReply, kTcpSyn | kTcpAck, 0);
        table.onTcp(e, FlowDir::kOriginal, kTcpAck, 0);
      }
      buildTcp(&pkts[size_t{i} * kPktSize], c, v, cp, vp, kTcpAck);
    }
    order.resize(std::max<uint32_t>(npkts, 1u << 16));
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<uint32_t>(i % npkts);
    std::shuffle(order.begin(), order.end(), std::mt19937(1));
  }
  uint8_t* pkt(size_t k) { return &pkts[size_t{order[k % order.size()]} * kPktSize]; }

  FlowTable4 table;
  uint32_t npkts;
  std::vector<uint8_t> pkts;
  std::vector<uint32_t> order;
};

void report(benchmark::State& state, uint64_t packets) {
  state.SetItemsProcessed(static_cast<int64_t>(packets));
  state.counters["ns_per_pkt"] =
      benchmark::Counter(static_cast<double>(packets), benchmark::Counter::kIsRate |
                                                           benchmark::Counter::kInvert);
}

void BM_Baseline(benchmark::State& state) {
  Workload w(static_cast<uint32_t>(state.range(0)));
  size_t k = 0;
  uint64_t n = 0, sink = 0;
  for (auto _ : state) {
    for (uint32_t i = 0; i < kBurst; ++i) {
      uint8_t* f = w.pkt(k + i + 8);
      __builtin_prefetch(f);
      f = w.pkt(k + i);
      sink += load16(f + 12) + load32(f + 30) + load32(f + 34);
      f[22] ^= 1;  // the TTL
    }
    k += kBurst;
    n += kBurst;
  }
  benchmark::DoNotOptimize(sink);
  report(state, n);
}

void BM_FastPath(benchmark::State& state) {
  Workload w(static_cast<uint32_t>(state.range(0)));
  size_t k = 0;
  uint64_t n = 0, missed = 0;
  ParsedPacket p[kBurst];
  FlowKey<Ipv4Addr> keys[kBurst];
  FlowTable4::Hit hits[kBurst];
  uint8_t* f[kBurst];
  for (auto _ : state) {
    for (uint32_t i = 0; i < kBurst; ++i) __builtin_prefetch(w.pkt(k + kBurst + i));
    for (uint32_t i = 0; i < kBurst; ++i) {
      f[i] = w.pkt(k + i);
      parsePacket(f[i], kPktSize, p[i]);
      const uint8_t* ip = f[i] + p[i].ip.l3_offset;
      keys[i] = {{load32(ip + 12)}, {load32(ip + 16)}, p[i].ip.sport, p[i].ip.dport,
                 p[i].ip.l4_proto};
    }
    w.table.lookupBurst(keys, kBurst, hits, 1000);
    for (uint32_t i = 0; i < kBurst; ++i) {
      auto* e = hits[i].flow;
      if (__builtin_expect(e == nullptr, 0)) {
        ++missed;
        continue;
      }
      w.table.onTcp(e, hits[i].dir, p[i].tcp_flags, 1000);
      natRewrite(f[i], p[i], Rewrite4{true, true, {e->local, e->lport}, {e->backend, e->bport}});
    }
    k += kBurst;
    n += kBurst;
  }
  if (missed) state.SkipWithError("established flow missed");
  report(state, n);
  state.counters["flows"] = w.table.size();
  state.counters["bytes_per_flow"] =
      static_cast<double>(w.table.memoryBytes()) / w.table.capacity();
}

// New connections: SYNs for tuples never seen, through the whole new-flow path.
void newFlowLoop(benchmark::State& state, bool baseline) {
  const uint32_t kCapacity = 1u << 20;
  auto table = std::make_unique<FlowTable4>(kCapacity, 7);
  std::vector<MaglevBackend> be;
  for (uint32_t i = 0; i < 100; ++i) be.push_back({"task" + std::to_string(i), 1, i + 1});
  auto mg = MaglevTable::build(be);
  std::vector<uint8_t> frames(kBurst * kPktSize);
  uint32_t next = 0;
  uint64_t n = 0, sink = 0;
  const uint32_t vip = htonl(0xc6120064u), lb = htonl(0xc6130001u);
  for (auto _ : state) {
    if (table->size() + kBurst > kCapacity * 7 / 8) {
      state.PauseTiming();
      table = std::make_unique<FlowTable4>(kCapacity, 7);
      state.ResumeTiming();
    }
    for (uint32_t i = 0; i < kBurst; ++i, ++next) {
      uint8_t* f = &frames[i * kPktSize];
      buildTcp(f, htonl(0xc6120000u + (next >> 16)), vip, htons(static_cast<uint16_t>(next)),
               htons(8080), kTcpSyn);
      if (baseline) {
        sink += load16(f + 12) + load32(f + 30) + load32(f + 34);
        f[22] ^= 1;
        continue;
      }
      ParsedPacket p;
      parsePacket(f, kPktSize, p);
      const uint8_t* ip = f + p.ip.l3_offset;
      FlowKey<Ipv4Addr> key{{load32(ip + 12)}, {load32(ip + 16)}, p.ip.sport, p.ip.dport,
                            p.ip.l4_proto};
      uint64_t h = table->hash(key);
      if (table->lookup(key, h, 0).flow) continue;
      uint32_t backend = mg->lookup(h);
      Flow<Ipv4Addr> fl{};
      fl.client = key.src; fl.cport = key.sport; fl.vip = key.dst; fl.vport = key.dport;
      fl.backend.v = htonl(0xc6130100u + backend); fl.bport = htons(80);
      fl.local.v = lb + (next >> 16); fl.lport = htons(static_cast<uint16_t>(next));
      fl.backend_id = backend;
      auto* e = table->insert(fl, 0);
      if (!e) continue;
      table->onTcp(e, FlowDir::kOriginal, p.tcp_flags, 0);
      natRewrite(f, p, Rewrite4{true, true, {e->local, e->lport}, {e->backend, e->bport}});
    }
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

void BM_MaglevBuild(benchmark::State& state) {
  auto be = backends(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    auto t = MaglevTable::build(be, static_cast<uint32_t>(state.range(1)));
    benchmark::DoNotOptimize(t->slots().data());
  }
}

BENCHMARK(BM_Baseline)->Arg(1000)->Arg(100000)->Arg(1000000)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_FastPath)->Arg(1000)->Arg(100000)->Arg(1000000)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_NewFlowBaseline);
BENCHMARK(BM_NewFlow);
BENCHMARK(BM_MaglevFillBaseline)
    ->ArgsProduct({{10, 100, 1000}, {kDefaultMaglevSize, kLargeMaglevSize}})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MaglevBuild)
    ->ArgsProduct({{10, 100, 1000}, {kDefaultMaglevSize, kLargeMaglevSize}})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace meshlb

BENCHMARK_MAIN();
