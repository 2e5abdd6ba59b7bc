// The daemon's parts, each without EAL: IPVS statistics (sums over workers, -Z,
// the rate estimator), the listings (-L -c entries, stats text and JSON), snapshot
// publication through rte_rcu_qsbr, the control socket (deferred replies, who may
// use it, silent clients) and the interface claims that keep one meshlbd per port.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "claims.h"
#include "control_server.h"
#include "host_setup.h"
#include "ipvs_stats.h"
#include "listings.h"
#include "metrics.h"
#include "publisher.h"

namespace meshlb {
namespace {

TEST(IpvsStats, SumsWorkersZeroesAndEstimatesRates) {
  IpvsStats s(2);
  const BackendId id = BackendId::make(3, 7), other = BackendId::make(1, 8);
  for (uint16_t w = 0; w < 2; ++w) {
    BackendStats& b = s.backendStats(w)[id.slot()];
    bump(b.conns, 10 + w);
    bump(b.inpkts, 100);
    bump(b.outbytes, 1000);
    s.connCounts(w)[2 * id.slot()].store(3);      // ActiveConn
    s.connCounts(w)[2 * id.slot() + 1].store(1);  // InActConn
  }
  DestCounters c = s.counters(id);
  EXPECT_EQ(c.conns, 21u);
  EXPECT_EQ(c.inpkts, 200u);
  EXPECT_EQ(c.outbytes, 2000u);
  EXPECT_EQ(c.active, 6u);
  EXPECT_EQ(c.inactive, 2u);
  EXPECT_EQ(s.counters(other).conns, 0u);
  // -Z: counting starts again from here; connection counts are not statistics.
  s.zero(0, {id});
  bump(s.backendStats(1)[id.slot()].conns, 4);
  c = s.counters(id);
  EXPECT_EQ(c.conns, 4u);
  EXPECT_EQ(c.active, 6u);
  // The estimator: 400 packets in 2 s is 200/s, of which a quarter shows at once.
  bump(s.backendStats(0)[id.slot()].inpkts, 400);
  s.estimate({id}, 2.0);  // the first run sees the totals since the start
  const uint64_t first = s.counters(id).inpps;
  bump(s.backendStats(0)[id.slot()].inpkts, 400);
  s.estimate({id}, 2.0);
  const uint64_t second = s.counters(id).inpps;
  EXPECT_GT(first, 0u);
  EXPECT_EQ(second, first + (200 - first) / 4);
}

// Issue 11: the kernel's estimator keeps rates in fixed point (10 fractional bits for
// connections and packets, 5 for bytes) and reads them rounded: 2 connections a
// second shows 2 (meshlb showed 0: a quarter of 2, in integers, every run). -Z
// zeroes the rates with the counters, as ip_vs_zero_stats does.
TEST(IpvsStats, RatesAreFixedPointAsTheKernelsAndZeroedByZ) {
  IpvsStats s(1);
  const BackendId id = BackendId::make(1, 9);
  auto& b = s.backendStats(0)[id.slot()];
  auto add = [](std::atomic<uint64_t>& c, uint64_t n) { c.store(c.load() + n); };
  std::vector<uint64_t> cps, inbps;
  for (int i = 0; i < 8; ++i) {
    add(b.conns, 4);      // 2 per second
    add(b.inbytes, 300);  // 150 bytes per second
    s.estimate({id}, 2.0);
    cps.push_back(s.counters(id).cps);
    inbps.push_back(s.counters(id).inbps);
  }
  // est: 512, 896, 1184, 1400, 1562, ... of 2048 (2 << 10), read as (est + 511) >> 10.
  EXPECT_EQ(cps, (std::vector<uint64_t>{0, 1, 1, 1, 2, 2, 2, 2}));
  // est: 1200, 2100, 2775, 3281, 3661, 3946, 4159, 4319 of 4800 (150 << 5), (est + 15) >> 5.
  EXPECT_EQ(inbps, (std::vector<uint64_t>{37, 66, 87, 103, 114, 123, 130, 135}));
  s.zero(0, {id});
  EXPECT_EQ(s.counters(id).cps, 0u);
  EXPECT_EQ(s.counters(id).inbps, 0u);
  s.estimate({id}, 2.0);  // nothing since -Z: still 0, not the totals since the start
  EXPECT_EQ(s.counters(id).cps, 0u);
  add(b.conns, 4);
  s.estimate({id}, 2.0);
  EXPECT_EQ(s.counters(id).cps, 0u);  // 512: as after the first run above
}

// Issue 11: a service's --stats were the sum of its current servers', so they went
// back when one was deleted. IPVS keeps a service's counters apart: here each
// server's counts are the service's while it has the server, and stay when it goes;
// a server new in a slot starts from zero (not its predecessor's counts), a revived
// one keeps its own; -Z zeroes a service with its servers.
// The metrics' totals never go back: -Z leaves them, a server new in a slot starts
// from the slot's count then, and a service gone keeps what it counted in retired()
// (once, whether it is retired or its slot taken first).
TEST(IpvsStats, MetricsTotalsNeverGoBack) {
  IpvsStats s(1);
  const BackendId a = BackendId::make(1, 5);
  auto add = [&](uint64_t conns) {
    auto& c = s.backendStats(0)[a.slot()].conns;
    c.store(c.load() + conns);
  };
  add(4);
  s.attribute(3, {a});
  s.zero(3, {a});
  add(2);
  EXPECT_EQ(s.counters(a).conns, 2u);  // --stats: since -Z
  EXPECT_EQ(s.totals(a).conns, 6u);    // metrics: since it began
  s.attribute(3, {a});
  EXPECT_EQ(s.serviceTotals(3).conns, 6u);
  s.retire(3);  // the service deleted
  EXPECT_EQ(s.retired().conns, 6u);
  s.newService(3);  // its slot taken: nothing counted twice
  EXPECT_EQ(s.retired().conns, 6u);
  EXPECT_EQ(s.serviceTotals(3).conns, 0u);
  const BackendId a2 = BackendId::make(2, 5);  // another server in the slot
  EXPECT_EQ(s.totals(a2).conns, 0u);
  add(1);
  EXPECT_EQ(s.totals(a2).conns, 1u);
  s.attribute(3, {a2});
  s.newService(3);  // taken again without a retire first: still counted once
  EXPECT_EQ(s.retired().conns, 6u + 1u);
}

TEST(IpvsStats, ServiceCountersNeverGoBack) {
  IpvsStats s(2);
  const BackendId a = BackendId::make(1, 5), b = BackendId::make(1, 6);
  auto add = [&](BackendId id, uint16_t w, uint64_t conns) {
    auto& c = s.backendStats(w)[id.slot()].conns;
    c.store(c.load() + conns);
  };
  const uint32_t svc = 3;
  add(a, 0, 10), add(b, 1, 5);
  s.attribute(svc, {a, b});
  EXPECT_EQ(s.serviceCounters(svc).conns, 15u);
  add(a, 1, 2);
  s.attribute(svc, {a});  // a deleted (the command's side: what it counted stays)
  add(b, 0, 1);
  s.attribute(svc, {b});
  EXPECT_EQ(s.serviceCounters(svc).conns, 18u);  // 12 + 6: a's counts did not go
  // Another server in a's slot (a new generation) starts at 0, and what a counted
  // after it went is not given to anyone.
  add(a, 0, 7);
  const BackendId a2 = BackendId::make(2, 5);
  EXPECT_EQ(s.counters(a2).conns, 0u);
  add(a2, 1, 1);
  s.attribute(svc, {b, a2});
  EXPECT_EQ(s.counters(a2).conns, 1u);
  EXPECT_EQ(s.serviceCounters(svc).conns, 19u);
  // b revived (the same id): its counts go on.
  EXPECT_EQ(s.counters(b).conns, 6u);
  s.zero(svc, {b, a2});
  EXPECT_EQ(s.serviceCounters(svc).conns, 0u);
  EXPECT_EQ(s.counters(b).conns, 0u);
  add(b, 1, 3);
  s.attribute(svc, {b, a2});
  EXPECT_EQ(s.serviceCounters(svc).conns, 3u);
  s.newService(svc);  // the slot to a new service
  EXPECT_EQ(s.serviceCounters(svc).conns, 0u);
}

TEST(Listings, ConnectionEntriesFromAWorkersCopy) {
  Flow<Ipv4Addr> f{};
  inet_pton(AF_INET, "198.18.0.10", &f.client.v);
  inet_pton(AF_INET, "198.18.0.1", &f.vip.v);
  inet_pton(AF_INET, "198.18.1.12", &f.backend.v);
  f.cport = htons(40000), f.vport = htons(8080), f.bport = htons(80);
  f.state = static_cast<uint32_t>(ConnState::kEstablished);
  f.expires_ms = 5000 + 899'500;
  std::vector<ConnEntry> out;
  appendConnEntries(&f, 1, 5000, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].protocol, 6);
  EXPECT_EQ(out[0].client.str(), "198.18.0.10");
  EXPECT_EQ(out[0].virt.str(), "198.18.0.1");
  EXPECT_EQ(out[0].dest.str(), "198.18.1.12");
  EXPECT_EQ(out[0].cport, 40000);
  EXPECT_EQ(out[0].vport, 8080);
  EXPECT_EQ(out[0].dport, 80);
  EXPECT_EQ(out[0].state, "ESTABLISHED");
  EXPECT_EQ(out[0].expires_s, 899u);
  f.expires_ms = 4000;  // expired, not yet swept
  appendConnEntries(&f, 1, 5000, out);
  EXPECT_EQ(out[1].expires_s, 0u);
}

// The persistence templates as /proc/net/ip_vs_conn lists them (ipvsadm -c): an address
// service's with its ports, a port-0 service's and a firewall mark's without (the
// mark as the address, protocol IP), a UDP service's in state UDP; PersistConn counts.
TEST(Listings, TemplatesAsTheKernelListsThem) {
  ServiceModel m;
  auto ok = [&](const std::string& line) {
    auto r = runIpvsadm(m, absl::StrSplit(line, ' '));
    ASSERT_TRUE(r.ok()) << line << ": " << r.status();
  };
  ok("-A -t 198.18.0.1:443 -s rr -p 300");
  ok("-a -t 198.18.0.1:443 -r 198.18.1.11 -m");
  ok("-A -t 198.18.0.1:0 -s rr -p 60");
  ok("-a -t 198.18.0.1:0 -r 198.18.1.12 -m");
  ok("-A -f 7 -s rr -p 30");
  ok("-a -f 7 -r 198.18.1.13 -m");
  ok("-A -u 198.18.0.1:53 -s rr -p 30");
  ok("-a -u 198.18.0.1:53 -r 198.18.1.11 -m");
  PersistTable t(16);
  for (const auto& [key, svc] : m.services()) {
    PersistTable::Key k;
    k.service = svc.slot;  // 0 to 3, in the order added
    const uint8_t client[4] = {198, 18, 0, static_cast<uint8_t>(10 + svc.slot)};
    std::memcpy(k.net, client, 4);
    PersistTable::Ref ref;
    const uint32_t raw = svc.dests[0].id.raw();
    t.bind(
        k, 1000, 60000, false, [](uint32_t) { return true; }, [&] { return raw; }, &ref);
  }
  std::vector<ConnEntry> out;
  appendTemplates(t, m, 2000, out);
  std::set<std::string> lines;
  for (const ConnEntry& c : out) {
    lines.insert(absl::StrCat(c.protocol, " ", c.state, " ", c.client.str(), ":", c.cport, " ",
                              c.virt.str(), ":", c.vport, " ", c.dest.str(), ":", c.dport, " ",
                              c.expires_s));
  }
  EXPECT_EQ(lines, (std::set<std::string>{"6 NONE 198.18.0.10:0 198.18.0.1:443 198.18.1.11:443 59",
                                          "6 NONE 198.18.0.11:0 198.18.0.1:0 198.18.1.12:0 59",
                                          "0 NONE 198.18.0.12:0 0.0.0.7:0 198.18.1.13:0 59",
                                          "17 UDP 198.18.0.13:0 198.18.0.1:53 198.18.1.11:53 59"}));
  // PersistConn: one template each (198.18.1.11 is two services' server, two ids).
  const auto counts = templateCounts(t, 2000);
  EXPECT_EQ(counts.size(), 4u);
  for (const auto& [id, count] : counts) EXPECT_EQ(count, 1u);
  // Past their timeout, with no connection open, they are gone.
  out.clear();
  appendTemplates(t, m, 62000, out);
  EXPECT_TRUE(out.empty());
}

// Prometheus: node_exporter's ipvs names and labels for the services and real servers
// (an fwmark service as /proc/net/ip_vs shows it: no address, port 0, FWM and the mark
// in hex), meshlb's own counters by group with drops by reason, HELP and TYPE once
// per family.
TEST(Metrics, NodeExportersIpvsNamesAndMeshlbsOwn) {
  ServiceModel m;
  ASSERT_TRUE(runIpvsadm(m, {"-A", "-t", "198.18.0.1:8080", "-s", "rr"}).ok());
  ASSERT_TRUE(runIpvsadm(m, {"-a", "-t", "198.18.0.1:8080", "-r", "198.18.1.11:80", "-m"}).ok());
  ASSERT_TRUE(runIpvsadm(m, {"-A", "-f", "256", "-s", "rr"}).ok());
  ASSERT_TRUE(runIpvsadm(m, {"-a", "-f", "256", "-r", "198.18.1.12:0", "-m", "-w", "3"}).ok());
  IpvsMetricsInput in;
  in.model = &m;
  in.backend = [](BackendId) {
    DestCounters c;
    c.active = 2, c.inactive = 1, c.conns = 10, c.inpkts = 100, c.outbytes = 5000;
    return c;
  };
  in.service = [](const Service&) {
    DestCounters c;
    c.conns = 12;
    return c;
  };
  in.retired.conns = 5;
  WorkerCounters w;
  bump(w.drop(Drop::kNoBackend), 3);
  bump(w.new_connections, 7);
  w.flows.store(4);
  const std::string text =
      renderMetrics(in, {workerStats(0, 1, w), {"control", {}, {{"snapshot_generation", 9}}}});
  auto has = [&](const std::string& line) {
    EXPECT_NE(text.find(line + "\n"), std::string::npos) << line << "\n" << text;
  };
  has("# TYPE node_ipvs_backend_connections_active gauge");
  has("node_ipvs_backend_connections_active{local_address=\"198.18.0.1\",local_port=\"8080\","
      "remote_address=\"198.18.1.11\",remote_port=\"80\",local_mark=\"\",proto=\"TCP\"} 2");
  has("node_ipvs_backend_weight{local_address=\"\",local_port=\"0\",remote_address="
      "\"198.18.1.12\",remote_port=\"0\",local_mark=\"00000100\",proto=\"FWM\"} 3");
  has("node_ipvs_backend_connections_inactive{local_address=\"\",local_port=\"0\","
      "remote_address=\"198.18.1.12\",remote_port=\"0\",local_mark=\"00000100\",proto=\"FWM\"} 1");
  has("# TYPE node_ipvs_connections_total counter");
  has("node_ipvs_connections_total 29");  // two services' 12, and 5 of services gone
  has("meshlb_ipvs_backend_outgoing_bytes_total{local_address=\"198.18.0.1\",local_port="
      "\"8080\",remote_address=\"198.18.1.11\",remote_port=\"80\",local_mark=\"\",proto="
      "\"TCP\"} 5000");
  has("meshlb_worker_drops_total{worker=\"0\",lcore=\"1\",reason=\"no_backend\"} 3");
  has("meshlb_worker_new_connections_total{worker=\"0\",lcore=\"1\"} 7");
  has("# TYPE meshlb_worker_flows gauge");
  has("meshlb_worker_flows{worker=\"0\",lcore=\"1\"} 4");
  has("meshlb_snapshot_generation 9");
  // Each family's HELP and TYPE once, its samples together.
  size_t at = 0, helps = 0;
  while ((at = text.find("# HELP meshlb_worker_drops_total ", at)) != std::string::npos) {
    ++helps, ++at;
  }
  EXPECT_EQ(helps, 1u);
}

// The endpoint: GET /metrics answered with the text, anything else refused, over a
// real TCP connection served by the poll loop.
TEST(Metrics, ServerAnswersGetMetrics) {
  MetricsServer server([] { return std::string("meshlb_test_total 1\n"); });
  ASSERT_TRUE(server.listen("127.0.0.1:0").ok());
  const uint16_t port = server.port();
  ASSERT_NE(port, 0);
  auto ask = [&](const std::string& request) {
    std::string reply;
    std::thread client([&] {
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port);
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
        (void)!::write(fd, request.data(), request.size());
        char buf[4096];
        ssize_t n;
        while ((n = ::read(fd, buf, sizeof(buf))) > 0) reply.append(buf, static_cast<size_t>(n));
      }
      ::close(fd);
    });
    for (int i = 0; i < 200 && reply.empty(); ++i) {
      std::vector<pollfd> fds;
      server.appendPollFds(fds);
      if (::poll(fds.data(), fds.size(), 10) > 0) server.service(fds);
    }
    client.join();
    return reply;
  };
  const std::string ok = ask("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(ok.substr(0, 15), "HTTP/1.1 200 OK");
  EXPECT_NE(ok.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
  EXPECT_EQ(ok.substr(ok.size() - 20), "meshlb_test_total 1\n");
  EXPECT_EQ(ask("GET / HTTP/1.1\r\n\r\n").substr(0, 22), "HTTP/1.1 404 Not Found");
  EXPECT_EQ(ask("POST /metrics HTTP/1.1\r\n\r\n").substr(0, 12), "HTTP/1.1 405");
  EXPECT_EQ(ask("nonsense\r\n\r\n").substr(0, 12), "HTTP/1.1 400");
  EXPECT_EQ(server.scrapes(), 1u);
  EXPECT_FALSE(MetricsServer([] { return std::string(); }).listen("127.0.0.1").ok());
  EXPECT_FALSE(MetricsServer([] { return std::string(); }).listen("300.0.0.1:9").ok());
}

TEST(Listings, StatsTextAndJsonFromOneList) {
  WorkerCounters w;
  bump(w.rx_packets, 5);
  bump(w.drop(Drop::kNoRoute), 2);
  bump(w.parse[static_cast<size_t>(ParseResult::kIpv4BadChecksum)]);
  w.flows.store(3);
  std::vector<StatsGroup> groups;
  groups.push_back(
      {"port", {{"port", "0"}, {"name", "net_null0"}, {"twin", "lb0"}}, {{"rx_packets", 9}}});
  groups.push_back(workerStats(0, 1, w));
  groups.push_back({"control", {}, {{"snapshots_published", 4}}});
  const std::string text = renderStats(groups, false);
  EXPECT_NE(text.find("port 0 net_null0 (twin lb0)\n  rx_packets"), std::string::npos) << text;
  EXPECT_NE(text.find("worker 0 (lcore 1)\n"), std::string::npos);
  EXPECT_NE(text.find("  drop_no_route                            2\n"), std::string::npos);
  EXPECT_NE(text.find("  parse_ipv4_bad_checksum                  1\n"), std::string::npos);
  EXPECT_NE(text.find("control\n  snapshots_published                      4\n"),
            std::string::npos);
  const std::string json = renderStats(groups, true);
  EXPECT_EQ(json.rfind("{\"ports\":[{\"port\":0,\"name\":\"net_null0\",\"twin\":\"lb0\","
                       "\"rx_packets\":9}],\"workers\":[{\"worker\":0,\"lcore\":1,"
                       "\"rx_packets\":5,",
                       0),
            0u)
      << json;
  EXPECT_NE(json.find("\"drop_no_route\":2,"), std::string::npos);
  EXPECT_NE(json.find("\"flows\":3,"), std::string::npos);
  EXPECT_NE(json.find("\"parse_ipv4_bad_checksum\":1"), std::string::npos);
  EXPECT_NE(json.find("],\"control\":{\"snapshots_published\":4}}\n"), std::string::npos);
  // Every counter a worker has is in both, once.
  size_t n = 0;
  forEachCounter(w, [&](const char* name, uint64_t) {
    ++n;
    EXPECT_NE(json.find(std::string("\"") + name + "\":"), std::string::npos) << name;
  });
  EXPECT_EQ(n, groups[1].values.size());
}

// A retired snapshot is freed only once every registered reader has reported a
// quiescent state after the swap.
TEST(SnapshotPublisher, FreesOnlyAfterEveryReaderMovedOn) {
  const size_t sz = rte_rcu_qsbr_get_memsize(2);
  auto* qsbr = static_cast<rte_rcu_qsbr*>(std::aligned_alloc(64, (sz + 63) / 64 * 64));
  ASSERT_EQ(rte_rcu_qsbr_init(qsbr, 2), 0);
  for (unsigned t = 0; t < 2; ++t) {
    ASSERT_EQ(rte_rcu_qsbr_thread_register(qsbr, t), 0);
    rte_rcu_qsbr_thread_online(qsbr, t);
  }
  std::atomic<const Snapshot*> slot{nullptr};
  {
    SnapshotPublisher p(slot, qsbr);
    auto first = std::make_unique<Snapshot>();
    first->generation = 1;
    p.publish(std::move(first));
    const Snapshot* reader0 = p.current();  // reader 0 holds generation 1
    p.publish(std::make_unique<Snapshot>());
    EXPECT_EQ(p.retired(), 1u);
    p.reclaim(false);
    EXPECT_EQ(p.retired(), 1u);  // nobody has moved on
    rte_rcu_qsbr_quiescent(qsbr, 1);
    p.reclaim(false);
    EXPECT_EQ(p.retired(), 1u);  // reader 0 may still read it
    EXPECT_EQ(reader0->generation, 1u);
    rte_rcu_qsbr_quiescent(qsbr, 0);
    p.reclaim(false);
    EXPECT_EQ(p.retired(), 0u);
    EXPECT_EQ(p.published(), 2u);
  }
  EXPECT_EQ(slot.load(), nullptr);  // the current one goes with the publisher
  std::free(qsbr);
}

// A handler may answer later: the client waits, others are served meanwhile, and
// complete() delivers the reply.
TEST(ControlServer, DeferredRepliesComeWhenCompleted) {
  char dir[] = "/tmp/meshlb-sock-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/s";
  uint64_t deferred = 0;
  ControlServer server([&](const Request& r, uint64_t ticket) -> std::optional<Reply> {
    if (r.args[0] == "later") {
      deferred = ticket;
      return std::nullopt;
    }
    return Reply{true, "now"};
  });
  ASSERT_TRUE(server.listen(path).ok());
  auto connect = [&](const char* arg) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    const std::string wire = encodeRequest({{arg}, ""});
    EXPECT_EQ(::write(fd, wire.data(), wire.size()), static_cast<ssize_t>(wire.size()));
    return fd;
  };
  auto serve = [&](int rounds) {
    for (int i = 0; i < rounds; ++i) {
      std::vector<pollfd> fds;
      server.appendPollFds(fds);
      ::poll(fds.data(), fds.size(), 5);
      server.service(fds);
    }
  };
  auto reply = [](int fd) {
    std::string in;
    char buf[256];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof(buf))) > 0) in.append(buf, static_cast<size_t>(n));
    ::close(fd);
    auto r = decodeReply(in.substr(4));
    return r.ok() ? r->text : std::string("(bad reply)");
  };
  const int slow = connect("later");
  serve(5);
  ASSERT_NE(deferred, 0u);
  const int fast = connect("now?");
  serve(5);
  EXPECT_EQ(reply(fast), "now");  // served while the other waits
  server.complete(deferred, {true, "done"});
  serve(5);
  EXPECT_EQ(reply(slow), "done");
  server.complete(deferred, {true, "again"});  // a ticket answered already: ignored
  server.close();
  rmdir(dir);
}

