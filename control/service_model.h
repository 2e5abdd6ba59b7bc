// The service model: IPVS virtual services and their real servers, the one
// place every front end (ipvsadm parser, -R restore, state file, tests) changes
// configuration through. Control thread only.
#pragma once

#include <cstdint>
#include <map>
#include <tuple>
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
  uint32_t id = 0;    // stable while the real server exists: the dataplane's backend id,
                      // (generation << 16) | slot with slot in 1..65535 (backendSlot())
};

constexpr uint32_t kMaxServices = 65536;
constexpr uint32_t kMaxRealServers = 65535;  // live ones, over all services

// The per-backend counter index of a real-server id.
inline uint32_t backendSlot(uint32_t id) { return id & 0xffff; }

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
  uint32_t allocDestId();
  uint32_t reviveDestId(const ServiceKey& key, const RealServer& d);
  void retireDest(const ServiceKey& key, const RealServer& d);
  // Deleted real servers by (service, address, port), as IPVS keeps them in its
  // trash: re-adding one soon revives its id, so its connections (and their
  // ActiveConn/InActConn) are its own again, and -C then -R lists identically.
  std::map<std::tuple<ServiceKey, IpAddress, uint16_t>, uint32_t> trash_;
  std::vector<uint8_t> slot_generation_ = std::vector<uint8_t>(65536, 0);
  std::vector<bool> slot_used_ = std::vector<bool>(65536, false);
  uint32_t next_slot_hint_ = 1;
  uint32_t next_slot_ = 0;
};

}  // namespace meshlb
