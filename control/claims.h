// One meshlbd per interface. A running meshlbd holds, for each interface it drives
// (its DPDK ports' kernel interfaces and its twins lbN), a listening abstract Unix
// socket named after it. Abstract names are scoped by network namespace, as
// interface names are, and the kernel releases them however the process ends, so a
// second meshlbd (any control socket, any EAL file prefix) is refused before it
// touches a port, and a crashed one leaves nothing to clean up.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace meshlb {

class InterfaceClaims {
 public:
  InterfaceClaims() = default;
  InterfaceClaims(const InterfaceClaims&) = delete;
  InterfaceClaims& operator=(const InterfaceClaims&) = delete;
  ~InterfaceClaims();

  // Claims `ifname` for this process; `role` names it in the error ("data port").
  // Fails, naming the holder's pid, when another process holds it.
  absl::Status claim(const std::string& ifname, const std::string& role);

 private:
  std::vector<int> fds_;
};

// The kernel interfaces EAL arguments name: the `iface=` of every --vdev
// (af_packet, af_xdp, pcap, tap), in order, with the vdev's name ("net_af_packet0").
struct VdevInterface {
  friend bool operator==(const VdevInterface&, const VdevInterface&) = default;
  std::string vdev;
  std::string iface;
};
std::vector<VdevInterface> vdevInterfaces(int argc, char** argv);

}  // namespace meshlb