// A scratch control socket served by a ControlServer, and clients of it.
struct SocketFixture {
  char dir[32] = "/tmp/meshlb-sock-XXXXXX";
  std::string path;
  std::unique_ptr<ControlServer> server;
  explicit SocketFixture(std::chrono::milliseconds timeout = ControlServer::kClientTimeout) {
    EXPECT_NE(mkdtemp(dir), nullptr);
    path = std::string(dir) + "/s";
    server = std::make_unique<ControlServer>(
        [](const Request&, uint64_t) -> std::optional<Reply> {
          return Reply{true, "ok"};
        },
        timeout);
    EXPECT_TRUE(server->listen(path).ok());
  }
  ~SocketFixture() {
    server->close();
    rmdir(dir);
  }
  int connect() const {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
    return ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 ? fd : -1;
  }
  void serve(int rounds) {
    for (int i = 0; i < rounds; ++i) {
      std::vector<pollfd> fds;
      server->appendPollFds(fds);
      if (::poll(fds.data(), fds.size(), 5) > 0) server->service(fds);
      server->expire();
    }
  }
};

// Issue 13, defect 8: a silent client was cut only when some other socket activity
// happened; now the loop's every turn expires it, with no other client around.
TEST(ControlServer, CutsASilentClientWithoutOtherActivity) {
  SocketFixture f(std::chrono::milliseconds(100));
  const int fd = f.connect();
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "\x10\x00", 2), 2);  // half a length prefix, then silence
  const auto start = std::chrono::steady_clock::now();
  char b;
  ssize_t n = -1;
  ::fcntl(fd, F_SETFL, O_NONBLOCK);
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(2)) {
    f.serve(1);
    n = ::read(fd, &b, 1);
    if (n == 0) break;
  }
  EXPECT_EQ(n, 0) << "the silent client is still connected after 2 s";
  ::close(fd);
}

