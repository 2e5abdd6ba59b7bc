// meshlbd: the appliance. `meshlbd [EAL options] -- [meshlbd options]`.
// The main lcore is the control thread (control socket, netlink mirror, snapshot
// publication, counters) with the kernel twins' forwarding on a thread beside it;
// every other lcore is a worker.
#include <getopt.h>
#include <net/if.h>
#include <poll.h>
#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_random.h>
#include <rte_rcu_qsbr.h>
#include <rte_telemetry.h>
#include <sys/ioctl.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "announce.h"
#include "claims.h"
#include "commands.h"
#include "control_server.h"
#include "health.h"
#include "host_setup.h"
#include "ipvs_stats.h"
#include "listings.h"
#include "metrics.h"
#include "names.h"
#include "netlink_mirror.h"
#include "ports.h"
#include "publisher.h"
#include "snapshot_builder.h"
#include "sync.h"
#include "telemetry.h"
#include "worker.h"

namespace meshlb {
namespace {

volatile std::sig_atomic_t g_stop = 0;
volatile std::sig_atomic_t g_hangup = 0;
void onSignal(int) { g_stop = 1; }
// SIGHUP, sent by log rotation and terminal hang-ups: meshlbd logs to its standard
// streams (nothing to reopen), so it only re-reads the kernel's view of the twins.
void onHangup(int) { g_hangup = 1; }

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
    "  --flows6-per-worker N   the same for IPv6 connections (default 262144)\n"
    "  --metrics ADDR:PORT     serve Prometheus metrics on http://ADDR:PORT/metrics (off by\n"
    "                          default; [ADDR6]:PORT, or :PORT for every address)\n"
    "  --announce-table N      the kernel routing table of the prefixes to announce\n"
    "                          (meshlbctl announce; default 4242)\n"
    "  --idle-sleep USEC       a worker that has found nothing for a while sleeps USEC\n"
    "                          (1..10000) between polls, giving its core to the host, at\n"
    "                          up to USEC of latency for the next packet (default 0: poll\n"
    "                          without pause, a core each worker)\n"
    "  --help                  this text\n";

struct Options {
  std::vector<VdevInterface> vdev_ifaces;  // the data ports' kernel interfaces (EAL's --vdev)
  std::string socket = "/run/meshlb/meshlb.sock";
  std::string state_file;
  std::string metrics;  // ADDR:PORT for Prometheus (empty: off)
  uint32_t flows = 1u << 20;
  uint32_t flows6 = 1u << 18;
  uint32_t announce_table = 4242;
  uint32_t idle_sleep_us = 0;
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
                                    {"flows6-per-worker", required_argument, nullptr, '6'},
                                    {"metrics", required_argument, nullptr, 'm'},
                                    {"announce-table", required_argument, nullptr, 't'},
                                    {"idle-sleep", required_argument, nullptr, 'i'},
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
      case 'm':
        o.metrics = optarg;
        break;
      case 't': {
        char* end;
        const unsigned long v = std::strtoul(optarg, &end, 10);
        // Not the kernel's own tables (default 253, main 254, local 255) nor 0.
        if (*end || v == 0 || (v >= 253 && v <= 255) || v > 0xffffffffUL) {
          std::fprintf(stderr,
                       "meshlbd: --announce-table must be a table number other than 0, 253, 254 "
                       "and 255\n");
          return -1;
        }
        o.announce_table = static_cast<uint32_t>(v);
        break;
      }
      case 'i': {
        char* end;
        const unsigned long v = std::strtoul(optarg, &end, 10);
        if (*end || !*optarg || v < 1 || v > 10000) {
          std::fprintf(stderr, "meshlbd: --idle-sleep must be 1..10000 (microseconds)\n");
          return -1;
        }
        o.idle_sleep_us = static_cast<uint32_t>(v);
        break;
      }
      case 'n':
      case '6': {
        char* end;
        unsigned long v = std::strtoul(optarg, &end, 10);
        if (*end || v < 1024 || v > (1u << 28)) {
          std::fprintf(stderr, "meshlbd: --flows%s-per-worker must be 1024..268435456\n",
                       c == '6' ? "6" : "");
          return -1;
        }
        (c == '6' ? o.flows6 : o.flows) = static_cast<uint32_t>(v);
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

constexpr uint32_t kMaxListedConnections = 1u << 16;  // per worker, for -L -c
// How long -L -c waits for every worker's copy before answering with what came.
constexpr auto kDumpDeadline = std::chrono::seconds(1);

// The daemon: the parts (ports and twins, snapshot publication, IPVS statistics,
// listings, the control socket, the netlink mirror) wired to one control loop.
class Daemon {
 public:
  Daemon(Options o, InterfaceClaims& claims)
      : opt_(std::move(o)),
        claims_(claims),
        commands_([this](bool json) { return stats(json); }, ipvsDataplane()) {}

  IpvsDataplane ipvsDataplane() {
    IpvsDataplane dp;
    dp.counters = [this](BackendId id) {
      DestCounters c = ipvs_->counters(id);
      c.persistconns = persist_conns_ ? persist_conns_->count(id.raw()) : 0;
      return c;
    };
    dp.listing = [this](bool begins) {
      // --persistent-conn's counts, once per listing: one walk of the templates.
      persist_conns_.reset();
      if (begins) persist_conns_ = templateCounts(templates_, nowMs());
    };
    dp.service_counters = [this](const Service& s) {
      std::vector<BackendId> ids;
      for (const RealServer& d : s.dests) ids.push_back(d.id);
      ipvs_->attribute(s.slot, ids);  // up to now
      return ipvs_->serviceCounters(s.slot);
    };
    dp.zero = [this](uint32_t svc, const std::vector<BackendId>& ids) { ipvs_->zero(svc, ids); };
    dp.removed = [this](uint32_t svc, const std::vector<BackendId>& ids) {
      ipvs_->attribute(svc, ids);
    };
    dp.added = [this](uint32_t svc) { ipvs_->newService(svc); };
    dp.retired = [this](uint32_t svc) { ipvs_->retire(svc); };
    dp.connections = [this] { return connections(); };
    dp.vxlan_port = [this] { return vxlanPort(); };
    dp.host_name = [this](const IpAddr& a) -> std::optional<std::string> {
      auto name = names_.lookup(a);
      if (!name && names_by_number_) return a.str();
      return name;
    };
    dp.interface_mtu = [](const std::string& name) -> std::optional<uint32_t> {
      ifreq ifr{};
      if (name.size() >= sizeof ifr.ifr_name) return std::nullopt;
      std::memcpy(ifr.ifr_name, name.data(), name.size());
      const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      const bool ok = fd >= 0 && ioctl(fd, SIOCGIFMTU, &ifr) == 0;
      if (fd >= 0) close(fd);
      if (!ok) return std::nullopt;
      return static_cast<uint32_t>(ifr.ifr_mtu);
    };
    return dp;
  }

  void setup() {
    // Before any port or twin exists: a second instance must not disturb the first.
    if (auto st = ControlServer::checkNotInUse(opt_.socket); !st.ok())
      die(std::string(st.message()));
    const uint16_t nports = rte_eth_dev_count_avail();
    if (nports == 0) die("no DPDK ports: give -a PCI_ADDR or --vdev ... to EAL");
    if (nports > kMaxPorts) die(absl::StrCat("at most ", kMaxPorts, " ports"));
    const unsigned workers = rte_lcore_count() - 1;
    if (workers == 0) die("no worker lcore: give EAL at least two lcores (e.g. -l 0-1)");
    if (workers > kMaxWorkers) die(absl::StrCat("at most ", kMaxWorkers, " workers"));
    // The twins this instance would make: held by nobody else, and not there already
    // (net_tap would attach to an existing lbN and take its traffic).
    for (uint16_t i = 0; i < nports; ++i) {
      const std::string twin = absl::StrCat("lb", i);
      if (auto st = claims_.claim(twin, "kernel twin"); !st.ok()) die(std::string(st.message()));
      if (NetlinkMirror::ifindexOf(twin) != 0) {
        die(absl::StrCat("kernel twin ", twin, " already exists and no meshlbd holds it; ",
                         "remove it (ip link del ", twin, ") or run in another network namespace"));
      }
    }
    dp_.num_ports = nports;
    dp_.num_workers = static_cast<uint16_t>(workers);
    dp_.counters = std::make_unique<WorkerCounters[]>(workers);
    ipvs_ = std::make_unique<IpvsStats>(dp_.num_workers);
    dp_.dumps = std::make_unique<Dataplane::ConnDump[]>(workers);
    for (unsigned w = 0; w < workers; ++w) {
      dp_.dumps[w].flows.resize(kMaxListedConnections);
      dp_.dumps[w].flows6.resize(kMaxListedConnections);
    }
    // Connection sync: each worker's queue for the master daemon, and a backup's
    // connections for it to install.
    sync_.setWorkers(dp_.num_workers);
    for (unsigned w = 0; w < workers; ++w) {
      for (auto [rings, dir] : {std::pair{dp_.sync_out, "out"}, std::pair{dp_.sync_in, "in"}}) {
        rings[w] = rte_ring_create_elem(absl::StrCat("sync_", dir, w).c_str(), sizeof(SyncRecord),
                                        kSyncRing, static_cast<int>(rte_socket_id()),
                                        RING_F_SP_ENQ | RING_F_SC_DEQ);
        if (!rings[w]) die(absl::StrCat("sync ring: ", rte_strerror(rte_errno)));
      }
    }
    // The kernel kept off the data ports' interfaces (af_packet copies frames, so the
    // kernel would answer beside meshlbd); then the twins' own sysctls.
    for (const VdevInterface& v : opt_.vdev_ifaces) {
      const bool copies =
          absl::StrContains(v.vdev, "af_packet") || absl::StrContains(v.vdev, "pcap");
      const bool takes = absl::StrContains(v.vdev, "af_xdp");
      if (!copies && !takes) continue;
      if (auto st = guard_.guard(v.iface, copies); !st.ok()) die(std::string(st.message()));
    }
    if (auto st = ports_.start(dp_); !st.ok()) die(std::string(st.message()));
    for (uint16_t i = 0; i < nports; ++i) {
      if (auto st = configureTwin(absl::StrCat("lb", i)); !st.ok()) die(std::string(st.message()));
    }
    HostFacts facts;
    facts.hugepages = rte_eal_has_hugepages() != 0;
    for (uint16_t i = 0; i < nports; ++i) {
      rte_eth_dev_info info{};
      if (rte_eth_dev_info_get(dp_.port_ids[i], &info) == 0 && info.device &&
          std::strcmp(rte_bus_name(rte_dev_bus(info.device)), "pci") == 0) {
        facts.pci_ports = true;
      }
    }
    for (const std::string& line : hostLacks(facts)) std::printf("meshlbd: %s\n", line.c_str());
    if (auto st = resolver_.start(); !st.ok()) die(std::string(st.message()));

    const size_t sz = rte_rcu_qsbr_get_memsize(workers);
    dp_.qsbr = static_cast<rte_rcu_qsbr*>(rte_zmalloc("qsbr", sz, RTE_CACHE_LINE_SIZE));
    if (!dp_.qsbr || rte_rcu_qsbr_init(dp_.qsbr, workers) != 0) die("rcu init failed");
    publisher_ = std::make_unique<SnapshotPublisher>(dp_.snapshot, dp_.qsbr);

    commands_.setDataplaneLimits(true);
    if (!opt_.state_file.empty()) {
      if (auto st = commands_.useStateFile(opt_.state_file); !st.ok()) {
        die(absl::StrCat("state file: ", st.message()));
      }
      if (!commands_.loadNote().empty()) {
        std::printf("meshlbd: state file %s: %s\n", opt_.state_file.c_str(),
                    commands_.loadNote().c_str());
      }
    }
    if (auto st = mirror_.start(); !st.ok()) die(std::string(st.message()));
    mirror_.poll();
    publish();
    server_ = std::make_unique<ControlServer>(
        [this](const Request& r, uint64_t ticket) { return onRequest(r, ticket); });
    if (auto st = server_->listen(opt_.socket); !st.ok()) die(std::string(st.message()));
    if (!opt_.metrics.empty()) {
      metrics_ = std::make_unique<MetricsServer>([this] { return metrics(); });
      if (auto st = metrics_->listen(opt_.metrics); !st.ok()) die(std::string(st.message()));
    }
    if (auto st = telemetry_.start(); !st.ok()) die(std::string(st.message()));
    commands_.setHealthStatus([this](BackendId id) { return health_.status(id); });
    if (auto st = announcer_.start(opt_.announce_table); !st.ok()) die(std::string(st.message()));
    commands_.setAnnounceRuntime([this] {
      AnnounceRuntime rt;
      for (const AnnouncedRoute& r : announcer_.announced()) rt.announced.push_back(r.str());
      for (uint16_t w = 0; w < dp_.num_workers; ++w) {
        rt.connections += dp_.counters[w].flows.load(std::memory_order_relaxed);
      }
      rt.ready = serving_;
      if (announce_hold_) {
        const auto left = *announce_hold_ - std::chrono::steady_clock::now();
        rt.held_s = static_cast<uint32_t>(
            std::max<int64_t>(1, std::chrono::ceil<std::chrono::seconds>(left).count()));
      }
      return rt;
    });
    health_.start();
    updateChecks();
  }

  // Why the control loop stopped on its own (empty after a signal).
  const std::string& fatal() const { return fatal_; }

  void run() {
    unsigned lcore, w = 0;
    worker_cfgs_.resize(dp_.num_workers);
    std::vector<const std::atomic<uint32_t>*> all_counts;
    for (uint16_t i = 0; i < dp_.num_workers; ++i) all_counts.push_back(ipvs_->connCounts(i));
    RTE_LCORE_FOREACH_WORKER(lcore) {
      worker_cfgs_[w] = {static_cast<uint16_t>(w),
                         opt_.flows,
                         rte_rand(),
                         ipvs_->connCounts(static_cast<uint16_t>(w)),
                         ipvs_->backendStats(static_cast<uint16_t>(w)),
                         all_counts};
      // Shared by every worker: the servers' overload flags and the persistence templates.
      worker_cfgs_[w].overload = ipvs_->overload();
      worker_cfgs_[w].templates = &templates_;
      worker_cfgs_[w].idle_sleep_us = opt_.idle_sleep_us;
      worker_cfgs_[w].flow_capacity6 = opt_.flows6;
      worker_lcores_.push_back(lcore);
      rte_eal_remote_launch(&Daemon::workerEntry, new std::pair<Daemon*, unsigned>(this, w), lcore);
      ++w;
    }
    std::printf("meshlbd: %u port(s), %u worker(s), control socket %s\n", dp_.num_ports,
                dp_.num_workers, opt_.socket.c_str());
    std::fflush(stdout);
    ports_.startTwinThread(dp_);
    // Serving: the state restored, the workers and the twins running. Only now is
    // anything announced.
    serving_ = true;
    holdAnnouncementsForSync();
    announce();
    std::vector<pollfd> fds;
    while (!g_stop) {
      fds.clear();
      fds.push_back({mirror_.fd(), POLLIN, 0});
      if (sync_.receiveFd() >= 0) fds.push_back({sync_.receiveFd(), POLLIN, 0});
      server_->appendPollFds(fds);
      if (metrics_) metrics_->appendPollFds(fds);
      const bool waiting = !deferred_.empty();
      const int r = ::poll(fds.data(), fds.size(), waiting ? 1 : 10);
      if (r > 0) server_->service(fds);
      server_->expire();
      if (metrics_) {
        if (r > 0) metrics_->service(fds);
        metrics_->expire();
      }
      if (g_hangup) {
        g_hangup = 0;
        std::printf("meshlbd: SIGHUP: re-reading the twins' addresses, routes and neighbours\n");
        std::fflush(stdout);
        mirror_.resync();
      }
      if (mirror_.poll()) {
        checkTwins();
        publish();
      }
      resolveUnresolved();
      sync_.receive();
      sync_.flush();
      applyHealth();
      telemetry_.serve([this](const std::string& cmd, const std::string& params, rte_tel_data* d) {
        return telemetry(cmd, params, d);
      });
      publisher_->reclaim(false);
      if (waiting) serveDeferred();
      estimateRates();
      if (announce_hold_ && std::chrono::steady_clock::now() >= *announce_hold_) {
        announce_hold_.reset();
        std::printf("meshlbd: announce: hold over\n");
        announce();
      }
    }
    shutdown();
  }

 private:
  static int workerEntry(void* arg) {
    auto* p = static_cast<std::pair<Daemon*, unsigned>*>(arg);
    Daemon* d = p->first;
    const unsigned w = p->second;
    delete p;
    return runWorker(d->dp_, d->worker_cfgs_[w]);
  }

  std::optional<Reply> onRequest(const Request& req, uint64_t ticket) {
    ++requests_;
    bool changed = false;
    auto out = commands_.run(req.args, req.input, &changed);
    if (changed) {
      publish();
      updateChecks();
    }
    auto waits = [&] {
      return !out.ok() && absl::IsUnavailable(out.status()) &&
             (dump_ == DumpState::kCollecting || names_.pending());
    };
    // A listing's names may all have come in meanwhile: then it runs again at once.
    for (int i = 0; i < 3 && !out.ok() && absl::IsUnavailable(out.status()) && !waits(); ++i) {
      out = commands_.run(req.args, req.input, &changed);
    }
    if (waits()) {
      if (deferred_.empty()) names_deadline_ = std::chrono::steady_clock::now() + kNamesDeadline;
      deferred_.push_back({req, ticket});  // answered by serveDeferred()
      return std::nullopt;
    }
    return replyOf(out);
  }

  // A twin deleted under meshlbd (`ip link del lb0`) would black-hole what the kernel
  // should answer: it is made again at once, loudly, and the operator re-adds its
  // addresses. When it cannot be, meshlbd stops with an error (a supervisor restarts it).
  void checkTwins() {
    for (uint16_t i : ports_.missingTwins()) {
      std::printf(
          "meshlbd: kernel twin lb%u was deleted under meshlbd; making it again (its addresses "
          "and routes went with it: configure them again)\n",
          i);
      std::fflush(stdout);
      absl::Status st = ports_.recreateTwin(i);
      if (st.ok()) st = configureTwin(absl::StrCat("lb", i));
      if (!st.ok()) {
        fatal_ = absl::StrCat("kernel twin lb", i, " could not be made again: ", st.message());
        g_stop = 1;
        return;
      }
      mirror_.resync();
    }
  }

  // The checker takes the model's checks again when they may have changed.
  void updateChecks() {
    if (commands_.checksVersion() == checks_version_) return;
    checks_version_ = commands_.checksVersion();
    health_.set(commands_.services());
  }

  // A real server whose check failed `fall` times in a row goes to weight 0; one that
  // passed `rise` times comes back: a change as `meshlbctl healthcheck --state` makes
  // it (kept in the state file), said in the log.
  void applyHealth() {
    for (const HealthChecker::Transition& t : health_.transitions()) {
      std::vector<std::string> args = {"healthcheck", "--state"};
      for (absl::string_view w : absl::StrSplit(serviceRuleName(t.target.service), ' ')) {
        args.emplace_back(w);
      }
      const std::string server = addrPortName(t.target.addr, t.target.port);
      args.insert(args.end(), {"-r", server, t.down ? "down" : "up"});
      bool changed = false;
      auto out = commands_.run(args, "", &changed);
      if (!out.ok()) continue;  // the server or its check went meanwhile
      std::printf("meshlbd: health: %s -> %s %s (%s)\n", serviceListName(t.target.service).c_str(),
                  server.c_str(), t.down ? "DOWN: weight 0" : "UP: its weight back", t.why.c_str());
      std::fflush(stdout);
      if (changed) {
        publish();
        updateChecks();
      }
    }
  }

  // The UDP port the workers take for VXLAN (the published snapshot's).
  uint16_t vxlanPort() const {
    const Snapshot* s = publisher_ ? publisher_->current() : nullptr;
    return s ? s->vxlan_port : kVxlanPort;
  }

  void publish() {
    const Snapshot* before = publisher_->current();
    const KernelView view = mirror_.view();
    auto next = buildSnapshot(commands_.services(), commands_.nat(), commands_.nat6(), view,
                              ports_.twins(), ++generation_, before);
    absl::flat_hash_set<IpAddr> snat;
    for (const Ipv4Addr& a : next->v4.snat_addrs) snat.insert(IpAddr::of(a));
    for (const Ipv6Addr& a : next->v6.snat_addrs) snat.insert(IpAddr::of(a));
    sync_.apply(commands_.services(), snat);
    next->sync_master = sync_.master();
    next->sync_resend = resend_generation_;
    warnOfUdpServicesOnNewOverlayPorts(before, *next);
    resolveNextHops(view, *next);
    publisher_->publish(std::move(next));
    published_at_ = std::chrono::steady_clock::now();
    announce();
  }

  // The prefixes to announce, as routes in the announce table through lb0 (announce.h);
  // none before meshlbd serves or once it stops. Each change is said in the log.
  // A start with a backup sync daemon (restored from the state file): its peers send each
  // connection with packets again within one sync_refresh_period, so nothing is
  // announced until that period (and a second) has passed. A flow that ECMP brings here
  // once announced then finds its connection, with its real server and SNAT port.
  void holdAnnouncementsForSync() {
    const ServiceModel& m = commands_.services();
    if (!m.syncDaemons()[kSyncBackup].running || commands_.announce().prefixes.empty()) return;
    const uint32_t period = m.sysctls().sync_refresh_period;
    const uint32_t secs = (period ? std::min<uint32_t>(period, 86400) : kSyncRefreshMs / 1000) + 1;
    announce_hold_ = std::chrono::steady_clock::now() + std::chrono::seconds(secs);
    std::printf(
        "meshlbd: announce: held %u s (sync_refresh_period and a second) for the backup sync "
        "daemon to receive its peers' connections\n",
        secs);
    std::fflush(stdout);
  }

  void announce() {
    std::vector<AnnouncedRoute> want;
    if (serving_ && !announce_hold_) {
      want = prefixesToAnnounce(commands_.announce(), commands_.services());
    }
    const auto before = announcer_.announced();
    const uint64_t failures = announcer_.failures();
    announcer_.sync(want, ports_.twins()[0].ifindex);
    for (const auto& p : before) {
      if (std::find(announcer_.announced().begin(), announcer_.announced().end(), p) ==
          announcer_.announced().end()) {
        std::printf("meshlbd: announce: %s withdrawn\n", p.str().c_str());
      }
    }
    for (const auto& p : announcer_.announced()) {
      if (std::find(before.begin(), before.end(), p) == before.end()) {
        std::printf("meshlbd: announce: %s announced\n", p.str().c_str());
      }
    }
    if (announcer_.failures() != failures) {
      std::printf("meshlbd: announce: %s\n", announcer_.lastError().c_str());
    }
    std::fflush(stdout);
  }

  // Next hops resolved before a packet needs them (managed neighbours on the twins):
  // every IPv4 real server's, every route gateway's on a twin and every VTEP's (the
  // overlays' underlay). All of them when the routes or the FDB changed; else, at the
  // cost of the change, those of the services the model changed since the last call.
  void resolveNextHops(const KernelView& view, const Snapshot& snap) {
    auto wantIn = [&](const auto& fam, const auto& dst) {
      const auto* rt = fam.route(dst);
      if (!rt || rt->overlay >= 0) return;
      const auto nh = rt->has_gateway ? rt->gateway : dst;
      if (!fam.neigh.find(rt->port, nh)) {
        resolver_.resolve(ports_.twins()[rt->port].ifindex, IpAddr::of(nh));
      }
    };
    auto want = [&](const IpAddr& a) {
      if (a.isV4()) wantIn(snap.v4, a.v4());
      if (a.isV6()) wantIn(snap.v6, a.v6());
    };
    auto servers = [&](const Service& svc) {
      for (const RealServer& d : svc.dests) want(d.addr);
    };
    const ServiceModel& m = commands_.services();
    std::optional<std::vector<ServiceKey>> changed;
    if (m.id() == walked_model_ && view.routes == walked_routes_ && view.fdb == walked_fdb_) {
      changed = m.changedSince(walked_version_);
    }
    if (changed) {
      for (const ServiceKey& k : *changed) {
        if (auto it = m.services().find(k); it != m.services().end()) servers(it->second);
      }
    } else {
      for (const auto& [key, svc] : m.services()) servers(svc);
      for (const KernelView::Route& r : view.routes) want(r.gateway);
      for (const KernelView::Fdb& f : view.fdb) want(f.dst);
      walked_model_ = m.id();
      walked_routes_ = view.routes;
      walked_fdb_ = view.fdb;
    }
    walked_version_ = m.version();
  }

  // The next hops the workers found unresolved since the last call (the last one of
  // each worker's): the kernel is asked to resolve them, as resolveNextHops does.
  void resolveUnresolved() {
    for (uint16_t w = 0; w < dp_.num_workers; ++w) {
      const uint64_t v = dp_.counters[w].unresolved_nexthop.exchange(0, std::memory_order_relaxed);
      if (v == 0) continue;
      const uint32_t port = static_cast<uint32_t>(v >> 32) - 1;
      if (port >= ports_.twins().size()) continue;
      Ipv4Addr nh;
      nh.v = static_cast<uint32_t>(v);
      resolver_.resolve(ports_.twins()[port].ifindex, IpAddr::of(nh));
    }
    for (uint16_t w = 0; w < dp_.num_workers; ++w) {
      auto& u = dp_.counters[w].unresolved_nexthop6;
      const uint32_t seq = u.seq.load(std::memory_order_acquire);
      if (seq == taken6_[w] || seq % 2) continue;  // nothing new, or being written
      uint64_t half[2] = {u.addr[0].load(std::memory_order_relaxed),
                          u.addr[1].load(std::memory_order_relaxed)};
      const uint32_t port = u.port.load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (u.seq.load(std::memory_order_relaxed) != seq) continue;  // rewritten: next loop
      taken6_[w] = seq;
      if (port >= ports_.twins().size()) continue;
      Ipv6Addr nh;
      std::memcpy(nh.b, half, 16);
      resolver_.resolve(ports_.twins()[port].ifindex, IpAddr::of(nh));
    }
  }
  std::array<uint32_t, kMaxWorkers> taken6_{};  // resolveUnresolved()'s: the last seen

  // ipvsadm refuses a UDP service on an overlay's port; but an overlay may come (a
  // vxlan device set up with `ip link`, a Swarm --data-path-port) on the port of a
  // UDP service that already exists: the workers take that port's packets as VXLAN
  // from then on, so the service can no longer be reached. Said once, when the port
  // appears (a walk of the services, only then).
  void warnOfUdpServicesOnNewOverlayPorts(const Snapshot* before, const Snapshot& next) {
    for (const OverlaySnap& o : next.overlays) {
      if (before && before->hasOverlayPort(o.udp_port)) continue;
      for (const auto& [key, svc] : commands_.services().services()) {
        if (key.fwmark || key.protocol != kProtoUdp || key.port != o.udp_port) continue;
        std::printf(
            "meshlbd: warning: an overlay (VNI %u) now takes UDP port %u for VXLAN: UDP service "
            "%s:%u can no longer be reached (move the service or the overlay's port)\n",
            o.vni, o.udp_port, key.addr.str().c_str(), key.port);
      }
    }
    std::fflush(stdout);
  }

  // ipvsadm -L -c, without blocking the control thread: the first call asks every
  // worker for a copy of its connections and answers kUnavailable (the request is
  // deferred); serveDeferred() runs the deferred requests again once every copy is in.
  absl::StatusOr<std::vector<ConnEntry>> connections() {
    if (dump_ == DumpState::kIdle) {
      dump_request_ = dp_.dump_request.fetch_add(1, std::memory_order_acq_rel) + 1;
      dump_deadline_ = std::chrono::steady_clock::now() + kDumpDeadline;
      dump_ = DumpState::kCollecting;
    }
    if (dump_ == DumpState::kCollecting) {
      return absl::UnavailableError("the workers' connection copies are not in yet");
    }
    std::vector<ConnEntry> out;
    for (uint16_t w = 0; w < dp_.num_workers; ++w) {
      const Dataplane::ConnDump& d = dp_.dumps[w];
      if (d.done.load(std::memory_order_acquire) != dump_request_) continue;  // a stuck worker
      appendConnEntries(d.flows.data(), d.count, d.now_ms, out);
      appendConnEntries(d.flows6.data(), d.count6, d.now_ms, out);
    }
    appendTemplates(templates_, commands_.services(), nowMs(), out);
    return out;
  }

  // The workers' clock (Worker::now_ms_): milliseconds of the timer every lcore shares.
  static uint32_t nowMs() {
    return static_cast<uint32_t>(rte_get_timer_cycles() / (rte_get_timer_hz() / 1000));
  }

  // Runs the deferred listings again once what they wait for is in: every worker's
  // connection copy (or a second passed), and the host names being resolved (or
  // kNamesDeadline passed: the addresses still without one are listed by number).
  void serveDeferred() {
    if (deferred_.empty()) return;
    const auto now = std::chrono::steady_clock::now();
    if (dump_ == DumpState::kCollecting) {
      bool all = true;
      for (uint16_t w = 0; w < dp_.num_workers; ++w) {
        all = all && dp_.dumps[w].done.load(std::memory_order_acquire) == dump_request_;
      }
      if (!all && now < dump_deadline_) return;
      dump_ = DumpState::kReady;
    }
    if (names_.pending() && now < names_deadline_) return;
    names_by_number_ = names_.pending();
    for (const Deferred& d : std::exchange(deferred_, {})) {
      bool changed = false;
      auto out = commands_.run(d.req.args, d.req.input, &changed);
      server_->complete(d.ticket, replyOf(out));
    }
    names_by_number_ = false;
    dump_ = DumpState::kIdle;
  }

  void estimateRates() {
    // run_estimation=0: the rates stay as they are (the kernel's estimator stops); once
    // it is back, the first estimate spans the pause.
    if (!commands_.services().sysctls().run_estimation) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_estimate_ < std::chrono::seconds(IpvsStats::kEstimatePeriodS)) return;
    const double secs = std::chrono::duration<double>(now - last_estimate_).count();
    last_estimate_ = now;
    std::vector<BackendId> ids, of_service;
    for (const auto& [key, svc] : commands_.services().services()) {
      of_service.clear();
      for (const RealServer& d : svc.dests) of_service.push_back(d.id);
      ipvs_->attribute(svc.slot, of_service);
      ids.insert(ids.end(), of_service.begin(), of_service.end());
    }
    ipvs_->estimate(ids, secs);
  }

  std::string stats(bool json) { return renderStats(statsGroups(), json); }

  // A DPDK telemetry query (telemetry.h), on the control thread.
  int telemetry(const std::string& cmd, const std::string& params, rte_tel_data* d) {
    auto index = [&](size_t n) -> std::optional<size_t> {
      char* end = nullptr;
      const unsigned long v = std::strtoul(params.c_str(), &end, 10);
      if (params.empty() || *end || v >= n) return std::nullopt;
      return v;
    };
    auto name = [](const ServiceKey& k) {
      return k.fwmark
                 ? absl::StrCat("FWM ", k.fwmark)
                 : absl::StrCat(k.protocol == kProtoUdp ? "UDP " : "TCP ",
                                k.addr.isV6() ? absl::StrCat("[", k.addr.str(), "]") : k.addr.str(),
                                ":", k.port);
    };
    const auto& services = commands_.services().services();
    if (cmd == "/meshlb/services") {
      rte_tel_data_start_array(d, RTE_TEL_STRING_VAL);
      size_t n = 0;
      for (const auto& [key, svc] : services) {
        if (n++ == RTE_TEL_MAX_ARRAY_ENTRIES) break;
        rte_tel_data_add_array_string(d, name(key).c_str());
      }
      return 0;
    }
    if (cmd == "/meshlb/service") {
      const auto i = index(std::min<size_t>(services.size(), RTE_TEL_MAX_ARRAY_ENTRIES));
      if (!i) return -EINVAL;
      const Service& svc = std::next(services.begin(), static_cast<long>(*i))->second;
      rte_tel_data_start_dict(d);
      rte_tel_data_add_dict_string(d, "service", name(svc.key).c_str());
      rte_tel_data_add_dict_string(d, "scheduler", svc.scheduler.c_str());
      rte_tel_data_add_dict_u64(d, "persistent", svc.persistent);
      rte_tel_data_add_dict_u64(d, "real_servers", svc.dests.size());
      rte_tel_data* addrs = rte_tel_data_alloc();
      rte_tel_data* weights = rte_tel_data_alloc();
      rte_tel_data* active = rte_tel_data_alloc();
      rte_tel_data* inactive = rte_tel_data_alloc();
      rte_tel_data* conns = rte_tel_data_alloc();
      rte_tel_data_start_array(addrs, RTE_TEL_STRING_VAL);
      for (rte_tel_data* a : {weights, active, inactive, conns}) {
        rte_tel_data_start_array(a, RTE_TEL_U64_VAL);
      }
      size_t n = 0;
      for (const RealServer& r : svc.dests) {
        if (n++ == RTE_TEL_MAX_ARRAY_ENTRIES) break;
        const DestCounters c = ipvs_->counters(r.id);
        const std::string a = r.addr.isV6() ? absl::StrCat("[", r.addr.str(), "]") : r.addr.str();
        rte_tel_data_add_array_string(addrs, absl::StrCat(a, ":", r.port).c_str());
        rte_tel_data_add_array_u64(weights, r.liveWeight());
        rte_tel_data_add_array_u64(active, c.active);
        rte_tel_data_add_array_u64(inactive, c.inactive);
        rte_tel_data_add_array_u64(conns, c.conns);
      }
      rte_tel_data_add_dict_container(d, "addresses", addrs, 0);
      rte_tel_data_add_dict_container(d, "weights", weights, 0);
      rte_tel_data_add_dict_container(d, "active_connections", active, 0);
      rte_tel_data_add_dict_container(d, "inactive_connections", inactive, 0);
      rte_tel_data_add_dict_container(d, "connections", conns, 0);
      return 0;
    }
    if (cmd == "/meshlb/workers") {
      rte_tel_data_start_array(d, RTE_TEL_U64_VAL);
      for (uint16_t w = 0; w < dp_.num_workers; ++w) rte_tel_data_add_array_u64(d, w);
      return 0;
    }
    if (cmd == "/meshlb/worker_stats") {
      const auto w = index(dp_.num_workers);
      if (!w) return -EINVAL;
      rte_tel_data_start_dict(d);
      forEachCounter(dp_.counters[*w], [&](const char* label, uint64_t v) {
        rte_tel_data_add_dict_u64(d, label, v);
      });
      return 0;
    }
    if (cmd == "/meshlb/drops") {
      std::vector<std::pair<std::string, uint64_t>> sums;
      for (uint16_t w = 0; w < dp_.num_workers; ++w) {
        size_t i = 0;
        forEachCounter(dp_.counters[w], [&](const char* label, uint64_t v) {
          if (!absl::StartsWith(label, "drop_") && !absl::StartsWith(label, "parse_")) return;
          if (w == 0) sums.emplace_back(label, 0);
          sums[i++].second += v;
        });
      }
      rte_tel_data_start_dict(d);
      for (const auto& [label, v] : sums) rte_tel_data_add_dict_u64(d, label.c_str(), v);
      return 0;
    }
    return -EINVAL;
  }

  // GET /metrics: the services and real servers (node_exporter's ipvs names, counts
  // that never go back) and the groups `meshlbctl stats` shows.
  std::string metrics() {
    IpvsMetricsInput in;
    in.model = &commands_.services();
    in.backend = [this](BackendId id) { return ipvs_->totals(id); };
    in.service = [this](const Service& s) {
      std::vector<BackendId> ids;
      for (const RealServer& d : s.dests) ids.push_back(d.id);
      ipvs_->attribute(s.slot, ids);  // up to now
      return ipvs_->serviceTotals(s.slot);
    };
    in.retired = ipvs_->retired();
    return renderMetrics(in, statsGroups());
  }

  std::vector<StatsGroup> statsGroups() {
    std::vector<StatsGroup> groups;
    for (uint16_t i = 0; i < dp_.num_ports; ++i) {
      rte_eth_stats s{};
      rte_eth_stats_get(dp_.port_ids[i], &s);
      StatsGroup g;
      g.kind = "port";
      g.labels = {{"port", absl::StrCat(i)},
                  {"name", ports_.portName(dp_.port_ids[i])},
                  {"twin", absl::StrCat("lb", i)}};
      g.values = {{"rx_packets", s.ipackets}, {"tx_packets", s.opackets}, {"rx_bytes", s.ibytes},
                  {"tx_bytes", s.obytes},     {"rx_missed", s.imissed},   {"rx_errors", s.ierrors},
                  {"tx_errors", s.oerrors},   {"rx_nombuf", s.rx_nombuf}};
      groups.push_back(std::move(g));
    }
    for (uint16_t w = 0; w < dp_.num_workers; ++w) {
      groups.push_back(workerStats(w, worker_lcores_[w], dp_.counters[w]));
    }
    StatsGroup c;
    c.kind = "control";
    c.values = {{"from_kernel_ring_full", ports_.counters().from_kernel_ring_full.load()},
                {"twin_tx_full", ports_.counters().twin_tx_full.load()},
                {"twins_recreated", ports_.counters().twins_recreated.load()},
                {"snapshots_published", publisher_->published()},
                {"netlink_resyncs", mirror_.resyncs()},
                {"neigh_resolve_requests", resolver_.asked()},
                {"neigh_resolve_failed", resolver_.failed()},
                {"announce_route_changes", announcer_.changes()},
                {"announce_route_failures", announcer_.failures()},
                {"sync_tx_messages", sync_.counters().tx_messages},
                {"sync_tx_conns", sync_.counters().tx_conns},
                {"sync_tx_errors", sync_.counters().tx_errors},
                {"sync_rx_messages", sync_.counters().rx_messages},
                {"sync_rx_conns", sync_.counters().rx_conns},
                {"sync_rx_bad", sync_.counters().rx_bad},
                {"sync_rx_other_syncid", sync_.counters().rx_other_syncid},
                {"sync_rx_no_service", sync_.counters().rx_no_service},
                {"sync_rx_no_server", sync_.counters().rx_no_server},
                {"sync_rx_unsupported", sync_.counters().rx_unsupported},
                {"sync_rx_ring_full", sync_.counters().rx_ring_full},
                {"sync_rx_templates", sync_.counters().rx_templates},
                {"sync_rx_templates_refused", sync_.counters().rx_templates_refused},
                {"sync_tx_hellos", sync_.counters().tx_hellos},
                {"sync_rx_hellos", sync_.counters().rx_hellos},
                {"sync_socket_errors", sync_.counters().socket_errors},
                {"persist_templates_created", templates_.counters().created.load()},
                {"persist_templates_reused", templates_.counters().reused.load()},
                {"persist_templates_evicted", templates_.counters().evicted.load()},
                {"persist_templates_full", templates_.counters().full.load()},
                {"control_requests", requests_},
                {"metrics_scrapes", metrics_ ? metrics_->scrapes() : 0},
                {"telemetry_queries", telemetry_.queries()},
                {"snapshot_generation", generation_},
                {"snapshot_age_seconds",
                 static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                           std::chrono::steady_clock::now() - published_at_)
                                           .count())}};
    groups.push_back(std::move(c));
    return groups;
  }

