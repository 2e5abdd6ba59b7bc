// The worker's I/O shell around PacketCore: RX bursts from every port and the
// hand-off ring, the staged pipeline, and what each verdict asks (TX queues, the
// kernel twins' rings, other workers' hand-off rings). Every decision is the
// core's; what is here is what needs EAL.
#include "worker.h"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>

#include <algorithm>

namespace meshlb {

namespace {

// The expiry sweep runs once per millisecond over capacity / 1000 records (at
// least 64), so the whole table is swept about once a second whatever the packet
// rate; expired connections that packets still hit are removed on lookup anyway.
constexpr uint32_t kMinSweep = 64;
// With an idle sleep (meshlbd --idle-sleep), loops that found nothing before the worker
// sleeps: a burst in flight is never held up, and a busy worker never sleeps.
constexpr uint32_t kIdleLoops = 256;

CoreConfig coreConfig(const Dataplane& dp, const WorkerConfig& cfg) {
  CoreConfig c;
  c.index = cfg.index;
  c.workers = dp.num_workers;
  c.flow_capacity = cfg.flow_capacity;
  c.flow_capacity6 = cfg.flow_capacity6;
  c.seed = cfg.seed;
  c.conn_counts = cfg.conn_counts;
  c.backend_stats = cfg.backend_stats;
  c.all_conn_counts = cfg.all_conn_counts;
  c.overload = cfg.overload;
  c.templates = cfg.templates;
  if (dp.sync_out[cfg.index]) {
    // The dataplane never waits for the sync daemon: a full ring is counted.
    c.sync_out = [](void* ring, const SyncRecord& r) {
      SyncRecord copy = r;  // DPDK 22.11 takes a non-const pointer
      return rte_ring_enqueue_elem(static_cast<rte_ring*>(ring), &copy, sizeof(SyncRecord)) == 0;
    };
    c.sync_ctx = dp.sync_out[cfg.index];
  }
  return c;
}

class Worker {
 public:
  Worker(Dataplane& dp, const WorkerConfig& cfg)
      : dp_(dp),
        idx_(cfg.index),
        c_(dp.counters[cfg.index]),
        core_(c_, coreConfig(dp, cfg)),
        sweep_budget_(std::max(kMinSweep, cfg.flow_capacity / 1000 + 1)),
        idle_sleep_us_(cfg.idle_sleep_us) {}

  void run() {
    rte_rcu_qsbr_thread_register(dp_.qsbr, idx_);
    rte_rcu_qsbr_thread_online(dp_.qsbr, idx_);
    while (dp_.running.load(std::memory_order_relaxed)) {
      core_.setSnapshot(dp_.snapshot.load(std::memory_order_acquire));
      now_ms_ = static_cast<uint32_t>(rte_get_timer_cycles() / ms_cycles_);
      core_.setNow(now_ms_);
      bool backlog = false;  // some queue filled a whole burst: more is waiting
      bool work = false;     // something came in this loop
      for (uint16_t port = 0; port < dp_.num_ports; ++port) {
        Burst& b = pipe_[head_];
        const uint16_t n = rte_eth_rx_burst(dp_.port_ids[port], idx_, b.pkts, kRxBurst);
        if (n == 0) continue;
        bump(c_.rx_packets, n);
        work = true;
        for (uint16_t i = 0; i < n; ++i) b.pkts[i]->port = port;
        admit(n, /*handed=*/false);
        backlog |= n == kRxBurst;
      }
      Burst& b = pipe_[head_];
      const auto n = static_cast<uint16_t>(rte_ring_dequeue_burst(
          dp_.handoff[idx_], reinterpret_cast<void**>(b.pkts), kRxBurst, nullptr));
      if (n) {
        work = true;
        bump(c_.handoff_in, n);
        admit(n, /*handed=*/true);
        backlog |= n == kRxBurst;
      }
      // Every queue came back short of a burst: nothing is waiting behind what is
      // in flight, so finish it now rather than hold it for another poll (the
      // pipeline pays only while there is a backlog to overlap with).
      if (!backlog) drain();
      if (idx_ == 0) work |= fromKernel();
      if (dp_.sync_in[idx_]) work |= installSynced();
      if (const uint32_t rq = dp_.dump_request.load(std::memory_order_acquire); rq != dumped_) {
        dumpConnections(rq);
      }
      flush();
      if (now_ms_ != swept_ms_) {
        swept_ms_ = now_ms_;
        core_.expireSome(sweep_budget_);
      }
      core_.publishCounters();
      rte_rcu_qsbr_quiescent(dp_.qsbr, idx_);
      idle_ = work ? 0 : idle_ + 1;
      if (__builtin_expect(idle_sleep_us_ != 0, 0) && idle_ >= kIdleLoops) {
        // Nothing in flight (the last loop drained and flushed): the core goes to
        // whatever else the host runs, for at most idle_sleep_us_ of added latency.
        rte_delay_us_sleep(idle_sleep_us_);
      }
    }
    drain();
    flush();
    rte_rcu_qsbr_thread_offline(dp_.qsbr, idx_);
    rte_rcu_qsbr_thread_unregister(dp_.qsbr, idx_);
  }

