// The daemon's worker loop (runWorker) through a DPDK port, beside an I/O-only
// forwarder on the same port, lcores and packets (DESIGN.md, "Performance method").
//
// The port is net_null (EAL: --vdev net_null0): RX hands out mbufs from the pool
// and TX frees them, a driver's costs without a wire. An RX callback writes each
// received mbuf's frame as a NIC's DMA would: the next packet of the queue's flows,
// streamed from a per-queue array in a random flow order. Pass 0 sends every flow's
// SYN (the new-connection path; its rate is reported), later passes ACKs on the
// established connections. Each worker's flows are ones it owns (ownerOf),
// so nothing is handed between workers.
//
// On the same worker lcores, one after the other:
//  - forwarder: receive, swap MACs, transmit (l2fwd): the I/O-only baseline;
//  - meshlb: runWorker on a snapshot with one TCP service (rr, 10 tasks, DNAT), a
//    connected route and resolved neighbours; its flow table holds flows + 1/8.
// After each meshlb run the worker's counters must show one connection per flow,
// every packet sent and nothing dropped, handed off or given to the kernel: the
// program exits 1 otherwise, since a rate with drops in it means nothing.
//
// Latency (--latency RATE): each side runs twice more per flow count, with the RX
// callback stamping every frame with the TSC and a TX callback binning, per
// queue, the cycles until that frame reaches rte_eth_tx_burst: once at full rate
// (RX always returns a whole burst, as a saturated NIC does) and once paced at RATE
// Mpps per worker (frames handed out as they fall due, the rest of each burst freed
// unseen), where the RX queue is mostly empty. Percentiles come from log-linear bins
// (16 per power of two: within 6%).
//
//   worker_bench [EAL options] -- [--flows N,N,...] [--seconds S] [--reps R]
//                                 [--only fwd|meshlb] [--encap plain|vxlan] [--latency MPPS]
//                                 [--family 4|6]
// (--family 6: IPv6 clients, service and tasks, 74-byte frames; the forwarder moves the
// same frames.)
// (--encap vxlan: the tasks are behind a VXLAN overlay; meshlb encapsulates every
// packet towards their nodes, the forwarder does what it always does.)
// (--only runs one side, for profiling; no ratio is printed then.)
// Workers = lcores - 1 (the main lcore only measures). Flows are per worker.
#include <arpa/inet.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "meshlb/bytes.h"
#include "meshlb/checksum.h"
#include "meshlb/huge_array.h"
#include "packets.h"
#include "worker.h"

namespace meshlb {
namespace {

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "worker_bench: %s\n", msg.c_str());
  std::exit(1);
}

const uint32_t kVip = htonl(0xc6120064u);  // 198.18.0.100
const uint16_t kVport = htons(80);
const uint32_t kTaskNet = htonl(0xc6130100u);  // 198.19.1.0/24: tasks .1 - .10
constexpr uint32_t kTasks = 10;

// One queue's packet source, written by its worker lcore inside rx_burst.
struct alignas(64) Replay {
  HugeArray<uint8_t> frames;  // kPktSize bytes per flow, in visiting order
  uint32_t flows = 0;
  uint32_t pos = 0;
  std::atomic<uint32_t> pass{0};
  uint64_t start_tsc = 0;
  std::atomic<uint64_t> syn_pass_tsc{0};  // cycles pass 0 took
  // Latency runs: every frame stamped; paced when pkts_per_tsc > 0.
  bool stamp = false;
  double pkts_per_tsc = 0;
  uint64_t pace_t0 = 0;
  uint64_t delivered = 0;
};

// Where the RX callback stamps a frame's TSC (the mbuf's RX timestamp field).
int g_tsc_field = -1;
uint64_t& rxTsc(rte_mbuf* m) { return *RTE_MBUF_DYNFIELD(m, g_tsc_field, uint64_t*); }

