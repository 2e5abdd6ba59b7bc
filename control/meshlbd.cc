// meshlbd: the appliance. `meshlbd [EAL options] -- [meshlbd options]`.
// The main lcore is the control thread (control socket, netlink mirror, snapshot
// publication, kernel-twin forwarding, counters); every other lcore is a worker.
#include <getopt.h>
#include <poll.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_random.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>
#include <rte_bus_vdev.h>

#include <array>
#include <chrono>
#include <csignal>
#include <thread>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "commands.h"
#include "control_server.h"
#include "netlink_mirror.h"
#include "snapshot_builder.h"
#include "worker.h"

namespace meshlb {
namespace {

volatile std::sig_atomic_t g_stop = 0;
void onSignal(int) { g_stop = 1; }

constexpr char kUsage[] =
    "usage: meshlbd [EAL options] -- [options]\n"
    "\n"
    "Ports are the DPDK ports EAL probes (-a PCI_ADDR, --vdev net_af_packet0,iface=...,\n"
    "--vdev net_af_xdp0,..., memif, tap). Each data port N gets a kernel twin lbN (net_tap,\n"
    "same MAC) that carries its addresses, ARP and routes; configure it with `ip`.\n"
    "The main lcore runs the control thread; every other lcore is a worker that owns one\n"
    "RX and one TX queue per port (af_packet: qpairs=<workers>).\n"
    "\n"
    "options:\n"
    "  --control-socket PATH   control socket (default /run/meshlb/meshlb.sock), mode 0660\n"
    "  --state-file PATH       save every accepted change here (atomically) and restore it\n"
    "                          at start; a corrupt file stops the start, untouched\n"
    "  --flows-per-worker N    connection-table capacity of each worker (default 1048576)\n"
    "  --help                  this text\n";

struct Options {
  std::string socket = "/run/meshlb/meshlb.sock";
  std::string state_file;
  uint32_t flows = 1u << 20;
};

bool wantsHelp(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) return true;
  }
  return false;
}

int parseOptions(int argc, char** argv, Options& o) {
  static const option longopts[] = {{"control-socket", required_argument, nullptr, 's'},
                                    {"state-file", required_argument, nullptr, 'f'},
                                    {"flows-per-worker", required_argument, nullptr, 'n'},
                                    {nullptr, 0, nullptr, 0}};
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, "", longopts, nullptr)) != -1) {
    switch (c) {
      case 's':
        o.socket = optarg;
        break;
      case 'f':
        o.state_file = optarg;
        break;
      case 'n': {
        char* end;
        unsigned long v = std::strtoul(optarg, &end, 10);
        if (*end || v < 1024 || v > (1u << 28)) {
          std::fprintf(stderr, "meshlbd: --flows-per-worker must be 1024..268435456\n");
          return -1;
        }
        o.flows = static_cast<uint32_t>(v);
        break;
      }
      default:
        std::fputs(kUsage, stderr);
        return -1;
    }
  }
  if (optind != argc) {
    std::fprintf(stderr, "meshlbd: unexpected argument '%s'\n%s", argv[optind], kUsage);
    return -1;
  }
  return 0;
}

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "meshlbd: %s\n", msg.c_str());
  rte_eal_cleanup();
  std::exit(1);
}

std::string macString(const rte_ether_addr& a) {
  return absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", a.addr_bytes[0], a.addr_bytes[1],
                         a.addr_bytes[2], a.addr_bytes[3], a.addr_bytes[4], a.addr_bytes[5]);
}

