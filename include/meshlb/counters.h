// Per-worker counters, declared once. Every outcome and every drop reason the
// worker can reach is here (the parser's drop reasons by ParseResult, the flow
// table's by MESHLB_FLOW_TABLE_COUNTERS), and forEachCounter walks them all, so
// `meshlbctl stats` (text and JSON) shows each by name from these lists alone.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "meshlb/flow_table.h"
#include "meshlb/parse.h"

namespace meshlb {

// X(field): what happened to packets (label = field name).
#define MESHLB_WORKER_EVENTS(X) \
  X(rx_packets)                 \
  X(tx_packets)                 \
  X(to_kernel)                  \
  X(from_kernel)                \
  X(handoff_out)                \
  X(handoff_in)                 \
  X(new_connections)            \
  X(nat_original)               \
  X(nat_reply)                  \
  X(icmp_translated)            \
  X(routed)                     \
  X(vxlan_encap)                \
  X(vxlan_decap)                \
  X(icmp_too_big_sent)          \
  X(neigh_unresolved_to_kernel) \
  X(tunnel_encap)               \
  X(icmp_port_unreach_sent)     \
  X(icmp_scheduled)             \
  X(conn_reused)                \
  X(persist_reused)             \
  X(sync_queued)                \
  X(sync_queue_full)            \
  X(sync_installed)             \
  X(sync_updated)               \
  X(sync_replaced)              \
  X(sync_ignored)               \
  X(sync_install_failed)

// X(enumerator, label): why a packet was dropped.
#define MESHLB_DROP_REASONS(X)                        \
  X(kParse, "drop_parse")                             \
  X(kNoBackend, "drop_no_backend")                    \
  X(kTcpNotSyn, "drop_tcp_not_syn")                   \
  X(kFragment, "drop_fragment")                       \
  X(kSnatPortsExhausted, "drop_snat_ports_exhausted") \
  X(kNodestExpired, "drop_nodest_expired")            \
  X(kNoRoute, "drop_no_route")                        \
  X(kTxFull, "drop_tx_full")                          \
  X(kHandoffFull, "drop_handoff_full")                \
  X(kKernelRingFull, "drop_kernel_ring_full")         \
  X(kTtlExceeded, "drop_ttl_exceeded")                \
  X(kOverlayUnresolved, "drop_overlay_unresolved")    \
  X(kOverlayNoFdb, "drop_overlay_no_fdb")             \
  X(kVxlanUnknownVni, "drop_vxlan_unknown_vni")       \
  X(kNoHeadroom, "drop_no_headroom")                  \
  X(kTooBigNoDf, "drop_too_big_no_df")                \
  X(kNodest, "drop_nodest")                           \
  X(kTunnelNoSource, "drop_tunnel_no_source")         \
  X(kMasqNoConn, "drop_masq_no_conn")                 \
  X(kServiceNotLocal, "drop_service_not_local")

enum class Drop : uint8_t {
#define MESHLB_X(name, label) name,
  MESHLB_DROP_REASONS(MESHLB_X)
#undef MESHLB_X
      kCount
};
inline const char* dropName(Drop d) {
  static constexpr const char* kNames[] = {
#define MESHLB_X(name, label) label,
      MESHLB_DROP_REASONS(MESHLB_X)
#undef MESHLB_X
  };
  return kNames[static_cast<size_t>(d)];
}
// "parse_" and the parser's label: the stats name of a parse drop reason.
inline const char* parseCounterName(ParseResult r) {
  static constexpr const char* kNames[] = {
#define MESHLB_X(name, label) "parse_" label,
      MESHLB_PARSE_RESULTS(MESHLB_X)
#undef MESHLB_X
  };
  return kNames[static_cast<size_t>(r)];
}

// Written by one worker, read by the control thread: relaxed atomics, no locks.
struct alignas(64) WorkerCounters {
#define MESHLB_X(field) std::atomic<uint64_t> field{0};
  MESHLB_WORKER_EVENTS(MESHLB_X)
#undef MESHLB_X
  std::array<std::atomic<uint64_t>, static_cast<size_t>(Drop::kCount)> drops{};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(ParseResult::kCount)> parse{};
  // The flow table's, copied from the worker's table once per loop; flows is a gauge.
  std::atomic<uint64_t> flows{0};
#define MESHLB_X(field, label) std::atomic<uint64_t> table_##field{0};
  MESHLB_FLOW_TABLE_COUNTERS(MESHLB_X)
#undef MESHLB_X

  // The last next hop found unresolved ((port + 1) << 32 | its IPv4 address, network
  // order), taken (exchanged for 0) by the control thread, which has the kernel
  // resolve it. Not a counter.
  std::atomic<uint64_t> unresolved_nexthop{0};
  // The same for IPv6, under a sequence (odd while the worker writes it; the control
  // thread takes a new, even one whose two reads agree).
  struct Unresolved6 {
    std::atomic<uint32_t> seq{0}, port{0};
    std::atomic<uint64_t> addr[2]{};
  } unresolved_nexthop6;

  std::atomic<uint64_t>& drop(Drop d) { return drops[static_cast<size_t>(d)]; }
  const std::atomic<uint64_t>& drop(Drop d) const { return drops[static_cast<size_t>(d)]; }
};

inline void bump(std::atomic<uint64_t>& c, uint64_t n = 1) {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

// Copies a flow table's counters (and its size) into the worker's.
inline void publishTableCounters(WorkerCounters& c, const FlowTableCounters& t, uint32_t flows) {
  c.flows.store(flows, std::memory_order_relaxed);
#define MESHLB_X(field, label) c.table_##field.store(t.field, std::memory_order_relaxed);
  MESHLB_FLOW_TABLE_COUNTERS(MESHLB_X)
#undef MESHLB_X
}

// Calls f(label, value) for every counter of a worker, in the order stats lists
// them: events, drops, the flow table's, then the parser's drop reasons.
template <class F>
void forEachCounter(const WorkerCounters& c, F&& f) {
  const auto v = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
#define MESHLB_X(field) f(#field, v(c.field));
  MESHLB_WORKER_EVENTS(MESHLB_X)
#undef MESHLB_X
  for (size_t d = 0; d < static_cast<size_t>(Drop::kCount); ++d) {
    f(dropName(static_cast<Drop>(d)), v(c.drops[d]));
  }
  f("flows", v(c.flows));
#define MESHLB_X(field, label) f(label, v(c.table_##field));
  MESHLB_FLOW_TABLE_COUNTERS(MESHLB_X)
#undef MESHLB_X
  // kOk and kNotIp are not drops.
  for (size_t r = 2; r < static_cast<size_t>(ParseResult::kCount); ++r) {
    f(parseCounterName(static_cast<ParseResult>(r)), v(c.parse[r]));
  }
}

}  // namespace meshlb