// Cycles from RX to TX, binned log-linearly: 16 bins per power of two.
struct alignas(64) LatencyHist {
  static constexpr int kSub = 16;
  std::array<uint64_t, 64 * kSub> bins{};
  static int bin(uint64_t c) {
    if (c < kSub) return static_cast<int>(c);
    const int msb = 63 - __builtin_clzll(c);  // >= 4
    return (msb - 3) * kSub + static_cast<int>((c >> (msb - 4)) & (kSub - 1));
  }
  static uint64_t lowerBound(int b) {  // the smallest value of bin b
    if (b < kSub) return static_cast<uint64_t>(b);
    const int msb = b / kSub + 3;
    return (uint64_t{1} << msb) | (static_cast<uint64_t>(b % kSub) << (msb - 4));
  }
};
std::atomic<bool> g_latency_on{false};
bool g_vxlan = false;  // --encap vxlan
bool g_v6 = false;     // --family 6
// A frame's size and its TCP header's offset, by family.
uint32_t frameSize() { return g_v6 ? kPkt6Size : kPktSize; }
uint32_t tcpOffset() { return g_v6 ? 54 : 34; }
// IPv6: the VIP 2001:db8::100, tasks 2001:db8:1::1 - ::a, clients 2001:db8:2::/64.
Ipv6Addr v6Addr(uint16_t net, uint32_t host) {
  Ipv6Addr a{};
  a.b[0] = 0x20, a.b[1] = 0x01, a.b[2] = 0x0d, a.b[3] = 0xb8;
  storeBe16(a.b + 4, net);
  storeBe32(a.b + 12, host);
  return a;
}

uint16_t latencyTx(uint16_t, uint16_t, rte_mbuf** pkts, uint16_t n, void* arg) {
  if (!g_latency_on.load(std::memory_order_relaxed)) return n;
  auto* h = static_cast<LatencyHist*>(arg);
  const uint64_t now = rte_rdtsc();
  for (uint16_t i = 0; i < n; ++i) ++h->bins[LatencyHist::bin(now - rxTsc(pkts[i]))];
  return n;
}

uint16_t replayRx(uint16_t, uint16_t, rte_mbuf** pkts, uint16_t n, uint16_t, void* arg) {
  auto* r = static_cast<Replay*>(arg);
  uint64_t now = 0;
  if (r->stamp) {
    now = rte_rdtsc();
    if (r->pkts_per_tsc > 0) {  // only the frames due by now; the rest never arrived
      const auto due =
          static_cast<uint64_t>(static_cast<double>(now - r->pace_t0) * r->pkts_per_tsc);
      const uint64_t k = due > r->delivered ? std::min<uint64_t>(due - r->delivered, n) : 0;
      if (k < n) rte_pktmbuf_free_bulk(pkts + k, n - static_cast<uint16_t>(k));
      n = static_cast<uint16_t>(k);
      r->delivered += n;
    }
  }
  uint32_t pass = r->pass.load(std::memory_order_relaxed);
  if (pass == 0 && r->pos == 0 && n) r->start_tsc = rte_rdtsc();
  for (uint16_t i = 0; i < n; ++i) {
    if (r->stamp) rxTsc(pkts[i]) = now;
    uint8_t* f = rte_pktmbuf_mtod(pkts[i], uint8_t*);
    const uint32_t size = frameSize();
    std::memcpy(f, &r->frames[size_t{r->pos} * size], size);
    pkts[i]->data_len = static_cast<uint16_t>(size);
    pkts[i]->pkt_len = size;
    if (pass == 0) {  // the flow's SYN: flags and TCP checksum
      uint8_t* tcp = f + tcpOffset();
      const uint16_t old = load16(tcp + 12);
      tcp[13] = kTcpSyn;
      csumReplace16(tcp + 16, old, load16(tcp + 12));
    }
    if (++r->pos == r->flows) {
      r->pos = 0;
      if (pass == 0) r->syn_pass_tsc.store(rte_rdtsc() - r->start_tsc, std::memory_order_relaxed);
      r->pass.store(++pass, std::memory_order_relaxed);
    }
  }
  return n;
}

