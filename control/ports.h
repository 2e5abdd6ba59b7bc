// The DPDK side of the daemon that needs EAL: the mbuf pool, the data ports and
// their kernel twins (net_tap lbN, same MAC), the rings between workers, the
// control thread and the twins, and the control thread's twin forwarding.
#pragma once

#include <rte_mempool.h>
#include <rte_ring.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "snapshot_builder.h"
#include "worker.h"

namespace meshlb {

// Counters of the twins' packet path (written by the twin thread, read by stats).
struct TwinCounters {
  std::atomic<uint64_t> from_kernel_ring_full{0};  // kernel -> port, dropped: ring to worker 0 full
  std::atomic<uint64_t> twin_tx_full{0};  // port -> kernel, dropped: the twin's TX queue was full
  std::atomic<uint64_t> twins_recreated{0};  // twins deleted under meshlbd and made again
};

class Ports {
 public:
  // Brings up every probed port with one RX and TX queue per worker, its twin,
  // and the rings (all recorded in `dp`). Fails with the reason on the first error.
  absl::Status start(Dataplane& dp);
  // Kernel twins: what the kernel sends on lbN leaves through port N (via worker
  // 0's TX queue), and what workers hand to the kernel enters lbN. On a thread of
  // its own, so that the twins' traffic (ARP, ping, BGP, SSH to the appliance) never
  // waits on a command the control thread runs; it sleeps 100 us when idle.
  void startTwinThread(Dataplane& dp);
  void stop(const Dataplane& dp);
  // The twins whose interface is gone (`ip link del lbN`) or is another one now.
  std::vector<uint16_t> missingTwins() const;
  // Makes twin `i` again (a new interface, without the old one's addresses); its
  // traffic keeps flowing through the same rings.
  absl::Status recreateTwin(uint16_t i);  // pauses the twin thread meanwhile

  const std::vector<TwinPort>& twins() const { return twins_; }
  const TwinCounters& counters() const { return cc_; }
  std::string portName(uint16_t port_id) const;

 private:
  absl::Status makeTwin(uint16_t i);
  bool forwardTwins(Dataplane& dp);
  void twinLoop(Dataplane& dp);

  rte_mempool* pool_ = nullptr;
  std::vector<uint16_t> twin_ids_;
  std::vector<TwinPort> twins_;
  TwinCounters cc_;
  std::thread twin_thread_;
  std::atomic<bool> twin_run_{false};
  // The control thread asks (pause_) and the twin thread acknowledges (paused_)
  // before a twin port is stopped and made again.
  std::atomic<bool> pause_{false}, paused_{false};
};

}  // namespace meshlb
