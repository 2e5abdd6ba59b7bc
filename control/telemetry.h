// meshlb's commands on DPDK's telemetry socket (EAL's, left as it is:
// /var/run/dpdk/PREFIX/dpdk_telemetry.v2, read with usertools/dpdk-telemetry.py),
// beside EAL's and ethdev's own:
//   /meshlb/services           the services, "TCP 198.18.0.1:8080", "FWM 1" (array)
//   /meshlb/service,N          service N of that list: scheduler, persistence, and its
//                              real servers with their weights and connections
//   /meshlb/workers            the workers' indexes (array)
//   /meshlb/worker_stats,N     every counter of worker N
//   /meshlb/drops              every drop reason, summed over the workers
// Telemetry runs its own thread; the answers are built by the control thread (which
// owns the configuration) between two rounds of its loop, so a query waits at most a
// loop round and never touches the workers.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>

#include "absl/status/status.h"

struct rte_tel_data;

namespace meshlb {

class Telemetry {
 public:
  // Fills `d` for `cmd` with `params` ("" when none); returns 0 or a negative errno
  // (-EINVAL for a bad parameter), as a telemetry callback does.
  using Builder =
      std::function<int(const std::string& cmd, const std::string& params, rte_tel_data* d)>;
  static constexpr const char* kCommands[][2] = {
      {"/meshlb/services", "The services, as ipvsadm names them (index: /meshlb/service)"},
      {"/meshlb/service",
       "A service, its scheduler and its real servers with weights and connections. "
       "Parameter: its index in /meshlb/services"},
      {"/meshlb/workers", "The workers' indexes"},
      {"/meshlb/worker_stats", "Every counter of a worker. Parameter: its index"},
      {"/meshlb/drops", "Every drop reason, summed over the workers"},
  };

  Telemetry() = default;
  Telemetry(const Telemetry&) = delete;
  Telemetry& operator=(const Telemetry&) = delete;
  ~Telemetry();

  // Registers the commands (one Telemetry per process).
  absl::Status start();
  // The control thread, every loop round: answers the query waiting, if any.
  void serve(const Builder& build);
  uint64_t queries() const { return queries_.load(std::memory_order_relaxed); }

 private:
  static int onCommand(const char* cmd, const char* params, rte_tel_data* d);
  int ask(const char* cmd, const char* params, rte_tel_data* d);

  std::mutex mu_;  // one query at a time
  std::mutex state_mu_;
  std::condition_variable cv_;
  std::atomic<bool> pending_{false};
  const char* cmd_ = nullptr;
  const char* params_ = nullptr;
  rte_tel_data* d_ = nullptr;
  int rc_ = 0;
  bool done_ = false;
  std::atomic<uint64_t> queries_{0};
};

}  // namespace meshlb