// Client endpoints owned by worker w, `flows` of them, frames in a random order.
void fillReplay(Replay& r, uint16_t w, uint16_t workers, uint32_t flows, uint32_t seed) {
  std::vector<std::pair<uint32_t, uint16_t>> eps;
  eps.reserve(flows);
  for (uint64_t k = 0; eps.size() < flows; ++k) {
    const uint32_t ip = htonl(0xc6120100u + static_cast<uint32_t>(k >> 14));  // 198.18.1.0 on
    const uint16_t port = htons(static_cast<uint16_t>(1024 + (k & 0x3fff)));
    const uint16_t owner = g_v6 ? ownerOf(Endpoint<Ipv6Addr>{v6Addr(2, ntohl(ip)), port}, workers)
                                : ownerOf(Endpoint<Ipv4Addr>{{ip}, port}, workers);
    if (owner == w) eps.emplace_back(ip, port);
  }
  std::shuffle(eps.begin(), eps.end(), std::mt19937(seed));
  r.frames = HugeArray<uint8_t>(size_t{flows} * frameSize());
  for (uint32_t i = 0; i < flows; ++i) {
    uint8_t* f = &r.frames[size_t{i} * frameSize()];
    if (g_v6) {
      buildTcp6(f, v6Addr(2, ntohl(eps[i].first)).b, v6Addr(0, 0x100).b, eps[i].second, kVport,
                kTcpAck);
    } else {
      buildTcp(f, eps[i].first, kVip, eps[i].second, kVport, kTcpAck);
    }
  }
  r.flows = flows;
}

// The tasks behind a VXLAN overlay instead (--encap vxlan): 198.19.1.0/24 is a vxlan
// device's route, each task's MAC is known there and the FDB puts tasks on two nodes,
// 198.19.0.2 and .3, reached on the port; every packet leaves 50 bytes longer.
void addOverlay(Snapshot& s) {
  FamilySnap<Ipv4Addr>& f = s.v4;
  OverlaySnap ov;
  ov.vni = 4097;
  ov.udp_port = kVxlanPort;
  ov.local = {htonl(0xc6130001u)};
  ov.mac = {2, 0x42, 0, 0, 0, 1};
  s.overlays.push_back(ov);
  RouteSnap<Ipv4Addr> rt;
  rt.dst = Prefix<Ipv4Addr>::make({kTaskNet}, 24);
  rt.overlay = 0;
  f.routes.insert(f.routes.begin(), rt);  // longest prefix first
  for (uint32_t t = 1; t <= kTasks; ++t) {
    const Ipv4Addr addr{htonl(ntohl(kTaskNet) + t)};
    const std::array<uint8_t, 6> mac{2, 0x42, 0, 0, 1, static_cast<uint8_t>(t)};
    f.neigh.set(kOverlayNeighPort, addr, mac);
    s.fdb.set(0, mac, IpAddr::of(Ipv4Addr{htonl(0xc6130002u + t % 2)}));  // nodes .2 and .3
  }
  for (uint32_t n = 2; n <= 3; ++n) {
    f.neigh.set(0, {htonl(0xc6130000u + n)}, {2, 0, 0, 0, 0, static_cast<uint8_t>(n)});
  }
}

// --family 6: the same service, tasks and route in IPv6.
void makeV6(Snapshot& s) {
  FamilySnap<Ipv6Addr>& f = s.v6;
  ServiceSnap<Ipv6Addr> svc;
  svc.proto = kProtoTcp;
  svc.vip = v6Addr(0, 0x100);
  svc.vport = kVport;
  svc.sched = findScheduler("rr");
  svc.max_weight = 1;
  f.port_addr.push_back(v6Addr(1, 0xffff));
  f.port_has_addr.push_back(true);
  f.local_addrs.insert(svc.vip);
  RouteSnap<Ipv6Addr> rt;
  rt.dst = Prefix<Ipv6Addr>::make(v6Addr(1, 0), 64);
  f.routes.push_back(rt);
  for (uint32_t t = 1; t <= kTasks; ++t) {
    const Ipv6Addr addr = v6Addr(1, t);
    const BackendId id = BackendId::make(0, t);
    svc.backends.push_back({addr, kVport, 1, id});
    svc.weights.push_back(1);
    svc.slots.push_back(t);
    f.neigh.set(0, addr, {2, 0, 0, 0, 1, static_cast<uint8_t>(t)});
  }
  const auto vip = svc.vip;
  f.services.put(FamilySnap<Ipv6Addr>::serviceKey(kProtoTcp, vip, kVport),
                 std::make_shared<const ServiceSnap<Ipv6Addr>>(std::move(svc)));
}

