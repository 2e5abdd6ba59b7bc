// Turns the control plane's models and the mirrored kernel state into the
// immutable Snapshot the workers read. Pure: testable without EAL.
#pragma once

#include <array>
#include <memory>
#include <vector>

#include "iptables.h"
#include "meshlb/snapshot.h"
#include "netlink_mirror.h"
#include "service_model.h"

namespace meshlb {

struct TwinPort {
  int ifindex = 0;  // of the kernel twin lbN
  std::array<uint8_t, 6> mac{};
};

// `previous` (may be null) lends its Maglev tables to services whose backends did
// not change.
// `nat`: iptables' rules (IPv4), `nat6`: ip6tables' (IPv6).
std::unique_ptr<Snapshot> buildSnapshot(const ServiceModel& services, const IptablesModel& nat,
                                        const IptablesModel& nat6, const KernelView& kernel,
                                        const std::vector<TwinPort>& ports, uint64_t generation,
                                        const Snapshot* previous = nullptr);

}  // namespace meshlb