void configurePort(uint16_t port, uint16_t queues, rte_mempool* pool) {
  rte_eth_dev_info info{};
  if (rte_eth_dev_info_get(port, &info) != 0) die(absl::StrCat("port ", port, ": no device info"));
  char name[RTE_ETH_NAME_MAX_LEN] = {};
  rte_eth_dev_get_name_by_port(port, name);
  if (info.max_rx_queues < queues || info.max_tx_queues < queues) {
    die(absl::StrCat("port ", name, " has ", info.max_rx_queues, " RX / ", info.max_tx_queues,
                     " TX queues; ", queues, " are needed (one per worker; af_packet: qpairs=",
                     queues, ")"));
  }
  rte_eth_conf conf{};
  if (rte_eth_dev_configure(port, queues, queues, &conf) != 0) {
    die(absl::StrCat("port ", name, ": configure failed"));
  }
  uint16_t rxd = 1024, txd = 1024;
  rte_eth_dev_adjust_nb_rx_tx_desc(port, &rxd, &txd);
  for (uint16_t q = 0; q < queues; ++q) {
    if (rte_eth_rx_queue_setup(port, q, rxd, rte_eth_dev_socket_id(port), nullptr, pool) != 0 ||
        rte_eth_tx_queue_setup(port, q, txd, rte_eth_dev_socket_id(port), nullptr) != 0) {
      die(absl::StrCat("port ", name, ": queue ", q, " setup failed"));
    }
  }
  if (rte_eth_dev_start(port) != 0) die(absl::StrCat("port ", name, ": start failed"));
  rte_eth_promiscuous_enable(port);
}

rte_ring* makeRing(const std::string& name, unsigned flags) {
  rte_ring* r = rte_ring_create(name.c_str(), 4096, static_cast<int>(rte_socket_id()), flags);
  if (!r) die(absl::StrCat("ring ", name, ": ", rte_strerror(rte_errno)));
  return r;
}

constexpr uint32_t kMaxListedConnections = 1u << 16;  // per worker, for -L -c

struct ControlCounters {
  uint64_t from_kernel_ring_full = 0;
  uint64_t twin_tx_full = 0;
  uint64_t snapshots_published = 0;
};

class Daemon {
 public:
  Daemon(Options o)
      : opt_(std::move(o)),
        commands_([this](bool json) { return stats(json); },
                  IpvsDataplane{[this](uint32_t id) { return destCounters(id); },
                                [this](const std::vector<uint32_t>& ids) { zero(ids); },
                                [this] { return connections(); }}) {}

  void setup() {
    // Before any port or twin exists: a second instance must not disturb the first.
    if (auto st = ControlServer::checkNotInUse(opt_.socket); !st.ok()) die(std::string(st.message()));
    const uint16_t nports = rte_eth_dev_count_avail();
    if (nports == 0) die("no DPDK ports: give -a PCI_ADDR or --vdev ... to EAL");
    if (nports > kMaxPorts) die(absl::StrCat("at most ", kMaxPorts, " ports"));
    const unsigned workers = rte_lcore_count() - 1;
    if (workers == 0) die("no worker lcore: give EAL at least two lcores (e.g. -l 0-1)");
    if (workers > kMaxWorkers) die(absl::StrCat("at most ", kMaxWorkers, " workers"));
    dp_.num_ports = nports;
    dp_.num_workers = static_cast<uint16_t>(workers);
    dp_.counters = std::make_unique<WorkerCounters[]>(workers);
    conn_counts_.resize(workers);
    backend_stats_.resize(workers);
    for (unsigned w = 0; w < workers; ++w) {
      conn_counts_[w] = std::make_unique<std::atomic<uint32_t>[]>(2 * FlowTable4::kCountSlots);
      backend_stats_[w] = std::make_unique<BackendStats[]>(kBackendSlots);
    }
    rates_.resize(kBackendSlots);
    dp_.dumps = std::make_unique<Dataplane::ConnDump[]>(workers);
    for (unsigned w = 0; w < workers; ++w) dp_.dumps[w].flows.resize(kMaxListedConnections);

    pool_ = rte_pktmbuf_pool_create("mbufs", 16383 + 4096 * workers, 256, 0,
                                    RTE_MBUF_DEFAULT_BUF_SIZE, static_cast<int>(rte_socket_id()));
    if (!pool_) die(absl::StrCat("mbuf pool: ", rte_strerror(rte_errno)));

    uint16_t pid = 0, n = 0;
    RTE_ETH_FOREACH_DEV(pid) { dp_.port_ids[n++] = pid; }
    for (uint16_t i = 0; i < nports; ++i) {
      rte_ether_addr mac{};
      rte_eth_macaddr_get(dp_.port_ids[i], &mac);
      TwinPort twin;
      std::memcpy(twin.mac.data(), mac.addr_bytes, 6);
      const std::string vdev = absl::StrCat("net_tap_lb", i);
      const std::string args = absl::StrCat("iface=lb", i, ",mac=", macString(mac));
      if (rte_vdev_init(vdev.c_str(), args.c_str()) != 0) {
        die(absl::StrCat("kernel twin lb", i, " (", vdev, " ", args, ") could not be created"));
      }
      uint16_t tap;
      if (rte_eth_dev_get_port_by_name(vdev.c_str(), &tap) != 0) die("twin port not found");
      twin_ids_.push_back(tap);
      twin.ifindex = NetlinkMirror::ifindexOf(absl::StrCat("lb", i));
      twins_.push_back(twin);
      configurePort(dp_.port_ids[i], dp_.num_workers, pool_);
      configurePort(tap, 1, pool_);
      dp_.to_kernel[i] = makeRing(absl::StrCat("to_kernel", i), RING_F_SC_DEQ);
      dp_.from_kernel[i] = makeRing(absl::StrCat("from_kernel", i), RING_F_SP_ENQ | RING_F_SC_DEQ);
    }
    for (uint16_t w = 0; w < workers; ++w) {
      dp_.handoff[w] = makeRing(absl::StrCat("handoff", w), RING_F_SC_DEQ);
    }
    size_t sz = rte_rcu_qsbr_get_memsize(workers);
    dp_.qsbr = static_cast<rte_rcu_qsbr*>(rte_zmalloc("qsbr", sz, RTE_CACHE_LINE_SIZE));
    if (!dp_.qsbr || rte_rcu_qsbr_init(dp_.qsbr, workers) != 0) die("rcu init failed");

    commands_.setIpv4Only(true);
    if (!opt_.state_file.empty()) {
      if (auto st = commands_.useStateFile(opt_.state_file); !st.ok()) {
        die(absl::StrCat("state file: ", st.message()));
      }
    }
    if (auto st = mirror_.start(); !st.ok()) die(std::string(st.message()));
    mirror_.poll();
    publish();
    server_ = std::make_unique<ControlServer>([this](const Request& r) { return onRequest(r); });
    if (auto st = server_->listen(opt_.socket); !st.ok()) die(std::string(st.message()));
  }

