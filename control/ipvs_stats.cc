#include "ipvs_stats.h"

namespace meshlb {

IpvsStats::IpvsStats(uint16_t workers) : rates_(BackendId::kSlots, Backing::kLazy) {
  for (uint16_t w = 0; w < workers; ++w) {
    conn_counts_.emplace_back(2 * FlowTable4::kCountSlots, Backing::kLazy);
    backend_stats_.emplace_back(BackendId::kSlots, Backing::kLazy);
  }
}

IpvsStats::Totals IpvsStats::raw(uint32_t slot) const {
  Totals t{};
  for (const auto& w : backend_stats_) {
    const BackendStats& b = w[slot];
    t[0] += b.conns.load(std::memory_order_relaxed);
    t[1] += b.inpkts.load(std::memory_order_relaxed);
    t[2] += b.outpkts.load(std::memory_order_relaxed);
    t[3] += b.inbytes.load(std::memory_order_relaxed);
    t[4] += b.outbytes.load(std::memory_order_relaxed);
  }
  return t;
}

DestCounters IpvsStats::counters(BackendId id) const {
  const uint32_t slot = id.slot();
  DestCounters c;
  for (const auto& w : conn_counts_) {
    c.active += w[2 * slot].load(std::memory_order_relaxed);
    c.inactive += w[2 * slot + 1].load(std::memory_order_relaxed);
  }
  const Totals t = raw(slot);
  const Rates& r = rates_[slot];
  c.conns = t[0] - r.zero[0];
  c.inpkts = t[1] - r.zero[1];
  c.outpkts = t[2] - r.zero[2];
  c.inbytes = t[3] - r.zero[3];
  c.outbytes = t[4] - r.zero[4];
  c.cps = r.est[0], c.inpps = r.est[1], c.outpps = r.est[2], c.inbps = r.est[3];
  c.outbps = r.est[4];
  return c;
}

void IpvsStats::zero(const std::vector<BackendId>& ids) {
  for (BackendId id : ids) rates_[id.slot()].zero = raw(id.slot());
}

void IpvsStats::estimate(const std::vector<BackendId>& ids, double seconds) {
  if (seconds <= 0) return;
  for (BackendId id : ids) {
    Rates& r = rates_[id.slot()];
    const Totals t = raw(id.slot());
    for (size_t i = 0; i < t.size(); ++i) {
      const auto rate = static_cast<int64_t>(static_cast<double>(t[i] - r.last[i]) / seconds);
      r.est[i] = static_cast<uint64_t>(static_cast<int64_t>(r.est[i]) +
                                       (rate - static_cast<int64_t>(r.est[i])) / 4);
      r.last[i] = t[i];
    }
  }
}

}  // namespace meshlb
