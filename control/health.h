// Health checks of real servers, as keepalived's TCP_CHECK and HTTP_GET do them for
// IPVS: `meshlbctl healthcheck` configures them (kept in the service model and the
// state file), a checker thread of meshlbd runs them through the kernel's sockets
// in the twins' namespace (never on a worker's core), and the control thread takes a
// server whose check fails `fall` times in a row to weight 0 (no new connection; the
// open ones go on) and back once it passes `rise` times. A down server's state is
// kept across restarts.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "service_model.h"

namespace meshlb {

// What the checker knows of one real server's checks.
struct HealthStatus {
  uint32_t in_row = 0;  // results like the last one, in a row
  uint64_t checks = 0, failures = 0;
  std::string last;  // "ok", "connection refused", "timeout", "status 503", ...
};
// The checker's status of a real server (nullopt: not checked yet).
using HealthStatusFn = std::function<std::optional<HealthStatus>(BackendId)>;

// `meshlbctl healthcheck ...` (docs/operations.md, "Health checks"):
//   -a|-e SERVICE -r SERVER [--tcp | --http PATH] [--expect STATUS] [--check-port PORT]
//         [--interval SECONDS] [--timeout SECONDS] [--rise N] [--fall N]
//   -d SERVICE -r SERVER
//   --state SERVICE -r SERVER up|down      (by hand, until the checks say otherwise)
//   -L [SERVICE]                           (the checks and their state)
//   -S                                     (the checks as commands)
// SERVICE is ipvsadm's -t/-u ADDR:PORT or -f MARK.
absl::StatusOr<std::string> runHealthcheck(ServiceModel& model,
                                           const std::vector<std::string>& args,
                                           const HealthStatusFn& status = {});
bool healthcheckReadsOnly(const std::vector<std::string>& args);
// The checks and the down servers as commands (-S, and the state file's lines).
std::vector<std::string> healthcheckRules(const ServiceModel& model);

// The checker thread.
class HealthChecker {
 public:
  struct Target {
    BackendId id;
    ServiceKey service;
    IpAddr addr;
    uint16_t port = 0;
    HealthCheck check;
    bool down = false;
  };
  struct Transition {
    Target target;  // as it was checked
    bool down = false;
    std::string why;  // the last result, and how many in a row
  };

  HealthChecker() = default;
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;
  ~HealthChecker();

  void start();
  // Control thread: the checks of `model`'s real servers, from now on. A server whose
  // check is unchanged keeps its counts; its state is the model's.
  void set(const ServiceModel& model);
  // Control thread: the servers whose state should change, since the last call.
  std::vector<Transition> transitions();
  std::optional<HealthStatus> status(BackendId id) const;

 private:
  struct Entry {
    Target target;
    HealthStatus status;
    bool last_ok = true;
    std::chrono::steady_clock::time_point next;
    int fd = -1;
    std::chrono::steady_clock::time_point deadline;
    bool connected = false;
    bool sent = false;  // HTTP: the request is out
    std::string reply;
  };
  void loop();
  void begin(Entry& e, std::chrono::steady_clock::time_point now);
  void advance(Entry& e, short revents);
  void finish(Entry& e, bool ok, std::string what, std::chrono::steady_clock::time_point now);

  mutable std::mutex mu_;
  std::vector<Target> wanted_;  // set() -> the thread
  uint64_t wanted_gen_ = 0;
  std::vector<Transition> out_;
  absl::flat_hash_map<uint32_t, HealthStatus> statuses_;
  std::atomic<bool> run_{false};
  std::thread thread_;
  // The thread's own.
  std::vector<Entry> entries_;
  uint64_t have_gen_ = 0;
};

}  // namespace meshlb