  void run() {
    unsigned lcore, w = 0;
    worker_cfgs_.resize(dp_.num_workers);
    RTE_LCORE_FOREACH_WORKER(lcore) {
      worker_cfgs_[w] = {static_cast<uint16_t>(w), opt_.flows, rte_rand(), conn_counts_[w].get(),
                         backend_stats_[w].get()};
      worker_lcores_.push_back(lcore);
      rte_eal_remote_launch(&Daemon::workerEntry, new std::pair<Daemon*, unsigned>(this, w), lcore);
      ++w;
    }
    std::printf("meshlbd: %u port(s), %u worker(s), control socket %s\n", dp_.num_ports,
                dp_.num_workers, opt_.socket.c_str());
    std::fflush(stdout);
    std::vector<pollfd> fds;
    while (!g_stop) {
      const bool busy = forwardTwins();
      fds.clear();
      fds.push_back({mirror_.fd(), POLLIN, 0});
      server_->appendPollFds(fds);
      int r = ::poll(fds.data(), fds.size(), busy ? 0 : 1);
      if (r > 0) {
        server_->service(fds);
      }
      if (mirror_.poll()) publish();
      reclaim(false);
      estimateRates();
    }
    shutdown();
  }

 private:
  static int workerEntry(void* arg) {
    auto* p = static_cast<std::pair<Daemon*, unsigned>*>(arg);
    Daemon* d = p->first;
    unsigned w = p->second;
    delete p;
    return runWorker(d->dp_, d->worker_cfgs_[w]);
  }

  // Kernel twins: what the kernel sends on lbN leaves through port N (via worker
  // 0's TX queue), and what workers hand to the kernel enters lbN.
  bool forwardTwins() {
    bool busy = false;
    rte_mbuf* pkts[kRxBurst];
    for (uint16_t i = 0; i < dp_.num_ports; ++i) {
      uint16_t n = rte_eth_rx_burst(twin_ids_[i], 0, pkts, kRxBurst);
      if (n) {
        busy = true;
        unsigned q = rte_ring_enqueue_burst(dp_.from_kernel[i], reinterpret_cast<void**>(pkts), n,
                                            nullptr);
        if (q < n) {
          cc_.from_kernel_ring_full += n - q;
          rte_pktmbuf_free_bulk(pkts + q, n - q);
        }
      }
      unsigned k = rte_ring_dequeue_burst(dp_.to_kernel[i], reinterpret_cast<void**>(pkts),
                                          kRxBurst, nullptr);
      if (k) {
        busy = true;
        uint16_t sent = rte_eth_tx_burst(twin_ids_[i], 0, pkts, static_cast<uint16_t>(k));
        if (sent < k) {
          cc_.twin_tx_full += k - sent;
          rte_pktmbuf_free_bulk(pkts + sent, k - sent);
        }
      }
    }
    return busy;
  }

