// The service model: IPVS virtual services and their real servers, the one
// place every front end (ipvsadm parser, -R restore, state file, tests) changes
// configuration through. Control thread only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace meshlb {

struct IpAddress {
  int af = 0;  // AF_INET or AF_INET6
  uint8_t b[16] = {};
  static absl::StatusOr<IpAddress> parse(const std::string& text);
  std::string str() const;
  friend auto operator<=>(const IpAddress&, const IpAddress&) = default;
};

// What a virtual service is keyed by: a firewall mark, or protocol + address + port.
struct ServiceKey {
  uint32_t fwmark = 0;  // non-zero: fwmark service (address and port unused)
  uint8_t protocol = 0; // 6 (TCP) or 17 (UDP) for address services
  IpAddress addr;
  uint16_t port = 0;    // host order
  friend auto operator<=>(const ServiceKey&, const ServiceKey&) = default;
};

enum class ForwardMethod : uint8_t { kMasq, kRoute, kTunnel };

struct RealServer {
  IpAddress addr;
  uint16_t port = 0;  // host order; 0 keeps the packet's destination port
  uint32_t weight = 1;
  ForwardMethod fwd = ForwardMethod::kMasq;
  uint32_t id = 0;    // stable while the real server exists: the dataplane's backend id
};

constexpr uint32_t kMaxServices = 65536;

struct Service {
  ServiceKey key;
  uint32_t slot = 0;      // stable while the service exists: workers' scheduler state index
  std::string scheduler;  // rr, wrr, mh
  std::vector<RealServer> dests;  // in insertion order; listings sort
};

struct IpvsTimeouts {
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
  absl::Status deleteDest(const ServiceKey& key, const IpAddress& addr, uint16_t port);
  void setTimeouts(const IpvsTimeouts& t) { timeouts_ = t; }

  const std::map<ServiceKey, Service>& services() const { return services_; }
  const IpvsTimeouts& timeouts() const { return timeouts_; }

 private:
  std::map<ServiceKey, Service> services_;
  IpvsTimeouts timeouts_;
  uint32_t next_dest_id_ = 1;
  uint32_t next_slot_ = 0;
};

}  // namespace meshlb
