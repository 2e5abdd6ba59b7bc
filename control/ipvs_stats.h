// IPVS's statistics from the workers' per-backend counters: ipvsadm's connection
// counts, --stats (summed over workers, less what -Z set aside) and --rate (the
// kernel's estimator). Control thread only; pure, so tested without EAL.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "ipvsadm.h"
#include "meshlb/huge_array.h"
#include "meshlb/packet_core.h"
#include "meshlb/types.h"

namespace meshlb {

class IpvsStats {
 public:
  // Allocates each worker's per-backend arrays (the workers write them).
  explicit IpvsStats(uint16_t workers);

  std::atomic<uint32_t>* connCounts(uint16_t worker) { return conn_counts_[worker].get(); }
  BackendStats* backendStats(uint16_t worker) { return backend_stats_[worker].get(); }

  // Everything ipvsadm shows of a real server.
  DestCounters counters(BackendId id) const;
  // ipvsadm -Z: from now on --stats counts from the present totals.
  void zero(const std::vector<BackendId>& ids);
  // IPVS's rate estimator, run every kEstimatePeriodS seconds (seconds is the
  // time since the last run): per-second rates over the interval, smoothed as the
  // kernel does (new = old + (rate - old) / 4).
  static constexpr int kEstimatePeriodS = 2;
  void estimate(const std::vector<BackendId>& ids, double seconds);

 private:
  // conns, inpkts, outpkts, inbytes, outbytes summed over the workers.
  using Totals = std::array<uint64_t, 5>;
  Totals raw(uint32_t slot) const;
  struct Rates {
    Totals last{}, est{}, zero{};  // est: fixed point (IpvsStats::estimate)
  };
  static uint64_t rateOf(const Rates& r, size_t i);
  // By BackendId slot: 1M of each, lazily backed (a page costs memory once a real
  // server in it has counted something), so memory follows the servers in use.
  std::vector<HugeArray<std::atomic<uint32_t>>> conn_counts_;  // per worker
  std::vector<HugeArray<BackendStats>> backend_stats_;         // per worker
  HugeArray<Rates> rates_;
};

}  // namespace meshlb