  Reply onRequest(const Request& req) {
    bool changed = false;
    auto out = commands_.run(req.args, req.input, &changed);
    if (changed) publish();
    if (!out.ok()) return {false, std::string(out.status().message())};
    return {true, *out};
  }

  void publish() {
    auto snap = buildSnapshot(commands_.services(), commands_.nat(), mirror_.view(), twins_,
                              ++generation_, dp_.snapshot.load(std::memory_order_acquire));
    const Snapshot* old = dp_.snapshot.exchange(snap.release(), std::memory_order_acq_rel);
    ++cc_.snapshots_published;
    if (old) retired_.push_back({rte_rcu_qsbr_start(dp_.qsbr), old});
  }

  // Frees snapshots every worker has moved past (rte_rcu_qsbr), never one in use.
  void reclaim(bool wait) {
    while (!retired_.empty() &&
           rte_rcu_qsbr_check(dp_.qsbr, retired_.front().first, wait) == 1) {
      delete retired_.front().second;
      retired_.pop_front();
    }
  }

  // A real server's --stats counters summed over the workers, without -Z offsets.
  std::array<uint64_t, 5> rawStats(uint32_t slot) const {
    std::array<uint64_t, 5> t{};
    for (const auto& w : backend_stats_) {
      const BackendStats& b = w[slot];
      t[0] += b.conns.load(std::memory_order_relaxed);
      t[1] += b.inpkts.load(std::memory_order_relaxed);
      t[2] += b.outpkts.load(std::memory_order_relaxed);
      t[3] += b.inbytes.load(std::memory_order_relaxed);
      t[4] += b.outbytes.load(std::memory_order_relaxed);
    }
    return t;
  }

  // Everything ipvsadm shows of a real server: -L's connection counts, --stats
  // (less what -Z set aside), --rate.
  DestCounters destCounters(uint32_t id) const {
    const uint32_t slot = backendSlot(id);
    DestCounters c;
    for (const auto& w : conn_counts_) {
      c.active += w[2 * slot].load(std::memory_order_relaxed);
      c.inactive += w[2 * slot + 1].load(std::memory_order_relaxed);
    }
    const auto raw = rawStats(slot);
    const Rates& r = rates_[slot];
    c.conns = raw[0] - r.zero[0];
    c.inpkts = raw[1] - r.zero[1];
    c.outpkts = raw[2] - r.zero[2];
    c.inbytes = raw[3] - r.zero[3];
    c.outbytes = raw[4] - r.zero[4];
    c.cps = r.est[0], c.inpps = r.est[1], c.outpps = r.est[2], c.inbps = r.est[3], c.outbps = r.est[4];
    return c;
  }

