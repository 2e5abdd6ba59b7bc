// What meshlb-swarm reads from a Swarm manager, parsed from the Engine API's JSON:
// the network the appliance serves through, the nodes' underlay addresses, and per
// service its published ports and running tasks. Everything the appliance cannot
// honour is listed in `refusals` with the reason, never silently skipped.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "meshlb/types.h"

namespace meshlb::swarm {

enum class Proto : uint8_t { kTcp, kUdp };
const char* protoName(Proto p);

struct Prefix {
  IpAddr addr;
  uint8_t len = 0;
  bool contains(const IpAddr& a) const;
  std::string str() const;
  static absl::StatusOr<Prefix> parse(absl::string_view text);
};

struct Network {
  std::string id, name;
  uint32_t vni = 0;
  Prefix subnet;
  std::optional<Prefix> range;  // where Docker allocates task addresses (--ip-range)
  uint32_t mtu = 1450;
  bool encrypted = false;
};

struct Task {
  std::string id;
  IpAddr addr;          // on the served network
  IpAddr node;          // the node's underlay address (its VTEP)
  int64_t created = 0;  // ns since the epoch
  friend bool operator==(const Task&, const Task&) = default;
};

struct PublishedPort {
  Proto proto = Proto::kTcp;
  uint16_t published = 0;
  uint16_t target = 0;
  // A port the service's latest update added is served only by tasks created since
  // the update began: Docker programs a task's sandbox (its firewall accepts the
  // target port) when it creates the task, so older ones would drop the connection.
  int64_t tasks_since = 0;
};

// Docker's timestamps (RFC 3339, nanoseconds, UTC) as ns since the epoch; 0 if malformed.
int64_t parseTime(absl::string_view text);

struct Service {
  std::string id, name;
  std::vector<PublishedPort> ports;
  std::vector<Task> tasks;  // running, on a ready node, addressed on the network
  // Tasks Swarm is stopping that still run (desired state no longer running): they
  // keep their connections until Docker stops them.
  std::vector<Task> leaving;
};

struct Cluster {
  uint16_t data_port = 4789;  // the swarm's VXLAN UDP port (--data-path-port)
  Network network;
  std::vector<Service> services;
  std::vector<std::string> refusals;
};

// The JSON bodies of GET /swarm, /networks/NAME, /nodes, /services and /tasks.
struct ApiDocs {
  std::string swarm, network, nodes, services, tasks;
};

// An error when a document is malformed or the network cannot be served at all
// (not an overlay, encrypted, no IPv4 subnet): then nothing may be programmed.
absl::StatusOr<Cluster> parseCluster(const ApiDocs& docs);

// Docker's overlay MAC for an IPv4 address: 02:42 then the address.
std::array<uint8_t, 6> dockerMac(const IpAddr& a);

}  // namespace meshlb::swarm