std::unique_ptr<Snapshot> makeSnapshot(const rte_ether_addr& port_mac) {
  auto s = std::make_unique<Snapshot>();
  FamilySnap<Ipv4Addr>& f = s->v4;
  ServiceSnap<Ipv4Addr> svc;
  svc.proto = kProtoTcp;
  svc.vip = {kVip};
  svc.vport = kVport;
  svc.sched = findScheduler("rr");
  svc.max_weight = 1;
  std::array<uint8_t, 6> mac;
  std::memcpy(mac.data(), port_mac.addr_bytes, 6);
  s->port_mac.push_back(mac);
  f.port_addr.push_back({htonl(0xc6130001u)});
  f.local_addrs.insert({kVip});  // the VIP is the appliance's own (an alias on the twin)
  f.port_has_addr.push_back(true);
  RouteSnap<Ipv4Addr> rt;
  rt.dst = Prefix<Ipv4Addr>::make({htonl(0xc6130000u)}, 16);  // 198.19.0.0/16
  f.routes.push_back(rt);
  for (uint32_t t = 1; t <= kTasks; ++t) {
    const Ipv4Addr addr{htonl(ntohl(kTaskNet) + t)};
    const BackendId id = BackendId::make(0, t);
    svc.backends.push_back({addr, kVport, 1, id});
    svc.weights.push_back(1);
    svc.slots.push_back(t);
    s->setBackendLive(id);
    f.neigh.set(0, addr, {2, 0, 0, 0, 1, static_cast<uint8_t>(t)});
  }
  f.services.put(FamilySnap<Ipv4Addr>::serviceKey(kProtoTcp, svc.vip, kVport),
                 std::make_shared<const ServiceSnap<Ipv4Addr>>(std::move(svc)));
  return s;
}

struct alignas(64) FwdStats {
  std::atomic<uint64_t> tx{0};
  std::atomic<uint64_t> empty_polls{0};
};

struct Bench {
  uint16_t port = 0;
  uint16_t workers = 0;
  std::vector<unsigned> lcores;
  std::vector<std::unique_ptr<Replay>> replays;
  std::vector<std::unique_ptr<LatencyHist>> hists;  // per queue, written by its TX callback
  std::unique_ptr<Snapshot> snap;
  std::atomic<bool> fwd_running{false};
  std::unique_ptr<FwdStats[]> fwd;
  rte_ring* handoff[kMaxWorkers] = {};
  rte_ring* to_kernel = nullptr;
  rte_ring* from_kernel = nullptr;
};
Bench* g = nullptr;

int forwarderMain(void* arg) {
  const auto q = static_cast<uint16_t>(reinterpret_cast<uintptr_t>(arg));
  FwdStats& st = g->fwd[q];
  rte_mbuf* pkts[kRxBurst];
  while (g->fwd_running.load(std::memory_order_relaxed)) {
    const uint16_t n = rte_eth_rx_burst(g->port, q, pkts, kRxBurst);
    if (n == 0) {
      bump(st.empty_polls);
      continue;
    }
    for (uint16_t i = 0; i < n; ++i) {
      uint8_t* f = rte_pktmbuf_mtod(pkts[i], uint8_t*);
      uint8_t tmp[6];
      std::memcpy(tmp, f, 6);
      std::memcpy(f, f + 6, 6);
      std::memcpy(f + 6, tmp, 6);
    }
    const uint16_t sent = rte_eth_tx_burst(g->port, q, pkts, n);
    if (sent < n) rte_pktmbuf_free_bulk(pkts + sent, n - sent);
    bump(st.tx, sent);
  }
  return 0;
}

struct MeshlbRun {
  Dataplane dp;
  std::vector<WorkerConfig> cfg;
  std::vector<HugeArray<std::atomic<uint32_t>>> conn_counts;
  std::vector<HugeArray<BackendStats>> backend_stats;
};