  // ipvsadm -L -c: every worker copies its connections between bursts; wait for
  // all of them (at most a second), then translate.
  std::vector<ConnEntry> connections() {
    const uint32_t rq = dp_.dump_request.fetch_add(1, std::memory_order_acq_rel) + 1;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    std::vector<ConnEntry> out;
    for (uint16_t w = 0; w < dp_.num_workers; ++w) {
      const Dataplane::ConnDump& d = dp_.dumps[w];
      while (d.done.load(std::memory_order_acquire) != rq) {
        if (std::chrono::steady_clock::now() > deadline) return out;  // a stuck worker: partial
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      for (uint32_t i = 0; i < d.count; ++i) {
        const Flow<Ipv4Addr>& f = d.flows[i];
        ConnEntry c;
        c.protocol = f.proto();
        auto ip = [](Ipv4Addr a) {
          IpAddress r;
          r.af = AF_INET;
          std::memcpy(r.b, &a.v, 4);
          return r;
        };
        c.client = ip(f.client), c.virt = ip(f.vip), c.dest = ip(f.backend);
        c.cport = ntohs(f.cport), c.vport = ntohs(f.vport), c.dport = ntohs(f.bport);
        c.state = connStateName(f.connState());
        const auto left = static_cast<int32_t>(f.expires_ms - d.now_ms);
        c.expires_s = left > 0 ? static_cast<uint32_t>(left) / 1000 : 0;
        out.push_back(std::move(c));
      }
    }
    return out;
  }

  void zero(const std::vector<uint32_t>& ids) {
    for (uint32_t id : ids) rates_[backendSlot(id)].zero = rawStats(backendSlot(id));
  }

  // IPVS's rate estimator: every 2 s, the per-second rate over the interval,
  // smoothed as the kernel does (new = old + (rate - old) / 4).
  void estimateRates() {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_estimate_ < std::chrono::seconds(2)) return;
    const double secs = std::chrono::duration<double>(now - last_estimate_).count();
    last_estimate_ = now;
    for (const auto& [key, svc] : commands_.services().services()) {
      for (const RealServer& d : svc.dests) {
        Rates& r = rates_[backendSlot(d.id)];
        const auto raw = rawStats(backendSlot(d.id));
        for (int i = 0; i < 5; ++i) {
          const auto rate = static_cast<int64_t>((raw[i] - r.last[i]) / secs);
          r.est[i] = static_cast<uint64_t>(static_cast<int64_t>(r.est[i]) +
                                           (rate - static_cast<int64_t>(r.est[i])) / 4);
          r.last[i] = raw[i];
        }
      }
    }
  }

  std::string stats(bool json) {
    std::string out = json ? "{\"ports\":[" : "";
    for (uint16_t i = 0; i < dp_.num_ports; ++i) {
      rte_eth_stats s{};
      rte_eth_stats_get(dp_.port_ids[i], &s);
      char name[RTE_ETH_NAME_MAX_LEN] = {};
      rte_eth_dev_get_name_by_port(dp_.port_ids[i], name);
      if (json) {
        absl::StrAppend(&out, i ? "," : "",
                        absl::StrFormat("{\"port\":%u,\"name\":\"%s\",\"twin\":\"lb%u\","
                                        "\"rx_packets\":%u,\"tx_packets\":%u,\"rx_bytes\":%u,"
                                        "\"tx_bytes\":%u,\"rx_missed\":%u,\"rx_errors\":%u,"
                                        "\"tx_errors\":%u,\"rx_nombuf\":%u}",
                                        i, name, i, s.ipackets, s.opackets, s.ibytes, s.obytes,
                                        s.imissed, s.ierrors, s.oerrors, s.rx_nombuf));
      } else {
        absl::StrAppend(&out, absl::StrFormat("port %u %s (twin lb%u)\n", i, name, i));
        for (const auto& [k, v] : std::initializer_list<std::pair<const char*, uint64_t>>{
                 {"rx_packets", s.ipackets}, {"tx_packets", s.opackets}, {"rx_bytes", s.ibytes},
                 {"tx_bytes", s.obytes}, {"rx_missed", s.imissed}, {"rx_errors", s.ierrors},
                 {"tx_errors", s.oerrors}, {"rx_nombuf", s.rx_nombuf}}) {
          absl::StrAppend(&out, absl::StrFormat("  %-40s %u\n", k, v));
        }
      }
    }
    if (json) out += "],\"workers\":[";
    for (uint16_t w = 0; w < dp_.num_workers; ++w) {
      const WorkerCounters& c = dp_.counters[w];
      std::vector<std::pair<std::string, uint64_t>> kv;
#define MESHLB_X(field, label, drop) kv.emplace_back(label, c.field.load(std::memory_order_relaxed));
      MESHLB_WORKER_COUNTERS(MESHLB_X)
#undef MESHLB_X
      kv.emplace_back("flows", c.flows.load());
      kv.emplace_back("flows_expired", c.flows_expired.load());
      kv.emplace_back("evicted_embryonic", c.evicted_embryonic.load());
      kv.emplace_back("evicted_closing", c.evicted_closing.load());
      kv.emplace_back("evicted_established", c.evicted_established.load());
      kv.emplace_back("reply_key_in_use", c.reply_key_in_use.load());
      for (size_t r = 2; r < static_cast<size_t>(ParseResult::kCount); ++r) {
        kv.emplace_back(absl::StrCat("parse_", parseResultName(static_cast<ParseResult>(r))),
                        c.parse[r].load(std::memory_order_relaxed));
      }
      if (json) {
        absl::StrAppend(&out, w ? "," : "", "{\"worker\":", w, ",\"lcore\":", worker_lcores_[w]);
        for (const auto& [k, v] : kv) absl::StrAppend(&out, ",\"", k, "\":", v);
        out += "}";
      } else {
        absl::StrAppend(&out, "worker ", w, " (lcore ", worker_lcores_[w], ")\n");
        for (const auto& [k, v] : kv) absl::StrAppend(&out, absl::StrFormat("  %-40s %u\n", k, v));
      }
    }
    if (json) {
      absl::StrAppend(&out, "],\"control\":{\"from_kernel_ring_full\":", cc_.from_kernel_ring_full,
                      ",\"twin_tx_full\":", cc_.twin_tx_full, ",\"snapshots_published\":",
                      cc_.snapshots_published, ",\"netlink_resyncs\":", mirror_.resyncs(),
                      "}}\n");
    } else {
      out += "control\n";
      for (const auto& [k, v] : std::initializer_list<std::pair<const char*, uint64_t>>{
               {"from_kernel_ring_full", cc_.from_kernel_ring_full},
               {"twin_tx_full", cc_.twin_tx_full},
               {"snapshots_published", cc_.snapshots_published},
               {"netlink_resyncs", mirror_.resyncs()}}) {
        absl::StrAppend(&out, absl::StrFormat("  %-40s %u\n", k, v));
      }
    }
    return out;
  }