 private:
  struct TxQueue {
    rte_mbuf* pkts[kRxBurst];  // flushed when full and after every loop
    uint16_t n = 0;
  };
  struct Burst {
    rte_mbuf* pkts[kRxBurst];
    PacketMeta meta[kRxBurst];
    uint16_t n = 0;
  };

  // Returns whether anything came.
  bool fromKernel() {
    rte_mbuf* pkts[kRxBurst];
    bool any = false;
    for (uint16_t port = 0; port < dp_.num_ports; ++port) {
      unsigned n = rte_ring_dequeue_burst(dp_.from_kernel[port], reinterpret_cast<void**>(pkts),
                                          kRxBurst, nullptr);
      if (n == 0) continue;
      any = true;
      bump(c_.from_kernel, n);
      for (unsigned i = 0; i < n; ++i) send(pkts[i], port);
    }
    return any;
  }

  void send(rte_mbuf* m, uint16_t port) {
    TxQueue& q = tx_[port];
    q.pkts[q.n++] = m;
    if (q.n == kRxBurst) flushPort(port);
  }

  void flushPort(uint16_t port) {
    TxQueue& q = tx_[port];
    if (q.n == 0) return;
    uint16_t sent = rte_eth_tx_burst(dp_.port_ids[port], idx_, q.pkts, q.n);
    bump(c_.tx_packets, sent);
    if (sent < q.n) {
      bump(c_.drop(Drop::kTxFull), q.n - sent);
      rte_pktmbuf_free_bulk(q.pkts + sent, q.n - sent);
    }
    q.n = 0;
  }

  void flush() {
    for (uint16_t p = 0; p < dp_.num_ports; ++p) flushPort(p);
  }

  // Hands a packet to a ring (the kernel twin's or another worker's), or drops it
  // counted when the ring is full.
  void enqueue(rte_ring* r, rte_mbuf* m, std::atomic<uint64_t>& done, Drop full) {
    if (rte_ring_enqueue(r, m) != 0) {
      bump(c_.drop(full));
      rte_pktmbuf_free(m);
      return;
    }
    bump(done);
  }

  // The frame's new place and length, when the core moved its start (VXLAN headers
  // written into the headroom, or an outer header dropped) or cut it.
  static void reshape(rte_mbuf* m, const Verdict& v) {
    if (v.head_adjust < 0) {
      rte_pktmbuf_prepend(m, static_cast<uint16_t>(-v.head_adjust));  // the core checked room
    } else if (v.head_adjust > 0) {
      rte_pktmbuf_adj(m, static_cast<uint16_t>(v.head_adjust));
    }
    if (v.length && v.length != rte_pktmbuf_data_len(m)) {
      m->data_len = v.length;
      m->pkt_len = v.length;
    }
  }

  void act(rte_mbuf* m, const Verdict& v) {
    switch (v.action) {
      case Verdict::kTransmit:
        if (__builtin_expect(v.head_adjust || v.length, 0)) reshape(m, v);
        return send(m, v.target);
      case Verdict::kHandOff:
        return enqueue(dp_.handoff[v.target], m, c_.handoff_out, Drop::kHandoffFull);
      case Verdict::kToKernel:
        if (v.head_adjust || v.length) reshape(m, v);
        m->port = v.target;
        return enqueue(dp_.to_kernel[v.target], m, c_.to_kernel, Drop::kKernelRingFull);
      case Verdict::kDrop:
        return rte_pktmbuf_free(m);  // counted by the core
    }
  }

