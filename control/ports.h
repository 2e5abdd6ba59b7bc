// The DPDK side of the daemon that needs EAL: the mbuf pool, the data ports and
// their kernel twins (net_tap lbN, same MAC), the rings between workers, the
// control thread and the twins, and the control thread's twin forwarding.
#pragma once

#include <rte_mempool.h>
#include <rte_ring.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "snapshot_builder.h"
#include "worker.h"

namespace meshlb {

// Counters of the control thread's own packet path.
struct TwinCounters {
  uint64_t from_kernel_ring_full = 0;  // kernel -> port, dropped: the ring to worker 0 was full
  uint64_t twin_tx_full = 0;           // port -> kernel, dropped: the twin's TX queue was full
  uint64_t twins_recreated = 0;        // twins deleted under meshlbd (ip link del) and made again
};

class Ports {
 public:
  // Brings up every probed port with one RX and TX queue per worker, its twin,
  // and the rings (all recorded in `dp`). Fails with the reason on the first error.
  absl::Status start(Dataplane& dp);
  // Kernel twins: what the kernel sends on lbN leaves through port N (via worker
  // 0's TX queue), and what workers hand to the kernel enters lbN. True when any
  // packet moved.
  bool forwardTwins(Dataplane& dp);
  void stop(const Dataplane& dp);
  // The twins whose interface is gone (`ip link del lbN`) or is another one now.
  std::vector<uint16_t> missingTwins() const;
  // Makes twin `i` again (a new interface, without the old one's addresses); its
  // traffic keeps flowing through the same rings.
  absl::Status recreateTwin(uint16_t i);

  const std::vector<TwinPort>& twins() const { return twins_; }
  const TwinCounters& counters() const { return cc_; }
  std::string portName(uint16_t port_id) const;

 private:
  absl::Status makeTwin(uint16_t i);

  rte_mempool* pool_ = nullptr;
  std::vector<uint16_t> twin_ids_;
  std::vector<TwinPort> twins_;
  TwinCounters cc_;
};

}  // namespace meshlb