// Issue 13, defect 8: a member of the socket's group through a supplementary group
// was refused (only the primary gid was compared, and against the group at start).
// A child drops to nobody with the socket's group as a supplementary group only.
TEST(ControlServer, AdmitsSupplementaryGroupMembersOfTheSocketsGroupNow) {
  ASSERT_EQ(geteuid(), 0u) << "the test changes credentials: run as root";
  SocketFixture f;
  const gid_t group = 4242, nobody = 65534;
  ASSERT_EQ(chown(f.path.c_str(), 0, group), 0);  // after start: the check reads it now
  // A relaxed mode, so that the daemon's check, not the file system, decides.
  ASSERT_EQ(chmod(f.dir, 0711), 0);
  ASSERT_EQ(chmod(f.path.c_str(), 0666), 0);
  auto replyAs = [&](std::vector<gid_t> groups) {
    int pipefd[2];
    EXPECT_EQ(pipe(pipefd), 0);
    const pid_t child = fork();
    if (child == 0) {
      ::close(pipefd[0]);
      if (setgroups(groups.size(), groups.data()) != 0 || setgid(nobody) != 0 ||
          setuid(nobody) != 0)
        _exit(2);
      const int fd = f.connect();
      const std::string wire = encodeRequest({{"ipvsadm"}, ""});
      if (fd < 0) _exit(3);
      // A refused client may find the reply (and the socket closed) before it writes.
      (void)!::send(fd, wire.data(), wire.size(), MSG_NOSIGNAL);
      std::string in;
      char buf[256];
      ssize_t n;
      while ((n = ::read(fd, buf, sizeof(buf))) > 0) in.append(buf, static_cast<size_t>(n));
      auto r = decodeReply(in.size() > 4 ? in.substr(4) : std::string());
      const std::string text = r.ok() ? r->text : "(bad reply)";
      (void)!::write(pipefd[1], text.data(), text.size());
      _exit(0);
    }
    ::close(pipefd[1]);
    ::fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
    std::string text;
    int status = 0;
    for (int i = 0; i < 400 && waitpid(child, &status, WNOHANG) == 0; ++i) f.serve(1);
    char buf[256];
    ssize_t n;
    while ((n = ::read(pipefd[0], buf, sizeof(buf))) > 0) text.append(buf, static_cast<size_t>(n));
    ::close(pipefd[0]);
    return text;
  };
  EXPECT_EQ(replyAs({100, group}), "ok");
  EXPECT_EQ(replyAs({100}), "permission denied (SO_PEERCRED)");
}

