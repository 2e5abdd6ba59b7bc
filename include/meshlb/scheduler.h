// The scheduler registry: one declaration per IPVS scheduler, read by the control
// plane (is the name supported, what must be prepared when a service's backends
// change) and by the workers (the pick for a new connection). A new scheduler is
// one entry in dataplane/scheduler.cc and one table in tests/unit/scheduler_test.cc.
//
// Schedulers see a service's backends as their weights only (ServiceSched), so
// one pick serves every address family.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "meshlb/maglev.h"

namespace meshlb {

struct SchedulerDef;

// lblc and lblcr (ip_vs_lblc.c, ip_vs_lblcr.c): by destination address, the servers
// that served it. Shared by the workers (a destination's connections arrive on any
// of them) and kept while the service exists: kEntries entries by the destination's
// hash, direct-mapped (a destination whose entry another takes is scheduled afresh,
// as after the kernel's expiry), each behind its own spin lock, held for a lookup
// and its update.
struct LocalityTable {
  static constexpr uint32_t kEntries = 4096;
  static constexpr uint32_t kMaxSet = 4;  // lblcr: servers kept per destination
  // The kernel's lblc_expiration and lblcr_expiration (sysctls, 24 hours by default,
  // PickInput::expiration_s): an entry unused that long is gone; an lblcr set
  // unchanged that long loses its busiest.
  static constexpr uint32_t kExpirationS = 24 * 60 * 60;
  struct alignas(64) Entry {
    std::atomic_flag lock;
    bool used = false;
    uint8_t size = 0;
    uint32_t dst = 0;
    uint32_t slots[kMaxSet] = {};  // the servers' BackendId slots
    uint32_t lastuse_s = 0, lastmod_s = 0;
  };
  std::unique_ptr<Entry[]> entries = std::make_unique<Entry[]>(kEntries);
};

// ipvsadm -b: IPVS's scheduler flags (IP_VS_SVC_F_SCHED1..3), named per scheduler.
constexpr uint32_t kSchedFlag1 = 0x08, kSchedFlag2 = 0x10, kSchedFlag3 = 0x20;
constexpr uint32_t kSchedFallback = kSchedFlag1;  // sh-fallback, mh-fallback
constexpr uint32_t kSchedPort = kSchedFlag2;      // sh-port, mh-port

// What a scheduler reads of one service in the snapshot.
struct ServiceSched {
  uint32_t slot = 0;  // < kMaxServices, stable while the service exists: the workers'
                      // SchedState index
  const SchedulerDef* sched = nullptr;
  uint32_t sched_flags = 0;       // kSchedFlag*
  std::vector<uint32_t> weights;  // by backend index (IPVS weight; 0 = quiescent)
  std::vector<std::string> keys;  // by backend index: its stable key (backendKey())
  std::vector<uint32_t> slots;    // by backend index: its BackendId slot (connection counts)
  // By backend index, ipvsadm -x/-y (0: none); both empty when no server has one.
  std::vector<uint32_t> u_thresholds, l_thresholds;
  uint32_t max_weight = 0, weight_gcd = 1;
  // Changes whenever the servers or their weights change, or the slot gets another
  // service (the snapshot generation of the change): scheduler state from before it
  // is stale (IPVS's add_dest/del_dest/upd_dest hooks).
  uint64_t epoch = 0;
  // Prepared by the scheduler on the control thread (mh: the Maglev table, whose ids
  // are backend index + 1). Shared between snapshots while the backends are
  // unchanged: a neighbour or route change must not rebuild every Maglev table.
  std::shared_ptr<const MaglevTable> maglev;
  // sh and dh: the kernel's 256 buckets, each a backend index (kNoBackend: none).
  std::shared_ptr<const std::vector<uint32_t>> buckets;
  // lblc and lblcr: written by the workers (its entries' locks), kept across snapshots.
  std::shared_ptr<LocalityTable> locality;
};

// What a worker remembers per service between picks, as IPVS keeps it in the
// service: the last server used (ip_vs_rr, ip_vs_wrr) and wrr's current weight.
struct SchedState {
  static constexpr uint32_t kNone = ~0u;  // "before the first server"
  uint32_t last = kNone;
  int64_t cw = 0;
  uint64_t epoch = 0;  // the ServiceSched::epoch this state was kept for
};

// One new connection's inputs beyond the service.
struct PickInput {
  uint64_t client_hash = 0;  // mh: the client address hash (IPVS mh without mh-port)
  // sh and dh: the client's and the destination's address folded to 32 bits as IPVS
  // folds them (IPv4: the address in host order), and the client's port (host order).
  uint32_t src_fold = 0, dst_fold = 0;
  uint16_t src_port = 0;
  uint64_t random = 0;  // twos: a fresh random number for each pick
  uint32_t now_s = 0;   // lblc, lblcr: the worker's clock, in seconds
  // lblc, lblcr: the sysctl lblc_expiration or lblcr_expiration, in seconds.
  uint32_t expiration_s = LocalityTable::kExpirationS;
  // Every worker's per-backend connection counts (FlowTable::setConnCounts layout:
  // [2 * slot] active, [2 * slot + 1] inactive), this worker's included, for the
  // schedulers that declare needs_conn_counts; empty otherwise. A pick sums them, so
  // it sees the other workers' counts as of their last update (docs/ipvsadm.md,
  // "Schedulers": the bound of that approximation).
  std::span<const std::atomic<uint32_t>* const> conn_counts;
  // By BackendId slot, IPVS's IP_VS_DEST_F_OVERLOAD, shared by the workers: set at a
  // pick when a server with thresholds has u_threshold connections, cleared under
  // l_threshold (or 3/4 of u_threshold); null: no thresholds anywhere.
  std::atomic<uint8_t>* overload = nullptr;
  uint32_t active(uint32_t slot) const {
    uint32_t n = 0;
    for (const auto* c : conn_counts) n += c[2 * slot].load(std::memory_order_relaxed);
    return n;
  }
  uint32_t inactive(uint32_t slot) const {
    uint32_t n = 0;
    for (const auto* c : conn_counts) n += c[2 * slot + 1].load(std::memory_order_relaxed);
    return n;
  }
};

// Sentinel for "no backend" from a pick.
constexpr uint32_t kNoBackend = ~0u;

struct SchedulerDef {
  const char* name;
  // Control thread: what the pick needs beyond the weights (null: nothing), given
  // the service as the previous snapshot had it (null if none), whose prepared
  // data may be reused when its keys and weights are the same.
  void (*prepare)(ServiceSched& s, const ServiceSched* previous);
  // Worker: the index of the backend for a new connection, or kNoBackend.
  uint32_t (*pick)(const ServiceSched& s, SchedState& st, const PickInput& in);
  // Needs PickInput::conn_counts (lc, wlc and the like).
  bool needs_conn_counts;
};

// Every scheduler meshlb has, in the order `ipvsadm -h` would list them.
std::span<const SchedulerDef> schedulers();
// nullptr for an unknown or unsupported name.
const SchedulerDef* findScheduler(std::string_view name);
// "rr, wrr, ...": for error messages.
std::string schedulerNames();
// What ipvsadm uses when -A names no scheduler.
constexpr char kDefaultScheduler[] = "wlc";

}  // namespace meshlb
