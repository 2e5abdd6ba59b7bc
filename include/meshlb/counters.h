// Per-worker counters, declared once. Every outcome and every drop reason the
// worker can reach is here (the parser's drop reasons separately, by ParseResult),
// so `meshlbctl stats` shows each by name.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "meshlb/parse.h"

namespace meshlb {

// X(field, label, is_drop)
#define MESHLB_WORKER_COUNTERS(X)                                   \
  X(rx_packets, "rx_packets", false)                                \
  X(tx_packets, "tx_packets", false)                                \
  X(to_kernel, "to_kernel", false)                                  \
  X(from_kernel, "from_kernel", false)                              \
  X(handoff_out, "handoff_out", false)                              \
  X(handoff_in, "handoff_in", false)                                \
  X(new_connections, "new_connections", false)                      \
  X(nat_original, "nat_original", false)                            \
  X(nat_reply, "nat_reply", false)                                  \
  X(icmp_translated, "icmp_translated", false)                      \
  X(neigh_unresolved_to_kernel, "neigh_unresolved_to_kernel", false) \
  X(drop_parse, "drop_parse", true)                                 \
  X(drop_no_backend, "drop_no_backend", true)                       \
  X(drop_tcp_not_syn, "drop_tcp_not_syn", true)                     \
  X(drop_fragment, "drop_fragment", true)                           \
  X(drop_snat_ports_exhausted, "drop_snat_ports_exhausted", true)   \
  X(drop_nodest_expired, "drop_nodest_expired", true)               \
  X(drop_no_route, "drop_no_route", true)                           \
  X(drop_tx_full, "drop_tx_full", true)                             \
  X(drop_handoff_full, "drop_handoff_full", true)                   \
  X(drop_kernel_ring_full, "drop_kernel_ring_full", true)           \
  X(drop_ttl_exceeded, "drop_ttl_exceeded", true)

// Written by one worker, read by the control thread: relaxed atomics, no locks.
struct alignas(64) WorkerCounters {
#define MESHLB_X(field, label, drop) std::atomic<uint64_t> field{0};
  MESHLB_WORKER_COUNTERS(MESHLB_X)
#undef MESHLB_X
  std::array<std::atomic<uint64_t>, static_cast<size_t>(ParseResult::kCount)> parse{};
  // Flow-table counters, copied from the worker's table once per loop.
  std::atomic<uint64_t> flows{0}, flows_expired{0}, evicted_embryonic{0}, evicted_closing{0},
      evicted_established{0}, reply_key_in_use{0};
};

inline void bump(std::atomic<uint64_t>& c, uint64_t n = 1) {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

}  // namespace meshlb
