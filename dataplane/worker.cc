#include "worker.h"

#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>

#include <algorithm>
#include <cstring>

#include "meshlb/bytes.h"
#include "meshlb/checksum.h"
#include "meshlb/hash.h"
#include "meshlb/nat.h"
#include "meshlb/packet_key.h"
#include "meshlb/parse.h"

namespace meshlb {

namespace {

// The expiry sweep runs once per millisecond over capacity / 1000 records (at
// least 64), so the whole table is swept about once a second whatever the packet
// rate; expired connections that packets still hit are removed on lookup anyway.
constexpr uint32_t kMinSweep = 64;
constexpr uint32_t kSnatPortTries = 64;

class Worker {
 public:
  Worker(Dataplane& dp, const WorkerConfig& cfg)
      : dp_(dp),
        idx_(cfg.index),
        c_(dp.counters[cfg.index]),
        stats_(cfg.backend_stats),
        table_(cfg.flow_capacity, cfg.seed),
        sweep_budget_(std::max(kMinSweep, cfg.flow_capacity / 1000 + 1)) {
    snat_next_ = firstSnatPort();
    table_.setConnCounts(cfg.conn_counts);
    // Scheduler positions per service slot, kept across configuration changes as
    // IPVS keeps them in the service; sized once here, never on the packet path.
    sched_pos_.assign(kServiceSlots, kNoPosition);
    wrr_cw_.assign(kServiceSlots, 0);
  }

