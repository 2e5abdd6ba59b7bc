// What meshlbd sets up on the host by itself, so that an operator configures only
// addresses, routes and services: the kernel kept off the data ports it drives, the
// per-interface sysctls of the twins it creates, next hops resolved ahead of the
// first packet (managed neighbours), and one line each for what the host lacks and
// meshlbd must not change itself.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "meshlb/types.h"

struct nl_sock;

namespace meshlb {

// A data port's kernel interface (af_packet, af_xdp): the kernel must not take part
// in its traffic. IPv6 is turned off on it (no router solicitations, DAD or link-local
// address of the kernel's on the wire), and for af_packet, which only copies frames,
// a tc ingress drop (clsact + a cls_bpf program) keeps the kernel's stack from answering and
// resetting the connections meshlbd balances (af_packet sees frames before it).
// The interface is brought up; one with IPv4 addresses is refused, naming the fix. restore() (a
// clean stop) removes the drop (IPv6 stays off: a data port carries none of the kernel's); after a
// crash the next start replaces it.
class PortGuard {
 public:
  PortGuard() = default;
  PortGuard(const PortGuard&) = delete;
  PortGuard& operator=(const PortGuard&) = delete;
  ~PortGuard();

  absl::Status guard(const std::string& iface, bool drop_ingress);
  void restore();

 private:
  struct Guarded {
    std::string iface;
    int ifindex;
    bool dropped;
  };
  nl_sock* sock_ = nullptr;
  std::vector<Guarded> guarded_;
};

// The per-interface sysctls of a twin meshlbd created: the kernel forwards what the
// workers hand it (a next hop not resolved yet) whatever net.ipv4.ip_forward says
// (forwarding is decided by the incoming interface's own setting), takes packets
// from the appliance's own SNAT address (accept_local), does not filter them by
// reverse path (rp_filter; the effective value is the larger of this and
// conf.all's) and sends no redirects.
absl::Status configureTwin(const std::string& twin);

// One line each (without "meshlbd: "), empty when the host has all it needs:
// namespace-wide settings meshlbd leaves alone, hugepages, an IOMMU for PCI ports.
// `sys` and `proc` are the roots of /sys and /proc (tests give others).
struct HostFacts {
  bool hugepages = true;  // EAL runs on hugepages
  bool pci_ports = false;
};
std::vector<std::string> hostLacks(const HostFacts& facts, const std::string& proc = "/proc",
                                   const std::string& sys = "/sys");

// Reads and writes /proc/sys values ("net/ipv4/conf/lb0/rp_filter"); read gives ""
// when the file cannot be read.
std::string readSysctl(const std::string& name, const std::string& proc = "/proc");
absl::Status writeSysctl(const std::string& name, const std::string& value);

// Next hops resolved before the first packet needs them: the kernel is asked for a
// managed neighbour (`ip neigh add ADDR dev lbN managed`, Linux 5.16+), which it
// resolves at once and keeps resolved; the netlink mirror then carries it to the
// workers. Asked for every real server's, route gateway's and VTEP's next hop on a
// twin, and for each next hop a worker found unresolved; each at most once per
// kRetry.
class NeighbourResolver {
 public:
  static constexpr auto kRetry = std::chrono::seconds(5);
  NeighbourResolver() = default;
  NeighbourResolver(const NeighbourResolver&) = delete;
  NeighbourResolver& operator=(const NeighbourResolver&) = delete;
  ~NeighbourResolver();

  absl::Status start();
  void resolve(int ifindex, const IpAddr& nexthop);
  uint64_t asked() const { return asked_; }
  uint64_t failed() const { return failed_; }
  const std::string& lastError() const { return last_error_; }

 private:
  nl_sock* sock_ = nullptr;
  absl::flat_hash_map<std::string, std::chrono::steady_clock::time_point> last_;
  uint64_t asked_ = 0, failed_ = 0;
  std::string last_error_;
};

}  // namespace meshlb
