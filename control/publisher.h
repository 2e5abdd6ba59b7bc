// Snapshot publication: one atomic pointer swap for the workers, and the old
// snapshot freed only once every worker has passed a quiescent state after the
// swap (rte_rcu_qsbr), never while one may still read it. Needs no EAL: the QSBR
// variable is plain memory, so the unit test drives it with registered threads.
#pragma once

#include <rte_rcu_qsbr.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <utility>

#include "meshlb/snapshot.h"

namespace meshlb {

class SnapshotPublisher {
 public:
  SnapshotPublisher(std::atomic<const Snapshot*>& slot, rte_rcu_qsbr* qsbr)
      : slot_(slot), qsbr_(qsbr) {}
  ~SnapshotPublisher();
  SnapshotPublisher(const SnapshotPublisher&) = delete;
  SnapshotPublisher& operator=(const SnapshotPublisher&) = delete;

  const Snapshot* current() const { return slot_.load(std::memory_order_acquire); }
  // Makes `s` the workers' snapshot; the one it replaces waits for reclaim().
  void publish(std::unique_ptr<Snapshot> s);
  // Frees the retired snapshots every worker has moved past; with `wait`, waits
  // for them (at shutdown, once the workers are offline).
  void reclaim(bool wait);
  size_t retired() const { return retired_.size(); }
  uint64_t published() const { return published_; }

 private:
  std::atomic<const Snapshot*>& slot_;
  rte_rcu_qsbr* qsbr_;
  std::deque<std::pair<uint64_t, const Snapshot*>> retired_;  // (QSBR token, snapshot)
  uint64_t published_ = 0;
};

}  // namespace meshlb