  // The core's staged lookup, pipelined across bursts (as DPDK l3fwd_em_hlm and
  // VPP prefetch ahead): a received burst is parsed, hashed and its buckets
  // prefetched (stage 1); the burst before it reads its buckets and prefetches
  // its candidate records (stage 2); the one before that is handled (stage 3). So
  // each load has a whole burst's work to arrive behind. Bursts live in a ring of
  // three: pipe_[head_] is free, pipe_[head_ + 1] has been through stage 2 and
  // pipe_[head_ + 2] through stage 1. While a queue keeps returning whole bursts,
  // a packet waits two bursts; a poll where every queue comes back short drains
  // the pipeline at once, so at low load a packet waits for no other poll.
  void admit(uint16_t n, bool handed) {
    Burst& b = pipe_[head_];
    b.n = n;
    parseStage(b, handed);
    recordStage(pipe_[(head_ + 2) % 3]);
    handleStage(pipe_[(head_ + 1) % 3]);
    head_ = static_cast<uint8_t>((head_ + 1) % 3);
  }

  void drain() {
    handleStage(pipe_[(head_ + 1) % 3]);
    Burst& newest = pipe_[(head_ + 2) % 3];
    recordStage(newest);
    handleStage(newest);
  }

  void parseStage(Burst& b, bool handed) {
    for (uint16_t i = 0; i < b.n; ++i) {
      PacketMeta& m = b.meta[i];
      rte_mbuf* mb = b.pkts[i];
      m.in_port = mb->port;
      m.handed = handed;
      m.headroom = rte_pktmbuf_headroom(mb);
      m.tailroom = rte_pktmbuf_tailroom(mb);
      if (mb->nb_segs != 1) {  // multi-segment frames are the kernel's
        m.tracked = false;
        m.r = ParseResult::kNotIp;
        continue;
      }
      core_.prepare(rte_pktmbuf_mtod(mb, uint8_t*), rte_pktmbuf_data_len(mb), m);
    }
  }

  void recordStage(Burst& b) {
    for (uint16_t i = 0; i < b.n; ++i) core_.prefetchRecord(b.meta[i]);
  }

  void handleStage(Burst& b) {
    for (uint16_t i = 0; i < b.n; ++i) core_.prefetchSecondRecord(b.meta[i]);
    for (uint16_t i = 0; i < b.n; ++i) {
      act(b.pkts[i], core_.handle(rte_pktmbuf_mtod(b.pkts[i], uint8_t*), b.meta[i]));
    }
    b.n = 0;
  }

  // A backup's connections from the control thread, installed between bursts.
  bool installSynced() {
    SyncRecord recs[kRxBurst];
    const unsigned n =
        rte_ring_dequeue_burst_elem(dp_.sync_in[idx_], recs, sizeof(SyncRecord), kRxBurst, nullptr);
    for (unsigned i = 0; i < n; ++i) core_.installSynced(recs[i]);
    return n != 0;
  }

  // Copies this worker's connections for ipvsadm -L -c (a pause of about a
  // millisecond per million connections; only on request).
  void dumpConnections(uint32_t request) {
    Dataplane::ConnDump& d = dp_.dumps[idx_];
    d.count = 0;
    d.now_ms = now_ms_;
    core_.table().forEach([&](const Flow<Ipv4Addr>& f) {
      if (d.count < d.flows.size()) d.flows[d.count++] = f;
    });
    d.count6 = 0;
    core_.table6().forEach([&](const Flow<Ipv6Addr>& f) {
      if (d.count6 < d.flows6.size()) d.flows6[d.count6++] = f;
    });
    dumped_ = request;
    d.done.store(request, std::memory_order_release);
  }

  Dataplane& dp_;
  const uint16_t idx_;
  WorkerCounters& c_;
  PacketCore core_;
  uint32_t dumped_ = 0;
  uint32_t now_ms_ = 0;
  uint32_t swept_ms_ = 0;
  const uint32_t sweep_budget_;
  const uint32_t idle_sleep_us_;
  uint32_t idle_ = 0;  // loops in a row that found nothing
  const uint64_t ms_cycles_ = rte_get_timer_hz() / 1000;
  TxQueue tx_[kMaxPorts];
  Burst pipe_[3];
  uint8_t head_ = 0;
};

}  // namespace

int runWorker(Dataplane& dp, const WorkerConfig& cfg) {
  auto w = std::make_unique<Worker>(dp, cfg);
  w->run();
  return 0;
}

}  // namespace meshlb
