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
  // The servers' overload flags (thresholds), shared by every worker.
  std::atomic<uint8_t>* overload() { return overload_.get(); }

  // Everything ipvsadm shows of a real server. A server new in its slot (another
  // generation than the slot last had) starts from zero; a revived one (the same id,
  // as IPVS takes a server back from its trash) keeps its counts.
  DestCounters counters(BackendId id);
  // ipvsadm -Z: from now on --stats counts from the present totals, and the rates
  // start again, for a service (by slot) and its real servers.
  void zero(uint32_t service, const std::vector<BackendId>& ids);

  // A service's own counters, as IPVS keeps them apart from its servers': the counts
  // of each of its real servers while it had them, a deleted server's included, so
  // they never go back. The workers count per real server; attribute() adds what a
  // service's servers counted since last time to it (the listing does, the estimator
  // every period, and the control thread for servers a command removes).
  void attribute(uint32_t service, const std::vector<BackendId>& ids);
  // conns, inpkts, outpkts, inbytes, outbytes of a service since it began or its -Z.
  DestCounters serviceCounters(uint32_t service) const;
  // A service slot taken by a new service: its counts start from zero.
  void newService(uint32_t service);
  // For metrics, which never go back: a real server's counts since it began in its
  // slot (-Z does not touch them); a service's own since it began; a service gone
  // (deleted, or its slot another's) adds what it counted to retired().
  DestCounters totals(BackendId id);
  DestCounters serviceTotals(uint32_t service) const;
  void retire(uint32_t service);
  const DestCounters& retired() const { return retired_; }
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
    Totals start{};                // raw() when the server began in the slot
    Totals attributed{};           // what attribute() has given a service of raw()
    uint8_t generation = 0;        // of the id last seen in the slot, + 1 (0: none yet)
  };
  static uint64_t rateOf(const Rates& r, size_t i);
  // The slot's record for `id`, started afresh when `id` is new in its slot.
  Rates& ratesOf(BackendId id);
  struct ServiceTotals {
    Totals sum{}, zero{};
  };
  // By BackendId slot: 1M of each, lazily backed (a page costs memory once a real
  // server in it has counted something), so memory follows the servers in use.
  std::vector<HugeArray<std::atomic<uint32_t>>> conn_counts_;  // per worker
  std::vector<HugeArray<BackendStats>> backend_stats_;         // per worker
  HugeArray<Rates> rates_;
  HugeArray<ServiceTotals> services_;  // by service slot
  HugeArray<std::atomic<uint8_t>> overload_;
  DestCounters retired_;
};

}  // namespace meshlb
