// Scale-out behind BGP ECMP (docs/scale-out.md): the prefixes an appliance announces,
// and the kernel routes that announce them.
//
// `meshlbctl announce -a PREFIX [SERVICE]...` names a prefix (a VIP/32) to announce
// while one of its services (the named ones, or every address service whose VIP lies in
// it) has a real server of weight above 0: a health check's fall, a Swarm task leaving
// or an operator's -d can take that away. meshlbd puts each prefix to announce as a
// route in a kernel table of its own (--announce-table, 4242), through the twin lb0,
// and the routing daemon (BIRD's kernel protocol, `learn`) exports what it finds there.
// The route goes through the twin, so it goes with it: when meshlbd ends, however it
// ends, the kernel deletes its twins and their routes, and the daemon withdraws the
// prefix. Nothing is announced before meshlbd serves (its state restored, its workers
// running), nor while it is drained (`announce --drain`).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "service_model.h"

struct nl_sock;

namespace meshlb {

struct Announcement {
  friend bool operator==(const Announcement&, const Announcement&) = default;
  IpAddr prefix;  // host bits clear
  uint8_t len = 32;
  std::vector<ServiceKey> services;  // none: every address service whose VIP is inside
  // --metric: the route's metric in the announce table, which the routing daemon
  // exports (BIRD: bgp_med = krt_metric), lower preferred: an appliance announces a
  // peer's SNAT address with a higher one, as its backup.
  uint32_t metric = 0;
  // --always: announced whenever meshlbd serves (undrained), services or not (an SNAT
  // address has none).
  bool always = false;
};

// A route in the announce table.
struct AnnouncedRoute {
  friend bool operator==(const AnnouncedRoute&, const AnnouncedRoute&) = default;
  IpAddr prefix;
  uint8_t len = 32;
  uint32_t metric = 0;
  std::string str() const;  // "198.18.100.1/32", " metric N" when not 0
};

struct AnnounceModel {
  friend bool operator==(const AnnounceModel&, const AnnounceModel&) = default;
  std::vector<Announcement> prefixes;  // in the order added
  bool drained = false;
};

// What the daemon knows for `announce -L`: the prefixes in its routing table now, and
// the connections its workers still track.
struct AnnounceRuntime {
  std::vector<std::string> announced;  // "198.18.100.1/32"
  uint64_t connections = 0;
  bool ready = false;
  // Seconds the announcements are still held after start (a backup sync daemon receiving
  // its peers' connections); 0: not held.
  uint32_t held_s = 0;
};
using AnnounceRuntimeFn = std::function<AnnounceRuntime()>;

//   -a PREFIX [--metric N] [--always | -t|-u ADDR:PORT | -f MARK]...
//                                              announce PREFIX while a service is usable
//   -d PREFIX
//   --drain | --undrain                        withdraw everything (kept across restarts)
//   -L | -S
absl::StatusOr<std::string> runAnnounce(AnnounceModel& model, const ServiceModel& services,
                                        const std::vector<std::string>& args,
                                        const AnnounceRuntimeFn& runtime = {});
bool announceReadsOnly(const std::vector<std::string>& args);
std::vector<std::string> announceRules(const AnnounceModel& model);

// Why `a` is not to be announced now ("" when it is).
std::string notAnnounced(const AnnounceModel& model, const Announcement& a,
                         const ServiceModel& services);
// The prefixes to announce now.
std::vector<AnnouncedRoute> prefixesToAnnounce(const AnnounceModel& model,
                                               const ServiceModel& services);

// The kernel side: meshlbd's routes in its announce table.
class RouteAnnouncer {
 public:
  RouteAnnouncer() = default;
  RouteAnnouncer(const RouteAnnouncer&) = delete;
  RouteAnnouncer& operator=(const RouteAnnouncer&) = delete;
  ~RouteAnnouncer();

  absl::Status start(uint32_t table);
  // Makes the table's routes exactly `prefixes`, each through `ifindex` (a twin). A
  // twin made again (another ifindex) gets every route again.
  void sync(const std::vector<AnnouncedRoute>& prefixes, int ifindex);
  const std::vector<AnnouncedRoute>& announced() const { return announced_; }
  uint64_t changes() const { return changes_; }
  uint64_t failures() const { return failures_; }
  const std::string& lastError() const { return last_error_; }

 private:
  bool route(const AnnouncedRoute& p, int ifindex, bool add);
  nl_sock* sock_ = nullptr;
  uint32_t table_ = 0;
  int ifindex_ = 0;
  std::vector<AnnouncedRoute> announced_;
  uint64_t changes_ = 0, failures_ = 0;
  std::string last_error_;
};

}  // namespace meshlb
