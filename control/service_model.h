// The service model: IPVS virtual services and their real servers, the one
// place every front end (ipvsadm parser, -R restore, state file, tests) changes
// configuration through. Control thread only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "meshlb/types.h"

namespace meshlb {

enum class ForwardMethod : uint8_t { kMasq, kRoute, kTunnel };

struct RealServer {
  friend bool operator==(const RealServer&, const RealServer&) = default;
  IpAddr addr;
  uint16_t port = 0;  // host order; 0 keeps the packet's destination port
  uint32_t weight = 1;
  ForwardMethod fwd = ForwardMethod::kMasq;
  BackendId id;  // stable while the real server exists: the dataplane's backend id
};

constexpr uint32_t kMaxRealServers = BackendId::kMaxLive;  // live ones, over all services

struct Service {
  friend bool operator==(const Service&, const Service&) = default;
  ServiceKey key;
  uint32_t slot = 0;              // stable while the service exists: workers' scheduler state index
  std::string scheduler;          // a name in the scheduler registry (meshlb/scheduler.h)
  std::vector<RealServer> dests;  // in insertion order; listings sort
  // Changes whenever anything above does (and only then): the snapshot builder
  // reuses what it built for an unchanged service instead of building it again.
  uint64_t version = 0;
};

struct IpvsTimeouts {
  friend bool operator==(const IpvsTimeouts&, const IpvsTimeouts&) = default;
  uint32_t tcp = 900, tcpfin = 120, udp = 300;  // seconds, ipvsadm --set
};

class ServiceModel {
 public:
  static bool schedulerSupported(const std::string& name);

  absl::Status addService(const ServiceKey& key, const std::string& scheduler);
  absl::Status editService(const ServiceKey& key, const std::string& scheduler);
  absl::Status deleteService(const ServiceKey& key);
  void clear();
  absl::Status addDest(const ServiceKey& key, RealServer dest);
  absl::Status editDest(const ServiceKey& key, const RealServer& dest);
  absl::Status deleteDest(const ServiceKey& key, const IpAddr& addr, uint16_t port);
  void setTimeouts(const IpvsTimeouts& t) { timeouts_ = t; }

  const std::map<ServiceKey, Service>& services() const { return services_; }
  // The same configuration: services, real servers (ids included) and timeouts.
  bool sameConfig(const ServiceModel& o) const {
    return services_ == o.services_ && timeouts_ == o.timeouts_;
  }
  const IpvsTimeouts& timeouts() const { return timeouts_; }

 private:
  std::map<ServiceKey, Service> services_;
  IpvsTimeouts timeouts_;
  BackendId allocDestId();
  BackendId reviveDestId(const ServiceKey& key, const RealServer& d);
  void retireDest(const ServiceKey& key, const RealServer& d);
  // Deleted real servers by (service, address, port), as IPVS keeps them in its
  // trash: re-adding one soon revives its id, so its connections (and their
  // ActiveConn/InActConn) are its own again, and -C then -R lists identically.
  std::map<std::tuple<ServiceKey, IpAddr, uint16_t>, BackendId> trash_;
  std::vector<uint8_t> slot_generation_ = std::vector<uint8_t>(BackendId::kSlots, 0);
  std::vector<bool> slot_used_ = std::vector<bool>(BackendId::kSlots, false);
  uint32_t next_slot_hint_ = 1;
  uint32_t next_slot_ = 0;
  uint64_t next_version_ = 0;
  // Which service slots are taken: a new service's slot is found without walking
  // the services (that walk made -R of N services take N^2).
  std::vector<bool> service_slot_used_ = std::vector<bool>(kMaxServices, false);
};

}  // namespace meshlb