// Issue 13, defect 3: one meshlbd per interface, whatever its socket or file prefix.
TEST(InterfaceClaims, SecondClaimRefusedNamingTheHolderUntilReleased) {
  auto first = std::make_unique<InterfaceClaims>();
  ASSERT_TRUE(first->claim("mlbtest0", "data port").ok());
  InterfaceClaims second;
  const absl::Status st = second.claim("mlbtest0", "data port");
  EXPECT_TRUE(absl::IsAlreadyExists(st));
  EXPECT_EQ(st.message(),
            absl::StrCat("data port mlbtest0 is in use by another meshlbd in this ",
                         "network namespace (pid ", getpid(), "); nothing was touched"));
  EXPECT_TRUE(second.claim("mlbtest1", "kernel twin").ok());  // another interface
  first.reset();
  EXPECT_TRUE(second.claim("mlbtest0", "data port").ok());
}

TEST(InterfaceClaims, InterfacesNamedByEalVdevArguments) {
  const char* argv[] = {"meshlbd",
                        "-l",
                        "0-1",
                        "--vdev",
                        "net_af_packet0,iface=p0,qpairs=2",
                        "--vdev=net_af_xdp1,iface=p1,start_queue=0",
                        "--vdev",
                        "net_ring0",
                        "--",
                        "--vdev",
                        "net_tap9,iface=x"};
  EXPECT_EQ(vdevInterfaces(11, const_cast<char**>(argv)),
            (std::vector<VdevInterface>{{"net_af_packet0", "p0"}, {"net_af_xdp1", "p1"}}));
}

}  // namespace
// One line for each thing the host lacks, from the /proc and /sys it is given.
TEST(HostSetup, SaysWhatTheHostLacksOneLineEach) {
  const std::filesystem::path root =
      std::filesystem::temp_directory_path() / ("meshlb-host-" + std::to_string(getpid()));
  std::filesystem::create_directories(root / "proc/sys/net/ipv4/conf/all");
  std::filesystem::create_directories(root / "proc/sys/net/ipv6/conf/all");
  std::filesystem::create_directories(root / "sys/kernel/iommu_groups");
  auto write = [&](const char* path, const char* v) { std::ofstream(root / path) << v << "\n"; };
  write("proc/sys/net/ipv4/conf/all/rp_filter", "0");
  const std::string proc = root / "proc", sys = root / "sys";
  EXPECT_EQ(readSysctl("net/ipv4/conf/all/rp_filter", proc), "0");
  EXPECT_EQ(readSysctl("net/ipv4/conf/none/rp_filter", proc), "");

  HostFacts fine;
  fine.pci_ports = true;
  std::filesystem::create_directories(root / "sys/kernel/iommu_groups/0");
  EXPECT_TRUE(hostLacks(fine, proc, sys).empty());

  write("proc/sys/net/ipv6/conf/all/forwarding", "1");
  EXPECT_TRUE(hostLacks(fine, proc, sys).empty());

  write("proc/sys/net/ipv4/conf/all/rp_filter", "2");
  write("proc/sys/net/ipv6/conf/all/forwarding", "0");
  std::filesystem::remove(root / "sys/kernel/iommu_groups/0");
  HostFacts lacking;
  lacking.hugepages = false;
  lacking.pci_ports = true;
  const auto lines = hostLacks(lacking, proc, sys);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_NE(lines[0].find("net.ipv4.conf.all.rp_filter=2"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("net.ipv6.conf.all.forwarding=0"), std::string::npos) << lines[1];
  EXPECT_NE(lines[2].find("without hugepages"), std::string::npos) << lines[2];
  EXPECT_NE(lines[3].find("no IOMMU"), std::string::npos) << lines[3];
  // Without PCI ports no IOMMU is needed.
  lacking.pci_ports = false;
  EXPECT_EQ(hostLacks(lacking, proc, sys).size(), 3u);
  std::filesystem::remove_all(root);
}

}  // namespace meshlb