int meshlbMain(void* arg) {
  auto* c = static_cast<std::pair<MeshlbRun*, uint16_t>*>(arg);
  return runWorker(c->first->dp, c->first->cfg[c->second]);
}

struct Result {
  double mpps = 0;                             // all workers
  double syn_kconn_s = 0;                      // pass 0, per worker, mean
  double p50_ns = 0, p99_ns = 0, p999_ns = 0;  // latency runs
};

// What a latency run asks of the replays: nothing (a throughput run), stamping at
// full rate, or stamping paced at `mpps` per worker.
struct Load {
  bool latency = false;
  double mpps = 0;  // 0: full rate
};

double seconds(uint64_t tsc) { return static_cast<double>(tsc) / rte_get_tsc_hz(); }

void resetReplays(Load load) {
  for (auto& r : g->replays) {
    r->pos = 0;
    r->pass.store(0);
    r->syn_pass_tsc.store(0);
    r->stamp = load.latency;
    r->pkts_per_tsc = load.mpps * 1e6 / static_cast<double>(rte_get_tsc_hz());
    r->pace_t0 = rte_rdtsc();
    r->delivered = 0;
  }
}

// Percentile p (0..1) of the queues' histograms, in ns; the bin's lower bound.
double percentileNs(double p) {
  uint64_t total = 0;
  for (auto& h : g->hists) total = std::accumulate(h->bins.begin(), h->bins.end(), total);
  if (total == 0) die("a latency run recorded no packet");
  const auto want = static_cast<uint64_t>(p * static_cast<double>(total - 1)) + 1;
  uint64_t seen = 0;
  for (int b = 0; b < static_cast<int>(g->hists[0]->bins.size()); ++b) {
    for (auto& h : g->hists) seen += h->bins[b];
    if (seen >= want) {
      return static_cast<double>(LatencyHist::lowerBound(b)) * 1e9 /
             static_cast<double>(rte_get_tsc_hz());
    }
  }
  return 0;
}

// Waits until every queue has finished `passes` passes (bounded), then counts
// what `sent` reports over `secs` seconds.
template <class F>
Result measure(double secs, F&& sent) {
  const uint64_t deadline = rte_rdtsc() + 120 * rte_get_tsc_hz();
  for (auto& r : g->replays) {
    while (r->pass.load(std::memory_order_relaxed) < 2) {
      if (rte_rdtsc() > deadline) die("warm-up did not finish in 120 s");
      rte_delay_us_sleep(1000);
    }
  }
  for (auto& h : g->hists) h->bins.fill(0);
  g_latency_on.store(g->replays[0]->stamp);
  const uint64_t t0 = rte_rdtsc();
  const uint64_t s0 = sent();
  rte_delay_us_sleep(static_cast<unsigned>(secs * 1e6));
  const uint64_t s1 = sent();
  const uint64_t t1 = rte_rdtsc();
  g_latency_on.store(false);
  Result res;
  res.mpps = static_cast<double>(s1 - s0) / seconds(t1 - t0) / 1e6;
  if (g->replays[0]->stamp) {
    res.p50_ns = percentileNs(0.5);
    res.p99_ns = percentileNs(0.99);
    res.p999_ns = percentileNs(0.999);
  }
  for (auto& r : g->replays) {
    res.syn_kconn_s += r->flows / seconds(r->syn_pass_tsc.load()) / 1e3 / g->workers;
  }
  return res;
}

Result runForwarder(double secs, Load load = {}) {
  resetReplays(load);
  g->fwd = std::make_unique<FwdStats[]>(g->workers);
  g->fwd_running.store(true);
  for (uint16_t w = 0; w < g->workers; ++w) {
    rte_eal_remote_launch(forwarderMain, reinterpret_cast<void*>(uintptr_t{w}), g->lcores[w]);
  }
  Result r = measure(secs, [] {
    uint64_t s = 0;
    for (uint16_t w = 0; w < g->workers; ++w) s += g->fwd[w].tx.load();
    return s;
  });
  g->fwd_running.store(false);
  rte_eal_mp_wait_lcore();
  for (uint16_t w = 0; w < g->workers; ++w) {  // a paced queue is empty on purpose
    if (load.mpps == 0 && g->fwd[w].empty_polls.load())
      die("the forwarder found its RX queue empty");
  }
  return r;
}

