// Prometheus metrics (docs/operations.md, "Metrics"): an HTTP endpoint on the
// control thread's poll loop (`meshlbd --metrics ADDR:PORT`, off by default), never
// on a worker's core, and the text it serves: node_exporter's ipvs collector's names
// and labels for the services and real servers, so that IPVS dashboards and alerts
// work unchanged, and meshlb's own counters (ports, workers, every drop by reason,
// the control thread).
#pragma once

#include <poll.h>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "ipvsadm.h"
#include "listings.h"
#include "service_model.h"

namespace meshlb {

// What the IPVS part of the metrics reads: the services, each real server's counts
// (raw totals: they only ever increase; -Z does not touch them), each service's own
// totals, and those of services gone (so that the node_ipvs_*_total sums never fall).
struct IpvsMetricsInput {
  const ServiceModel* model = nullptr;
  std::function<DestCounters(BackendId)> backend;
  std::function<DestCounters(const Service&)> service;
  DestCounters retired;  // conns, packets and bytes of services deleted since start
};

// The Prometheus text exposition format (version 0.0.4): HELP and TYPE for every
// metric; counters end in _total.
std::string renderMetrics(const IpvsMetricsInput& ipvs, const std::vector<StatsGroup>& groups);

// A small HTTP/1.1 server for GET /metrics: non-blocking, one request per connection,
// requests up to 8 KiB, at most kMaxClients at once, each cut off after kTimeout.
class MetricsServer {
 public:
  static constexpr size_t kMaxClients = 16, kMaxRequest = 8192;
  static constexpr std::chrono::seconds kTimeout{10};
  explicit MetricsServer(std::function<std::string()> render) : render_(std::move(render)) {}
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // ADDR:PORT, [ADDR6]:PORT or :PORT (every address); port 0 takes a free one.
  absl::Status listen(const std::string& where);
  void appendPollFds(std::vector<pollfd>& fds) const;
  void service(const std::vector<pollfd>& fds);
  void expire();
  uint64_t scrapes() const { return scrapes_; }
  uint16_t port() const;  // the port listened on (:0 takes a free one)

 private:
  struct Client {
    std::string in, out;
    size_t sent = 0;
    std::chrono::steady_clock::time_point since;
  };
  void accept();
  void drop(int fd);
  std::string respond(const std::string& request);
  std::function<std::string()> render_;
  int listen_fd_ = -1;
  std::map<int, Client> clients_;
  uint64_t scrapes_ = 0;
};

}  // namespace meshlb