  void run() {
    rte_rcu_qsbr_thread_register(dp_.qsbr, idx_);
    rte_rcu_qsbr_thread_online(dp_.qsbr, idx_);
    while (dp_.running.load(std::memory_order_relaxed)) {
      loadSnapshot();
      now_ms_ = static_cast<uint32_t>(rte_get_timer_cycles() / ms_cycles_);
      bool backlog = false;  // some queue filled a whole burst: more is waiting
      for (uint16_t port = 0; port < dp_.num_ports; ++port) {
        Burst& b = pipe_[head_];
        const uint16_t n = rte_eth_rx_burst(dp_.port_ids[port], idx_, b.pkts, kRxBurst);
        if (n == 0) continue;
        bump(c_.rx_packets, n);
        for (uint16_t i = 0; i < n; ++i) b.pkts[i]->port = port;
        admit(n, /*handed=*/false);
        backlog |= n == kRxBurst;
      }
      Burst& b = pipe_[head_];
      const auto n = static_cast<uint16_t>(rte_ring_dequeue_burst(
          dp_.handoff[idx_], reinterpret_cast<void**>(b.pkts), kRxBurst, nullptr));
      if (n) {
        bump(c_.handoff_in, n);
        admit(n, /*handed=*/true);
        backlog |= n == kRxBurst;
      }
      // Every queue came back short of a burst: nothing is waiting behind what is
      // in flight, so finish it now rather than hold it for another poll (the
      // pipeline pays only while there is a backlog to overlap with).
      if (!backlog) drain();
      if (idx_ == 0) fromKernel();
      if (const uint32_t rq = dp_.dump_request.load(std::memory_order_acquire); rq != dumped_) {
        dumpConnections(rq);
      }
      flush();
      if (now_ms_ != swept_ms_) {
        swept_ms_ = now_ms_;
        table_.expireSome(now_ms_, sweep_budget_);
      }
      publishTableCounters();
      rte_rcu_qsbr_quiescent(dp_.qsbr, idx_);
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

  // The lowest port >= 1024 congruent to this worker's index.
  uint32_t firstSnatPort() const {
    const uint32_t n = dp_.num_workers;
    return 1024 + (idx_ + n - 1024 % n) % n;
  }

  void loadSnapshot() {
    const Snapshot* s = dp_.snapshot.load(std::memory_order_acquire);
    if (s != snap_) {
      snap_ = s;
      table_.timeouts() = s->timeouts;
    }
  }

  void fromKernel() {
    rte_mbuf* pkts[kRxBurst];
    for (uint16_t port = 0; port < dp_.num_ports; ++port) {
      unsigned n = rte_ring_dequeue_burst(dp_.from_kernel[port], reinterpret_cast<void**>(pkts),
                                          kRxBurst, nullptr);
      bump(c_.from_kernel, n);
      for (unsigned i = 0; i < n; ++i) send(pkts[i], port);
    }
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
      bump(c_.drop_tx_full, q.n - sent);
      rte_pktmbuf_free_bulk(q.pkts + sent, q.n - sent);
    }
    q.n = 0;
  }

  void flush() {
    for (uint16_t p = 0; p < dp_.num_ports; ++p) flushPort(p);
  }

  void toKernel(rte_mbuf* m, uint16_t port) {
    m->port = port;
    if (rte_ring_enqueue(dp_.to_kernel[port], m) != 0) {
      bump(c_.drop_kernel_ring_full);
      rte_pktmbuf_free(m);
      return;
    }
    bump(c_.to_kernel);
  }

  void drop(rte_mbuf* m, std::atomic<uint64_t>& reason) {
    bump(reason);
    rte_pktmbuf_free(m);
  }

  // One packet of a burst, as the first stage left it.
  struct Slot {
    ParsedPacket p;  // reused: the fast parse writes only what it needs
    ParseResult r;
    bool tracked;    // IPv4 TCP/UDP with ports: looked up in the flow table
    bool plain;      // parsePacketFast's plain frame: rewritten by natRewritePlain4
    FlowKey<Ipv4Addr> key;
    uint64_t hash;
    uint32_t cand;   // the record the first bucket names (stage 2), checked in full
  };
  struct Burst {
    rte_mbuf* pkts[kRxBurst];
    Slot slots[kRxBurst];
    uint16_t n = 0;
    bool handed = false;  // from another worker's hand-off ring
  };

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
    b.handed = handed;
    parseStage(b);
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

  void parseStage(Burst& b) {
    for (uint16_t i = 0; i < b.n; ++i) {
      Slot& s = b.slots[i];
      rte_mbuf* m = b.pkts[i];
      s.tracked = false;
      s.plain = false;
      if (m->nb_segs != 1) {
        s.r = ParseResult::kNotIp;  // multi-segment frames are the kernel's
        continue;
      }
      uint8_t* f = rte_pktmbuf_mtod(m, uint8_t*);
      s.r = parsePacketFast(f, rte_pktmbuf_data_len(m), s.p, s.plain);
      // The fast parse vouches for its own frames; reading back the fields it has
      // just stored would stall on store forwarding (a tenth of the worker's time).
      s.tracked = s.plain || (s.r == ParseResult::kOk && s.p.ip.l3 == L3Type::kIpv4 &&
                              !s.p.vlan_count && !s.p.icmp_error && s.p.ip.has_ports &&
                              (s.p.ip.l4_proto == kProtoTcp || s.p.ip.l4_proto == kProtoUdp));
      if (s.tracked) {
        s.key = flowKey4(f, s.p);
        s.hash = table_.hash(s.key);
        table_.prefetch(s.hash);
      }
    }
  }

  void recordStage(Burst& b) {
    for (uint16_t i = 0; i < b.n; ++i) {
      if (b.slots[i].tracked) b.slots[i].cand = table_.prefetchRecord(b.slots[i].hash);
    }
  }

  void handleStage(Burst& b) {
    // Keys in their second bucket: that bucket was prefetched in stage 2; now
    // their records, so that they are not met cold below.
    for (uint16_t i = 0; i < b.n; ++i) {
      Slot& s = b.slots[i];
      if (s.tracked && s.cand == 0) s.cand = table_.prefetchSecondRecord(s.hash);
    }
    for (uint16_t i = 0; i < b.n; ++i) handle(b.pkts[i], b.slots[i], b.handed);
    b.n = 0;
  }

  void handle(rte_mbuf* m, Slot& s, bool handed) {
    const uint16_t in_port = m->port;
    uint8_t* f = rte_pktmbuf_mtod(m, uint8_t*);
    const ParsedPacket& p = s.p;
    const ParseResult r = s.r;
    if (r == ParseResult::kNotIp) return toKernel(m, in_port);
    if (r != ParseResult::kOk) {
      bump(c_.parse[static_cast<size_t>(r)]);
      return drop(m, c_.drop_parse);
    }
    if (p.ip.l3 == L3Type::kIpv4 && !p.vlan_count && p.icmp_error) {
      return icmpError(m, f, p, in_port, handed);
    }
    // The dataplane balances untagged IPv4 TCP and UDP; the kernel has the rest.
    if (!s.tracked) return toKernel(m, in_port);
    const FlowKey<Ipv4Addr>& key = s.key;
    // A connection this worker has is one it owns: both directions' keys map to
    // the worker that created it. Only a miss is classified (a service, a MARK
    // rule), and then handed to its owner when that is another worker.
    auto hit = table_.lookupCandidate(key, s.hash, s.cand, now_ms_);
    Flow<Ipv4Addr>* e = hit.flow;
    if (e) {
      if (!snap_->backendLive(e->backend_id)) {
        // expire_nodest_conn=1 (Swarm's setting): the real server is gone, so the
        // connection is expired and its packet dropped.
        table_.remove(e);
        return drop(m, c_.drop_nodest_expired);
      }
    } else {
      const ServiceSnap* svc = classify(key);
      if (!handed && handOff(m, key, svc != nullptr)) return;
      if (!svc) return toKernel(m, in_port);
      e = newConnection(m, p, *svc, key);
      if (!e) return;
      hit.dir = FlowDir::kOriginal;
    }

    if (key.proto == kProtoTcp) {
      table_.onTcp(e, hit.dir, p.tcp_flags, now_ms_);
    } else {
      table_.onUdp(e, now_ms_);
    }
    Rewrite4 rw;
    BackendStats& bs = stats_[e->backend_id & 0xffff];
    if (hit.dir == FlowDir::kOriginal) {
      rw = {!(e->local == e->client), true, {e->local, e->lport}, {e->backend, e->bport}};
      bump(c_.nat_original);
      bump(bs.inpkts);
      bump(bs.inbytes, p.ip.l3_length);
    } else {
      rw = {true, !(e->local == e->client), {e->vip, e->vport}, {e->client, e->cport}};
      bump(c_.nat_reply);
      bump(bs.outpkts);
      bump(bs.outbytes, p.ip.l3_length);
    }
    if (s.plain) {
      natRewritePlain4(f, rw);
    } else {
      natRewrite(f, p, rw);
    }
    forward(m, f, p);
  }

  // Packets to an SNAT address are replies of connections, not new ones for a
  // marked service (an SNAT port may equal a marked port); address services still
  // apply, for an SNAT address that is also a VIP.
  const ServiceSnap* classify(const FlowKey<Ipv4Addr>& k) const {
    if (snap_->snat_addrs.contains(k.dst.v)) return snap_->findService(k.proto, k.dst.v, k.dport);
    return snap_->classify(k.proto, k.src.v, k.dst.v, k.sport, k.dport);
  }

  // Sends the packet to the worker owning its connection; false when that is us.
  bool handOff(rte_mbuf* m, const FlowKey<Ipv4Addr>& key, bool to_service) {
    const uint16_t n = dp_.num_workers;
    if (n == 1) return false;
    const uint16_t owner =
        to_service                              ? ownerOfClient(key.src.v, key.sport, n)
        : !snap_->snat_addrs.contains(key.dst.v) ? ownerOfClient(key.dst.v, key.dport, n)
                                                : static_cast<uint16_t>(rte_be_to_cpu_16(key.dport) % n);
    if (owner == idx_) return false;
    if (rte_ring_enqueue(dp_.handoff[owner], m) != 0) {
      drop(m, c_.drop_handoff_full);
    } else {
      bump(c_.handoff_out);
    }
    return true;
  }

  // An ICMP error about a tracked connection (unreachable, fragmentation needed,
  // time exceeded), translated as IPVS does: the quoted packet is one meshlb sent,
  // so its reverse is a packet of the connection, whose direction says which way
  // the error goes. Anything else is the kernel's.
  void icmpError(rte_mbuf* m, uint8_t* f, const ParsedPacket& p, uint16_t in_port, bool handed) {
    const L3L4Info& in = p.inner;
    if (in.l3 != L3Type::kIpv4 || !in.has_ports ||
        (in.l4_proto != kProtoTcp && in.l4_proto != kProtoUdp)) {
      return toKernel(m, in_port);
    }
    const uint8_t* iip = f + in.l3_offset;
    // The quoted packet, reversed: what the peer itself would send on this connection.
    const FlowKey<Ipv4Addr> key{{load32(iip + 16)}, {load32(iip + 12)}, in.dport, in.sport,
                                in.l4_proto};
    const ServiceSnap* svc = classify(key);
    if (!handed && handOff(m, key, svc != nullptr)) return;
    auto hit = table_.lookup(key, now_ms_);
    Flow<Ipv4Addr>* e = hit.flow;
    if (!e) return toKernel(m, in_port);
    Rewrite4 outer, inner;
    if (hit.dir == FlowDir::kReply) {
      // From the task's side, about LB->task: to the client, about client->VIP.
      outer = {true, true, {e->vip, 0}, {e->client, 0}};
      inner = {true, true, {e->client, e->cport}, {e->vip, e->vport}};
    } else {
      // From the client's side, about VIP->client: to the task, about task->local.
      outer = {true, true, {e->local, 0}, {e->backend, 0}};
      inner = {true, true, {e->backend, e->bport}, {e->local, e->lport}};
    }
    natRewriteIcmpError(f, p, outer, inner);
    bump(c_.icmp_translated);
    forward(m, f, p);
  }

  const BackendSnap* schedule(const ServiceSnap& s, uint64_t client_hash) {
    const auto& b = s.backends;
    if (b.empty() || s.max_weight == 0) return nullptr;
    const auto n = static_cast<uint32_t>(b.size());
    // The last server used; kNoPosition means "before the first" (ip_vs_rr/wrr start).
    uint32_t& last = sched_pos_[s.slot];
    if (last != kNoPosition && last >= n) last = n - 1;  // servers were removed
    uint32_t i = last == kNoPosition ? n - 1 : last;
    switch (s.sched) {
      case Scheduler::kMh: {
        uint32_t id = s.maglev->lookup(client_hash);
        return id ? &b[id - 1] : nullptr;
      }
      case Scheduler::kRr:
        // ip_vs_rr: the next server after the last one, skipping weight 0.
        for (uint32_t k = 0; k < n; ++k) {
          i = (i + 1) % n;
          if (b[i].weight) {
            last = i;
            return &b[i];
          }
        }
        return nullptr;
      case Scheduler::kWrr: {
        // ip_vs_wrr: walk the servers, lowering the current weight by the gcd of
        // the weights each time round; serve the first at or above it.
        int64_t& cw = wrr_cw_[s.slot];
        for (uint64_t k = 0; k <= uint64_t{n} * (s.max_weight / s.weight_gcd + 1); ++k) {
          i = (i + 1) % n;
          if (i == 0) {
            cw -= s.weight_gcd;
            if (cw <= 0) cw = s.max_weight;
          }
          if (b[i].weight >= cw) {
            last = i;
            return &b[i];
          }
        }
        return nullptr;
      }
    }
    return nullptr;
  }

  Flow<Ipv4Addr>* newConnection(rte_mbuf* m, const ParsedPacket& p, const ServiceSnap& svc,
                                const FlowKey<Ipv4Addr>& key) {
    if (key.proto == kProtoTcp && (p.tcp_flags & (kTcpSyn | kTcpAck | kTcpRst)) != kTcpSyn) {
      // IPVS schedules TCP only on a SYN (sloppy_tcp=0).
      drop(m, c_.drop_tcp_not_syn);
      return nullptr;
    }
    if (p.ip.fragment) {
      drop(m, c_.drop_fragment);
      return nullptr;
    }
    // mh hashes the client address alone (IPVS mh without mh-port).
    const uint64_t client_hash = mum(uint64_t{key.src.v} ^ kHashK0, kHashK1);
    const BackendSnap* b = schedule(svc, client_hash);
    if (!b) {
      drop(m, c_.drop_no_backend);
      return nullptr;
    }
    Flow<Ipv4Addr> f{};
    f.client = key.src;
    f.cport = key.sport;
    f.vip = key.dst;
    f.vport = key.dport;
    f.backend.v = b->addr;
    f.bport = b->port ? b->port : key.dport;
    f.backend_id = b->id;
    f.udp = key.proto == kProtoUdp;
    f.state = static_cast<uint32_t>(f.udp ? ConnState::kUdp : ConnState::kNone);
    f.local = f.client;
    f.lport = f.cport;

    uint32_t snat_addr = 0;
    if (const SnatRule* rule = snatRule(b->addr)) {
      if (rule->masquerade) {
        const RouteSnap* rt = snap_->route(b->addr);
        snat_addr = rt ? snap_->ports[rt->port].ipv4 : 0;
      } else {
        snat_addr = rule->to_source;
      }
    }
    Flow<Ipv4Addr>* e = nullptr;
    if (snat_addr == 0) {
      e = table_.insert(f, now_ms_);
    } else {
      f.local.v = snat_addr;
      // Ports congruent to this worker's index, so replies find their owner.
      for (uint32_t t = 0; t < kSnatPortTries && !e; ++t) {
        snat_next_ += dp_.num_workers;
        if (snat_next_ > 65535) snat_next_ = firstSnatPort();
        f.lport = rte_cpu_to_be_16(static_cast<uint16_t>(snat_next_));
        e = table_.insert(f, now_ms_);
      }
    }
    if (!e) {
      drop(m, c_.drop_snat_ports_exhausted);
      return nullptr;
    }
    bump(c_.new_connections);
    bump(stats_[e->backend_id & 0xffff].conns);
    return e;
  }

  const SnatRule* snatRule(uint32_t backend) const {
    for (const SnatRule& r : snap_->snat) {
      if ((backend & r.mask) == r.net) return &r;
    }
    return nullptr;
  }

  void forward(rte_mbuf* m, uint8_t* f, const ParsedPacket& p) {
    uint8_t* ip = f + p.ip.l3_offset;
    const uint32_t dst = load32(ip + 16);
    const RouteSnap* rt = snap_->route(dst);
    if (!rt) return drop(m, c_.drop_no_route);
    // A router's TTL step, with the header checksum updated incrementally.
    if (ip[8] <= 1) return drop(m, c_.drop_ttl_exceeded);
    uint16_t old = load16(ip + 8);
    ip[8] = static_cast<uint8_t>(ip[8] - 1);
    csumReplace16(ip + 10, old, load16(ip + 8));
    const uint32_t nexthop = rt->gateway ? rt->gateway : dst;
    const NeighTable::Mac* mac = snap_->neigh.find(Snapshot::neighKey(rt->port, nexthop));
    if (!mac) {
      // The kernel resolves it (it forwards this packet and ARPs); the mirror then
      // learns the neighbour and later packets go direct.
      // Addressed to the twin itself, or the kernel would not take it in.
      bump(c_.neigh_unresolved_to_kernel);
      std::memcpy(f, snap_->ports[rt->port].mac.data(), 6);
      return toKernel(m, rt->port);
    }
    std::memcpy(f, mac->data(), 6);
    std::memcpy(f + 6, snap_->ports[rt->port].mac.data(), 6);
    send(m, rt->port);
  }

  // Copies this worker's connections for ipvsadm -L -c (a pause of about a
  // millisecond per million connections; only on request).
  void dumpConnections(uint32_t request) {
    Dataplane::ConnDump& d = dp_.dumps[idx_];
    d.count = 0;
    d.now_ms = now_ms_;
    table_.forEach([&](const Flow<Ipv4Addr>& f) {
      if (d.count < d.flows.size()) d.flows[d.count++] = f;
    });
    dumped_ = request;
    d.done.store(request, std::memory_order_release);
  }

  void publishTableCounters() {
    const auto& t = table_.counters();
    c_.flows.store(table_.size(), std::memory_order_relaxed);
    c_.flows_expired.store(t.expired, std::memory_order_relaxed);
    c_.evicted_embryonic.store(t.evicted_embryonic, std::memory_order_relaxed);
    c_.evicted_closing.store(t.evicted_closing, std::memory_order_relaxed);
    c_.evicted_established.store(t.evicted_established, std::memory_order_relaxed);
    c_.reply_key_in_use.store(t.reply_key_in_use, std::memory_order_relaxed);
  }

  Dataplane& dp_;
  const uint16_t idx_;
  WorkerCounters& c_;
  BackendStats* const stats_;
  FlowTable4 table_;
  const Snapshot* snap_ = nullptr;
  static constexpr uint32_t kNoPosition = ~0u;
  std::vector<uint32_t> sched_pos_;
  std::vector<int64_t> wrr_cw_;
  uint32_t snat_next_;
  uint32_t dumped_ = 0;
  uint32_t now_ms_ = 0;
  uint32_t swept_ms_ = 0;
  const uint32_t sweep_budget_;
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
