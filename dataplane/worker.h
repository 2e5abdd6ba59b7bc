// A poll-mode worker: owns one RX and one TX queue on every data port, its own
// flow table and scheduler state; no locks, no allocation, no system calls.
#pragma once

#include <rte_mbuf.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "meshlb/counters.h"
#include "meshlb/flow_table.h"
#include "meshlb/packet_core.h"
#include "meshlb/snapshot.h"

namespace meshlb {

constexpr uint16_t kMaxPorts = 8;
constexpr uint16_t kMaxWorkers = 64;
constexpr uint16_t kRxBurst = 32;

// What the workers share, all set up before they start.
struct Dataplane {
  uint16_t num_ports = 0;
  uint16_t port_ids[kMaxPorts] = {};  // DPDK port id of data port N
  uint16_t num_workers = 0;
  rte_ring* handoff[kMaxWorkers] = {};    // packets whose connection another worker owns
  rte_ring* to_kernel[kMaxPorts] = {};    // worker -> control thread -> twin lbN
  rte_ring* from_kernel[kMaxPorts] = {};  // twin lbN -> control thread -> worker 0 -> port N
  // Connection sync, rings of SyncRecord: each worker's connections for the master
  // daemon (worker -> control thread), and a backup's connections to install in the
  // worker that owns them (control thread -> worker). Null: none.
  rte_ring* sync_out[kMaxWorkers] = {};
  rte_ring* sync_in[kMaxWorkers] = {};
  std::atomic<const Snapshot*> snapshot{nullptr};
  rte_rcu_qsbr* qsbr = nullptr;
  std::atomic<bool> running{true};
  // ipvsadm -L -c: the control thread bumps dump_request; each worker copies its
  // connections into its dump buffer between bursts and stores the request number
  // in dump_done. Buffers are allocated by the control thread, never by workers.
  std::atomic<uint32_t> dump_request{0};
  struct ConnDump {
    std::vector<Flow<Ipv4Addr>> flows;  // capacity fixed by the control thread
    uint32_t count = 0;
    std::vector<Flow<Ipv6Addr>> flows6;  // the same for IPv6 connections
    uint32_t count6 = 0;
    uint32_t now_ms = 0;
    std::atomic<uint32_t> done{0};
  };
  std::unique_ptr<ConnDump[]> dumps;           // one per worker
  std::unique_ptr<WorkerCounters[]> counters;  // one per worker
};

struct WorkerConfig {
  uint16_t index = 0;  // 0 .. num_workers-1; also the queue index
  uint32_t flow_capacity = 0;
  uint64_t seed = 0;
  std::atomic<uint32_t>* conn_counts = nullptr;  // FlowTable::setConnCounts, read by control
  BackendStats* backend_stats = nullptr;         // BackendId::kSlots entries, read by control
  // Every worker's conn_counts, for the connection-count schedulers (CoreConfig).
  std::vector<const std::atomic<uint32_t>*> all_conn_counts;
  std::atomic<uint8_t>* overload = nullptr;  // every worker's, by BackendId slot (CoreConfig)
  PersistTable* templates = nullptr;         // every worker's (CoreConfig)
  // meshlbd --idle-sleep: after kIdleLoops loops that found nothing, sleep this long
  // (microseconds) each loop until something comes; 0: poll without pause.
  uint32_t idle_sleep_us = 0;
  uint32_t flow_capacity6 = 0;  // the IPv6 connection table's (0: flow_capacity)
};

// The worker loop (rte_eal_remote_launch entry); returns when running is false.
int runWorker(Dataplane& dp, const WorkerConfig& cfg);

}  // namespace meshlb