  void shutdown() {
    std::printf("meshlbd: stopping\n");
    serving_ = false;
    announce();  // withdrawn first, while the connections still flow
    dp_.running.store(false);
    rte_eal_mp_wait_lcore();
    server_->close();
    publisher_->reclaim(true);
    publisher_.reset();
    ports_.stop(dp_);
    guard_.restore();
  }

  enum class DumpState : uint8_t { kIdle, kCollecting, kReady };
  struct Deferred {
    Request req;
    uint64_t ticket;
  };

  Options opt_;
  InterfaceClaims& claims_;
  Dataplane dp_;
  Commands commands_;
  NetlinkMirror mirror_;
  Ports ports_;
  PortGuard guard_;
  NeighbourResolver resolver_;
  // What resolveNextHops() last walked whole, and the model version it has seen.
  uint64_t walked_model_ = 0, walked_version_ = 0;
  std::vector<KernelView::Route> walked_routes_;
  std::vector<KernelView::Fdb> walked_fdb_;
  Telemetry telemetry_;
  RouteAnnouncer announcer_;
  // Records per worker and direction (92 bytes each: either family's). The control
  // thread drains them every loop; a full ring is counted (sync_queue_full).
  static constexpr unsigned kSyncRing = 32768;
  SyncDaemons sync_{SyncDaemons::Hooks{
      0,
      [this](uint16_t w, SyncRecord* out, size_t max) -> size_t {
        return rte_ring_dequeue_burst_elem(dp_.sync_out[w], out, sizeof(SyncRecord),
                                           static_cast<unsigned>(max), nullptr);
      },
      [this](uint16_t w, const SyncRecord& r) {
        SyncRecord copy = r;
        return rte_ring_enqueue_elem(dp_.sync_in[w], &copy, sizeof(SyncRecord)) == 0;
      },
      [this](uint32_t slot, const IpAddr& net, uint32_t backend, uint32_t timeout_ms) {
        PersistTable::Key k;
        k.service = slot;
        std::memcpy(k.net, net.b, net.isV6() ? 16 : 4);
        return templates_.install(k, backend, nowMs(), timeout_ms);
      },
      // A peer started: the workers send every live connection over one refresh period
      // (at most once a second, whatever a sender's rate of hellos).
      [this] {
        const auto now = std::chrono::steady_clock::now();
        if (!sync_.master() || now - last_resend_ < std::chrono::seconds(1)) return;
        last_resend_ = now;
        ++resend_generation_;
        std::printf("meshlbd: sync: a peer's master daemon started: sending it every connection\n");
        std::fflush(stdout);
        publish();
      }}};
  std::chrono::steady_clock::time_point last_resend_{};
  uint32_t resend_generation_ = 0;
  bool serving_ = false;  // the workers run: what is usable may be announced
  std::optional<std::chrono::steady_clock::time_point> announce_hold_;  // until then, nothing
  HealthChecker health_;
  uint64_t checks_version_ = ~0ull;
  std::unique_ptr<IpvsStats> ipvs_;
  // The persistence templates every worker shares (262,144 at most, lazily backed).
  PersistTable templates_{1u << 16};
  std::optional<absl::flat_hash_map<uint32_t, uint32_t>> persist_conns_;
  std::unique_ptr<SnapshotPublisher> publisher_;
  std::unique_ptr<ControlServer> server_;
  std::unique_ptr<MetricsServer> metrics_;  // --metrics
  uint64_t requests_ = 0;                   // control requests served
  std::chrono::steady_clock::time_point published_at_ = std::chrono::steady_clock::now();
  std::vector<WorkerConfig> worker_cfgs_;
  std::vector<unsigned> worker_lcores_;
  std::chrono::steady_clock::time_point last_estimate_ = std::chrono::steady_clock::now();
  uint64_t generation_ = 0;
  DumpState dump_ = DumpState::kIdle;
  uint32_t dump_request_ = 0;
  std::chrono::steady_clock::time_point dump_deadline_;
  std::vector<Deferred> deferred_;
  // Host names for listings without -n; how long a deferred listing waits for them.
  static constexpr auto kNamesDeadline = std::chrono::seconds(3);
  NameResolver names_;
  std::chrono::steady_clock::time_point names_deadline_;
  bool names_by_number_ = false;
  std::string fatal_;
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
  // One meshlbd per interface, refused before EAL opens any port.
  InterfaceClaims claims;
  const std::vector<VdevInterface> vdev_ifaces = vdevInterfaces(dashdash, argv);
  for (const VdevInterface& v : vdev_ifaces) {
    if (auto st = claims.claim(v.iface, "data port"); !st.ok()) {
      std::fprintf(stderr, "meshlbd: %s\n", std::string(st.message()).c_str());
      return 1;
    }
  }
  // Hugepage files are unlinked once mapped (EAL's --huge-unlink), so that no file,
  // and no page, stays held after meshlbd ends, however it ends; unless the
  // operator chose how EAL uses hugepages.
  std::vector<char*> eal(argv, argv + argc);
  static char huge_unlink[] = "--huge-unlink";
  bool chosen = false;
  for (int i = 1; i < dashdash; ++i) {
    const std::string a = argv[i];
    chosen = chosen || a == "--no-huge" || a == "--in-memory" || a.rfind("--huge-unlink", 0) == 0;
  }
  if (!chosen) eal.insert(eal.begin() + 1, huge_unlink);
  eal.push_back(nullptr);
  argc = static_cast<int>(eal.size()) - 1;
  argv = eal.data();
  int consumed = rte_eal_init(argc, argv);
  if (consumed < 0) {
    std::fprintf(stderr, "meshlbd: EAL initialisation failed: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  argc -= consumed;
  argv += consumed;
  Options opt;
  opt.vdev_ifaces = vdev_ifaces;
  if (parseOptions(argc, argv, opt) != 0) {
    rte_eal_cleanup();
    return 2;
  }
  std::signal(SIGTERM, onSignal);
  std::signal(SIGINT, onSignal);
  std::signal(SIGHUP, onHangup);
  std::signal(SIGPIPE, SIG_IGN);
  int status = 0;
  {
    Daemon d(opt, claims);
    d.setup();
    d.run();
    if (!d.fatal().empty()) {
      std::fprintf(stderr, "meshlbd: %s\n", d.fatal().c_str());
      status = 1;
    }
  }
  rte_eal_cleanup();
  return status;
}