Result runMeshlb(double secs, uint32_t flows, Load load = {}) {
  resetReplays(load);
  auto run = std::make_unique<MeshlbRun>();
  Dataplane& dp = run->dp;
  const uint16_t n = g->workers;
  dp.num_ports = 1;
  dp.port_ids[0] = g->port;
  dp.num_workers = n;
  for (uint16_t w = 0; w < n; ++w) dp.handoff[w] = g->handoff[w];
  dp.to_kernel[0] = g->to_kernel;
  dp.from_kernel[0] = g->from_kernel;
  dp.snapshot.store(g->snap.get());
  const size_t sz = rte_rcu_qsbr_get_memsize(n);
  dp.qsbr = static_cast<rte_rcu_qsbr*>(rte_zmalloc("qsbr", sz, RTE_CACHE_LINE_SIZE));
  if (!dp.qsbr || rte_rcu_qsbr_init(dp.qsbr, n) != 0) die("rcu init failed");
  dp.counters = std::make_unique<WorkerCounters[]>(n);
  dp.dumps = std::make_unique<Dataplane::ConnDump[]>(n);
  std::vector<std::pair<MeshlbRun*, uint16_t>> args;
  for (uint16_t w = 0; w < n; ++w) {
    run->conn_counts.emplace_back(2 * FlowTable4::kCountSlots, Backing::kLazy);
    run->backend_stats.emplace_back(BackendId::kSlots, Backing::kLazy);
    WorkerConfig c;
    c.index = w;
    c.flow_capacity = flows + flows / 8;
    c.seed = 0x5eed + w;
    c.conn_counts = run->conn_counts.back().get();
    c.backend_stats = run->backend_stats.back().get();
    run->cfg.push_back(c);
    args.emplace_back(run.get(), w);
  }
  for (uint16_t w = 0; w < n; ++w) rte_eal_remote_launch(meshlbMain, &args[w], g->lcores[w]);
  Result r = measure(secs, [&] {
    uint64_t s = 0;
    for (uint16_t w = 0; w < n; ++w) s += dp.counters[w].tx_packets.load();
    return s;
  });
  dp.running.store(false);
  rte_eal_mp_wait_lcore();
  for (uint16_t w = 0; w < n; ++w) {
    const WorkerCounters& c = dp.counters[w];
    std::string bad;
    for (size_t d = 0; d < static_cast<size_t>(Drop::kCount); ++d) {
      if (const uint64_t v = c.drops[d].load()) {
        bad += std::string(" ") + dropName(static_cast<Drop>(d)) + "=" + std::to_string(v);
      }
    }
    if (c.new_connections.load() != flows)
      bad += " new_connections=" + std::to_string(c.new_connections.load());
    if (c.to_kernel.load() || c.handoff_out.load()) bad += " to_kernel/handoff_out";
    if (c.tx_packets.load() != c.rx_packets.load()) bad += " tx!=rx";
    if (g_vxlan && c.vxlan_encap.load() != c.tx_packets.load()) bad += " vxlan_encap!=tx";
    if (!bad.empty()) die("worker " + std::to_string(w) + ":" + bad);
  }
  rte_free(dp.qsbr);
  return r;
}

