#include "publisher.h"

namespace meshlb {

SnapshotPublisher::~SnapshotPublisher() {
  for (auto& [token, s] : retired_) delete s;
  delete slot_.exchange(nullptr);
}

void SnapshotPublisher::publish(std::unique_ptr<Snapshot> s) {
  const Snapshot* old = slot_.exchange(s.release(), std::memory_order_acq_rel);
  ++published_;
  if (old) retired_.emplace_back(rte_rcu_qsbr_start(qsbr_), old);
}

void SnapshotPublisher::reclaim(bool wait) {
  while (!retired_.empty() && rte_rcu_qsbr_check(qsbr_, retired_.front().first, wait) == 1) {
    delete retired_.front().second;
    retired_.pop_front();
  }
}

}  // namespace meshlb