  void shutdown() {
    std::printf("meshlbd: stopping\n");
    dp_.running.store(false);
    rte_eal_mp_wait_lcore();
    server_->close();
    reclaim(true);
    delete dp_.snapshot.exchange(nullptr);
    for (uint16_t i = 0; i < dp_.num_ports; ++i) {
      rte_eth_dev_stop(dp_.port_ids[i]);
      rte_eth_dev_close(dp_.port_ids[i]);
      rte_eth_dev_stop(twin_ids_[i]);
      rte_eth_dev_close(twin_ids_[i]);
    }
  }

  Options opt_;
  Dataplane dp_;
  Commands commands_;
  NetlinkMirror mirror_;
  std::unique_ptr<ControlServer> server_;
  rte_mempool* pool_ = nullptr;
  std::vector<uint16_t> twin_ids_;
  std::vector<TwinPort> twins_;
  std::vector<WorkerConfig> worker_cfgs_;
  std::vector<std::unique_ptr<std::atomic<uint32_t>[]>> conn_counts_;  // per worker
  std::vector<std::unique_ptr<BackendStats[]>> backend_stats_;         // per worker
  struct Rates {
    std::array<uint64_t, 5> last{}, est{}, zero{};
  };
  std::vector<Rates> rates_;  // by real-server slot; control thread only
  std::chrono::steady_clock::time_point last_estimate_ = std::chrono::steady_clock::now();
  std::vector<unsigned> worker_lcores_;
  std::deque<std::pair<uint64_t, const Snapshot*>> retired_;
  uint64_t generation_ = 0;
  ControlCounters cc_;
};

}  // namespace
}  // namespace meshlb

int main(int argc, char** argv) {
  using namespace meshlb;
  // --help after "--" (or alone) is ours, not EAL's.
  int dashdash = argc;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) {
      dashdash = i;
      break;
    }
  }
  if ((dashdash < argc && wantsHelp(argc - dashdash, argv + dashdash)) ||
      (argc == 2 && wantsHelp(argc, argv))) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  int consumed = rte_eal_init(argc, argv);
  if (consumed < 0) {
    std::fprintf(stderr, "meshlbd: EAL initialisation failed: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  argc -= consumed;
  argv += consumed;
  Options opt;
  if (parseOptions(argc, argv, opt) != 0) {
    rte_eal_cleanup();
    return 2;
  }
  std::signal(SIGTERM, onSignal);
  std::signal(SIGINT, onSignal);
  std::signal(SIGPIPE, SIG_IGN);
  {
    Daemon d(opt);
    d.setup();
    d.run();
  }
  rte_eal_cleanup();
  return 0;
}