std::vector<uint32_t> parseList(const char* s) {
  std::vector<uint32_t> v;
  for (const char* p = s; *p;) {
    char* end;
    v.push_back(static_cast<uint32_t>(std::strtoul(p, &end, 10)));
    if (end == p) die(std::string("bad number list: ") + s);
    p = *end == ',' ? end + 1 : end;
  }
  return v;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int benchMain(int argc, char** argv) {
  const int used = rte_eal_init(argc, argv);
  if (used < 0) die("EAL init failed");
  argc -= used;
  argv += used;
  std::vector<uint32_t> flow_counts = {1000, 100000, 1000000};
  double secs = 2;
  int reps = 3;
  std::string only;
  bool vxlan = false;
  double latency_mpps = 0;  // 0: no latency runs
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--flows" && i + 1 < argc) {
      flow_counts = parseList(argv[++i]);
    } else if (a == "--seconds" && i + 1 < argc) {
      secs = std::atof(argv[++i]);
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::atoi(argv[++i]);
    } else if (a == "--only" && i + 1 < argc &&
               (argv[i + 1] == std::string("fwd") || argv[i + 1] == std::string("meshlb"))) {
      only = argv[++i];
    } else if (a == "--encap" && i + 1 < argc &&
               (argv[i + 1] == std::string("plain") || argv[i + 1] == std::string("vxlan"))) {
      vxlan = argv[++i] == std::string("vxlan");
    } else if (a == "--family" && i + 1 < argc &&
               (argv[i + 1] == std::string("4") || argv[i + 1] == std::string("6"))) {
      g_v6 = argv[++i] == std::string("6");
    } else if (a == "--latency" && i + 1 < argc) {
      latency_mpps = std::atof(argv[++i]);
      if (!(latency_mpps > 0 && latency_mpps <= 1000)) die("--latency: Mpps in (0, 1000]");
    } else {
      die("usage: worker_bench [EAL options] -- [--flows N,N,...] [--seconds S] [--reps R] "
          "[--only fwd|meshlb] [--encap plain|vxlan] [--latency MPPS] [--family 4|6]");
    }
  }
  for (uint32_t f : flow_counts) {
    if (f == 0 || f > (1u << 24)) die("--flows: each count must be 1 .. 16777216");
  }
  if (!(secs > 0 && secs <= 600)) die("--seconds: must be in (0, 600]");
  if (reps < 1 || reps > 100) die("--reps: must be 1 .. 100");
  Bench b;
  g = &b;
  if (rte_eth_dev_count_avail() != 1) die("give EAL exactly one port: --vdev net_null0");
  b.workers = static_cast<uint16_t>(rte_lcore_count() - 1);
  if (b.workers == 0 || b.workers > kMaxWorkers) die("give EAL 2 to 65 lcores");
  // Clients come from 198.18.1.0 up, 16384 ports each: keep them below 198.19.0.0,
  // where the tasks are.
  for (uint32_t f : flow_counts) {
    if (uint64_t{f} * b.workers > 100'000'000) die("--flows x workers must be at most 1e8");
  }
  unsigned lc;
  RTE_LCORE_FOREACH_WORKER(lc) { b.lcores.push_back(lc); }

  uint64_t rx_ts_flag;
  if (rte_mbuf_dyn_rx_timestamp_register(&g_tsc_field, &rx_ts_flag) != 0) die("timestamp field");
  rte_mempool* pool =
      rte_pktmbuf_pool_create("mbufs", 8191 + 2048u * b.workers, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                              static_cast<int>(rte_socket_id()));
  if (!pool) die("mbuf pool");
  rte_eth_conf conf{};
  if (rte_eth_dev_configure(b.port, b.workers, b.workers, &conf) != 0) die("port configure");
  b.replays.resize(b.workers);
  for (uint16_t q = 0; q < b.workers; ++q) {
    b.replays[q] = std::make_unique<Replay>();
    if (rte_eth_rx_queue_setup(b.port, q, 1024, 0, nullptr, pool) != 0 ||
        rte_eth_tx_queue_setup(b.port, q, 1024, 0, nullptr) != 0) {
      die("queue setup");
    }
    if (!rte_eth_add_rx_callback(b.port, q, replayRx, b.replays[q].get())) die("rx callback");
    b.hists.push_back(std::make_unique<LatencyHist>());
    if (!rte_eth_add_tx_callback(b.port, q, latencyTx, b.hists.back().get())) die("tx callback");
    b.handoff[q] = rte_ring_create(("handoff" + std::to_string(q)).c_str(), 4096, 0, RING_F_SC_DEQ);
  }
  b.to_kernel = rte_ring_create("to_kernel", 4096, 0, RING_F_SC_DEQ);
  b.from_kernel = rte_ring_create("from_kernel", 4096, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
  if (rte_eth_dev_start(b.port) != 0) die("port start");
  rte_ether_addr mac{};
  rte_eth_macaddr_get(b.port, &mac);
  b.snap = makeSnapshot(mac);
  if (vxlan && g_v6) die("--encap vxlan is measured with --family 4");
  if (vxlan) addOverlay(*b.snap);
  if (g_v6) makeV6(*b.snap);
  g_vxlan = vxlan;

  std::printf(
      "worker_bench: %u worker(s), net_null, %u-byte %s TCP, %s, %d x %.1f s per figure, medians\n",
      b.workers, frameSize(), g_v6 ? "IPv6" : "IPv4",
      vxlan ? "meshlb into a VXLAN overlay (+50 bytes)" : "plain", reps, secs);
  std::printf("%12s %10s | %12s %8s | %12s %8s %12s | %6s\n", "flows/worker", "workers", "fwd Mpps",
              "ns/pkt", "meshlb Mpps", "ns/pkt", "new conn/s", "ratio");
  for (uint32_t flows : flow_counts) {
    for (uint16_t w = 0; w < b.workers; ++w) fillReplay(*b.replays[w], w, b.workers, flows, 7 + w);
    std::vector<double> fwd, mlb, syn;
    for (int r = 0; r < reps; ++r) {
      fwd.push_back(only == "meshlb" ? 0 : runForwarder(secs).mpps);
      Result m = only == "fwd" ? Result{} : runMeshlb(secs, flows);
      mlb.push_back(m.mpps);
      syn.push_back(m.syn_kconn_s);
    }
    const double f = median(fwd), m = median(mlb);
    // ns per packet per worker core.
    const double fns = 1e3 * b.workers / f, mns = 1e3 * b.workers / m;
    std::printf("%12u %10u | %12.2f %8.1f | %12.2f %8.1f %11.0fk | %5.2fx\n", flows, b.workers, f,
                fns, m, mns, median(syn), only.empty() ? mns / fns : 0.0);
    std::fflush(stdout);
  }
  if (latency_mpps > 0) {
    std::printf("\nlatency, RX burst to TX burst (ns; medians of %d runs of %.1f s)\n", reps, secs);
    std::printf("%12s %10s %12s | %8s %8s %8s | %8s %8s %8s\n", "flows/worker", "workers",
                "offered", "fwd p50", "p99", "p99.9", "mlb p50", "p99", "p99.9");
    for (uint32_t flows : flow_counts) {
      for (uint16_t w = 0; w < b.workers; ++w)
        fillReplay(*b.replays[w], w, b.workers, flows, 7 + w);
      for (const double rate : {0.0, latency_mpps}) {
        const Load load{true, rate};
        std::vector<double> fp[3], mp[3];
        for (int r = 0; r < reps; ++r) {
          const Result f = only == "meshlb" ? Result{} : runForwarder(secs, load);
          const Result m = only == "fwd" ? Result{} : runMeshlb(secs, flows, load);
          for (auto [v, x, y] :
               {std::tuple{0, f.p50_ns, m.p50_ns}, std::tuple{1, f.p99_ns, m.p99_ns},
                std::tuple{2, f.p999_ns, m.p999_ns}}) {
            fp[v].push_back(x);
            mp[v].push_back(y);
          }
        }
        const std::string offered =
            rate == 0 ? "full" : std::to_string(rate).substr(0, 4) + " Mpps/w";
        std::printf("%12u %10u %12s | %8.0f %8.0f %8.0f | %8.0f %8.0f %8.0f\n", flows, b.workers,
                    offered.c_str(), median(fp[0]), median(fp[1]), median(fp[2]), median(mp[0]),
                    median(mp[1]), median(mp[2]));
        std::fflush(stdout);
      }
    }
  }
  rte_eth_dev_stop(b.port);
  rte_eal_cleanup();
  return 0;
}

}  // namespace
}  // namespace meshlb

int main(int argc, char** argv) { return meshlb::benchMain(argc, argv); }
