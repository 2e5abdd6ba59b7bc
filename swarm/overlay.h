// The overlay half of meshlb-swarm, programmed over rtnetlink (libnl-3) exactly as
// Docker's overlay driver programs a node: a vxlan device per network, and per
// remote peer a permanent neighbour (IP -> MAC) and an FDB entry (MAC -> VTEP).
// On the appliance the kernel devices are twins that meshlbd mirrors; on a node
// the same entries go into the network's namespace so the node can answer the
// appliance (Docker's devices run in proxy mode and never pass ARP).
#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "meshlb/types.h"

struct nl_sock;

namespace meshlb::swarm {

struct VxlanSpec {
  std::string name;
  uint32_t vni = 0;
  uint16_t port = 4789;
  IpAddr local;  // the appliance's VTEP (underlay) address
  IpAddr addr;   // its address on the overlay
  uint8_t prefix = 24;
  uint32_t mtu = 1450;
};

class Netlink {
 public:
  // A socket in the current network namespace, or in the one at netns_path.
  static absl::StatusOr<std::unique_ptr<Netlink>> open(const std::string& netns_path = "");
  ~Netlink();

  // Creates the device (or recreates one that differs in VNI, port or VTEP), with
  // Docker's MAC for its address, the MTU, the address, and up. Returns its ifindex.
  // `changes` counts what was done (0 when already right).
  absl::StatusOr<int> ensureVxlan(const VxlanSpec& spec, int* changes);
  // The vxlan device carrying `vni`, or 0.
  absl::StatusOr<int> findVxlan(uint32_t vni);
  absl::Status removeLink(const std::string& name);

  // Programs `peers` (overlay IP -> node VTEP; MAC from the IP as Docker derives it)
  // on the device; a peer whose VTEP is unset keeps whatever it has. With `exact`,
  // entries for other peers on this device are removed. Returns the changes made.
  absl::StatusOr<int> syncPeers(int ifindex, const std::map<IpAddr, IpAddr>& peers, bool exact);

 private:
  explicit Netlink(nl_sock* s) : sock_(s) {}
  nl_sock* sock_;
};

}  // namespace meshlb::swarm
