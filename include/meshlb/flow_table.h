// Per-worker connection table: both directions of a NAT'd connection, IPVS TCP
// states and timeouts, fixed capacity, no allocation after construction.
//
// Layout (VPP lbhash / DPDK rte_hash in spirit):
// - Flow records live in one array; a free record is linked into a free list
//   through its own fields, so the pool costs nothing extra.
// - Each record has two keys: the original direction (client -> VIP) and the
//   reply direction (backend -> local address). Keys live in 64-byte buckets of
//   8 slots {32-bit signature, 32-bit record reference}; every key has two
//   candidate buckets and goes to the first unless it is full, so most lookups
//   touch one bucket line plus the record, none more than two, and deletion needs
//   no tombstones. When both are full, one occupant moves to its other bucket (a
//   single cuckoo step).
// - Expiry is lazy (an expired hit is removed and reported as a miss) plus a
//   bounded sweep (expireSome) that the worker runs between bursts: nothing ever
//   walks the whole table on the packet path.
// - When the record pool or both buckets are full, a victim is chosen from a
//   bounded window: expired first, then embryonic (handshake not finished), then
//   closing, then established; each eviction is counted by class.
#pragma once

#include <emmintrin.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "meshlb/hash.h"
#include "meshlb/huge_array.h"
#include "meshlb/proto.h"
#include "meshlb/types.h"

namespace meshlb {

// IPVS TCP states in kernel order (ip_vs_proto_tcp.c), plus UDP.
#define MESHLB_CONN_STATES(X)         \
  X(kNone, "NONE", 2)                 \
  X(kEstablished, "ESTABLISHED", 900) \
  X(kSynSent, "SYN_SENT", 120)        \
  X(kSynRecv, "SYN_RECV", 60)         \
  X(kFinWait, "FIN_WAIT", 120)        \
  X(kTimeWait, "TIME_WAIT", 120)      \
  X(kClose, "CLOSE", 10)              \
  X(kCloseWait, "CLOSE_WAIT", 60)     \
  X(kLastAck, "LAST_ACK", 30)         \
  X(kListen, "LISTEN", 120)           \
  X(kSynAck, "SYNACK", 120)           \
  X(kUdp, "UDP", 300)

enum class ConnState : uint8_t {
#define MESHLB_X(name, label, secs) name,
  MESHLB_CONN_STATES(MESHLB_X)
#undef MESHLB_X
      kCount
};
constexpr int kNumConnStates = static_cast<int>(ConnState::kCount);
const char* connStateName(ConnState s);

// Timeouts in milliseconds per state; defaults are the kernel's.
struct ConnTimeouts {
  std::array<uint32_t, kNumConnStates> ms;
  ConnTimeouts();
  uint32_t of(ConnState s) const { return ms[static_cast<int>(s)]; }
};

// The IPVS transition for a TCP segment seen in `reply` direction (from the
// backend: the kernel's OUTPUT table) or not (from the client: INPUT). Inline:
// it runs for every TCP packet.
namespace detail {

// The kernel's tcp_states[] (net/netfilter/ipvs/ip_vs_proto_tcp.c): INPUT, OUTPUT and
// INPUT-ONLY (a -g or -i connection, whose replies the appliance never sees: the
// kernel's IP_VS_CONN_F_NOOUTPUT); rows syn, fin, ack, rst; columns in ConnState order
// (no UDP).
// No transition leads to NONE or SYNACK; the names are kept for the column headers.
[[maybe_unused]] inline constexpr ConnState sNO = ConnState::kNone, sSA = ConnState::kSynAck;
inline constexpr ConnState sES = ConnState::kEstablished, sSS = ConnState::kSynSent,
                           sSR = ConnState::kSynRecv, sFW = ConnState::kFinWait,
                           sTW = ConnState::kTimeWait, sCL = ConnState::kClose,
                           sCW = ConnState::kCloseWait, sLA = ConnState::kLastAck,
                           sLI = ConnState::kListen;
inline constexpr ConnState kTcpStates[4][4][11] = {
    {
        /*        sNO, sES, sSS, sSR, sFW, sTW, sCL, sCW, sLA, sLI, sSA */
        /*syn*/ {sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR},
        /*fin*/ {sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sTW},
        /*ack*/ {sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES},
        /*rst*/ {sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sSR},
    },
    {
        /*syn*/ {sSS, sES, sSS, sSR, sSS, sSS, sSS, sSS, sSS, sLI, sSR},
        /*fin*/ {sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW},
        /*ack*/ {sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES},
        /*rst*/ {sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL},
    },
    {
        /*syn*/ {sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR},
        /*fin*/ {sCL, sFW, sSS, sTW, sFW, sTW, sCL, sCW, sLA, sLI, sTW},
        /*ack*/ {sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES},
        /*rst*/ {sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL},
    },
    {
        // OUTPUT again: a reply of a -g/-i connection (the kernel then drops NOOUTPUT).
        /*syn*/ {sSS, sES, sSS, sSR, sSS, sSS, sSS, sSS, sSS, sLI, sSR},
        /*fin*/ {sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW},
        /*ack*/ {sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES},
        /*rst*/ {sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL},
    },
};
// kTcpStates' first index: the direction, | kFlowDirect for a -g/-i connection.
enum TcpDir : unsigned { kTcpInput = 0, kTcpOutput = 1, kTcpInputOnly = 2 };

// tcp_state_idx(): the row for a segment's flags, rst winning, then syn, fin,
// ack; 4 = none of them (no transition). Indexed by RST|SYN|FIN in bits 0-2 and
// ACK in bit 3: one load instead of a chain of branches.
inline constexpr auto kTcpRow = [] {
  std::array<uint8_t, 16> t{};
  for (unsigned i = 0; i < 16; ++i) {
    t[i] = (i & kTcpRst) ? 3 : (i & kTcpSyn) ? 0 : (i & kTcpFin) ? 1 : (i & 8) ? 2 : 4;
  }
  return t;
}();

// Bit i set where sigs[i] == sig (8 slots).
inline uint32_t sigMask(const uint32_t* sigs, uint32_t sig) {
  __m128i s = _mm_set1_epi32(static_cast<int>(sig));
  __m128i lo = _mm_load_si128(reinterpret_cast<const __m128i*>(sigs));
  __m128i hi = _mm_load_si128(reinterpret_cast<const __m128i*>(sigs + 4));
  uint32_t m0 = static_cast<uint32_t>(_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(lo, s))));
  uint32_t m1 = static_cast<uint32_t>(_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(hi, s))));
  return m0 | (m1 << 4);
}

}  // namespace detail

inline ConnState nextTcpState(ConnState cur, unsigned dir, uint8_t flags) {
  const unsigned row =
      detail::kTcpRow[(flags & (kTcpRst | kTcpSyn | kTcpFin)) | ((flags & kTcpAck) >> 1)];
  const auto c = static_cast<unsigned>(cur);
  if (row == 4 || c >= 11) return cur;
  return detail::kTcpStates[dir][row][c];
}

// Flow::flags: the connection holds a persistence template (PersistTable::Ref, kept
// by the caller by record index): the table tells the caller when it frees it.
constexpr uint32_t kFlowPersist = 1;
// The real server is reached without NAT, by direct routing (ipvsadm -g) or, with
// kFlowTunnel too, through a tunnel (-i): its replies never come through (the
// kernel's IP_VS_CONN_F_NOOUTPUT). Its value is the INPUT-ONLY table's index bit.
constexpr uint32_t kFlowDirect = 2;
constexpr uint32_t kFlowTunnel = 4;

// Ports in network byte order, as parsed.
template <class Addr>
struct FlowKey {
  Addr src, dst;
  uint16_t sport = 0, dport = 0;
  uint8_t proto = 0;
};

enum class FlowDir : uint8_t { kOriginal = 0, kReply = 1 };

template <class Addr>
struct Flow {
  Addr client, vip;     // original direction: client -> vip
  Addr backend, local;  // reply direction: backend -> local (SNAT address, or the client)
  uint16_t cport, vport, bport, lport;
  uint32_t expires_ms;
  uint32_t backend_id : BackendId::kBits;  // BackendId::raw(): the real server
  uint32_t state : 4;                      // ConnState; kFreeState when unused
  uint32_t udp : 1;                        // proto: 1 = UDP, 0 = TCP
  uint32_t flags : 3;                      // kFlowDirect, kFlowPersist, kFlowTunnel

  ConnState connState() const { return static_cast<ConnState>(state); }
  BackendId backendId() const { return BackendId::fromRaw(backend_id); }
  uint8_t proto() const { return udp ? 17 : 6; }
  FlowKey<Addr> originalKey() const { return {client, vip, cport, vport, proto()}; }
  FlowKey<Addr> replyKey() const { return {backend, local, bport, lport, proto()}; }
};

// X(field, stats label). Declared once: the table counts them, the worker
// publishes them and `meshlbctl stats` shows them from this list.
//   expired: by the sweep or found expired on lookup
//   reply_key_in_use: insert refused, the reply direction is tracked already
//   recycled_embryonic: a reply key (an SNAT port) taken back from a connection
//     still in its handshake (insertRecycling)
//   displaced: keys moved to their other bucket to make room
#define MESHLB_FLOW_TABLE_COUNTERS(X)           \
  X(inserted, "flows_inserted")                 \
  X(removed, "flows_removed")                   \
  X(expired, "flows_expired")                   \
  X(evicted_embryonic, "evicted_embryonic")     \
  X(evicted_closing, "evicted_closing")         \
  X(evicted_established, "evicted_established") \
  X(reply_key_in_use, "reply_key_in_use")       \
  X(recycled_embryonic, "snat_ports_recycled")  \
  X(displaced, "flows_displaced")

struct FlowTableCounters {
#define MESHLB_X(field, label) uint64_t field = 0;
  MESHLB_FLOW_TABLE_COUNTERS(MESHLB_X)
#undef MESHLB_X
};

template <class Addr>
class FlowTable {
 public:
  using Key = FlowKey<Addr>;
  using Entry = Flow<Addr>;
  struct Hit {
    Entry* flow = nullptr;
    FlowDir dir = FlowDir::kOriginal;
  };
  static constexpr uint32_t kMaxBurst = 64;

  // `capacity` connections; `seed` keys the bucket hash (random in production so
  // that a client cannot aim at one bucket, fixed in tests).
  explicit FlowTable(uint32_t capacity, uint64_t seed = 0);
  FlowTable(const FlowTable&) = delete;
  FlowTable& operator=(const FlowTable&) = delete;

  uint64_t hash(const Key& k) const;  // inline for IPv4, below
  // Keys live in their first bucket unless it was full at insertion, so only it
  // is fetched ahead for an established key; the second when the first has no
  // candidate.
  void prefetch(uint64_t h) const { __builtin_prefetch(&buckets_[bucket1(h)]); }
  // A record's cache lines: IPv4's (32 bytes) never cross one; IPv6's (80) always take
  // two, its addresses in one and its ports in the other.
  void prefetchEntry(uint32_t i) const {
    __builtin_prefetch(&flows_[i]);
    if constexpr (sizeof(Entry) > 64) {
      __builtin_prefetch(reinterpret_cast<const char*>(&flows_[i]) + sizeof(Entry) - 1);
    }
  }
  // Both buckets: for a key expected to miss (insert).
  void prefetchBoth(uint64_t h) const {
    __builtin_prefetch(&buckets_[bucket1(h)]);
    __builtin_prefetch(&buckets_[bucket2(h)]);
  }
  Hit lookup(const Key& k, uint32_t now_ms) { return lookup(k, hash(k), now_ms); }
  Hit lookup(const Key& k, uint64_t h, uint32_t now_ms);
  // Staged burst lookup (DPDK l3fwd_em_hlm, VPP lb): hash and prefetch the
  // buckets; then read each first bucket, prefetch the record its signature names
  // and keep that record's reference as the key's candidate; then compare keys,
  // candidate first. A caller can run the stages on different bursts so that each
  // load has a burst's worth of work to hide behind; lookupBurst runs all three on
  // one burst. A candidate may go stale between the stages (its record removed or
  // reused): lookupCandidate checks it in full and falls back to the buckets.
  void hashAndPrefetch(const Key* keys, uint32_t n, uint64_t* hashes) const;
  void prefetchRecords(const uint64_t* hashes, uint32_t n, uint32_t* cands) const;
  // For a key whose first bucket named no record (its second bucket was prefetched
  // in stage 2 instead): the record the second bucket names, prefetched, or 0. Run
  // over a burst just before its stage 3, so that keys living in their second
  // bucket (a few percent) do not meet their record cold in stage 3.
  uint32_t prefetchSecondRecord(uint64_t h) const {
    const uint32_t ref = named(bucket2(h), h);
    if (ref) prefetchEntry(ref >> 1);
    return ref;
  }
  // Stage 2 for one key: returns its candidate.
  uint32_t prefetchRecord(uint64_t h) const {
    const uint32_t ref = named(bucket1(h), h);
    if (ref) {
      prefetchEntry(ref >> 1);
    } else {
      __builtin_prefetch(&buckets_[bucket2(h)]);
    }
    return ref;
  }
  Hit lookupCandidate(const Key& k, uint64_t h, uint32_t cand, uint32_t now_ms) {
    if (cand != 0) {
      Entry& e = flows_[cand >> 1];
      const auto dir = static_cast<FlowDir>(cand & 1);
      if (e.state != kFreeState && matches(e, dir, k) && !expired(e, now_ms)) return {&e, dir};
    }
    return lookup(k, h, now_ms);
  }
  void lookupHashed(const Key* keys, const uint64_t* hashes, const uint32_t* cands, uint32_t n,
                    Hit* hits, uint32_t now_ms);
  void lookupBurst(const Key* keys, uint32_t n, Hit* hits, uint32_t now_ms);

  // Inserts a connection whose original key the caller has just missed, with the
  // timeout of its initial state armed. Returns nullptr when the reply key is
  // tracked already (counted). May evict (counted).
  Entry* insert(const Entry& e, uint32_t now_ms) {
    return insert(e, now_ms, hash(e.originalKey()), hash(e.replyKey()));
  }
  // The same with both keys' hashes already computed (and their buckets
  // prefetched, for a burst of new connections).
  Entry* insert(const Entry& e, uint32_t now_ms, uint64_t original_hash, uint64_t reply_hash,
                bool recycle_embryonic = false);
  // insert() for a connection whose reply key holds an SNAT port: when the key is
  // tracked by a connection still in its handshake (SYN states: a spoofed SYN's,
  // which never completes), that connection is removed and the key reused (counted
  // as recycled_embryonic). An allocator that walks its ports in a cycle thus takes
  // back the oldest embryonic ports first, and a SYN flood cannot hold them for the
  // SYN_RECV timeout; established and closing connections keep theirs.
  Entry* insertRecycling(const Entry& e, uint32_t now_ms) {
    return insert(e, now_ms, hash(e.originalKey()), hash(e.replyKey()), true);
  }
  void remove(Entry* e);
  // Removes up to `budget` expired records from the sweep cursor; returns how many.
  uint32_t expireSome(uint32_t now_ms, uint32_t budget);

  // Applies a TCP segment to the state machine and re-arms the timeout.
  void onTcp(Entry* e, FlowDir dir, uint8_t tcp_flags, uint32_t now_ms) {
    const ConnState cur = e->connState();
    // A -g or -i connection's packets all come from the client: INPUT-ONLY.
    static_assert(kFlowDirect == detail::kTcpInputOnly);
    const unsigned table = static_cast<unsigned>(dir) | (e->flags & kFlowDirect);
    const ConnState s = nextTcpState(cur, table, tcp_flags);
    e->expires_ms = now_ms + timeouts_.of(s);
    if (__builtin_expect(s != cur, 0)) {  // most segments leave the state as it is
      setState(e, s);
      if (state_hook_) state_hook_(state_hook_ctx_, *e);
    }
  }
  // A state set from outside the state machine (a synced connection's), its
  // connection counted where its new state is.
  void setState(Entry* e, ConnState s) {
    const bool moves = countsActive(s) != countsActive(e->connState());
    if (moves) countConn(*e, -1);
    e->state = static_cast<uint32_t>(s);
    if (moves) countConn(*e, +1);
  }
  // Called after a TCP segment changed a connection's state (the sync daemon's).
  using StateHook = void (*)(void* ctx, const Entry& e);
  void setStateHook(StateHook hook, void* ctx) { state_hook_ = hook, state_hook_ctx_ = ctx; }
  // Calls f(entry) for each live record among the next `budget` from *cursor (a
  // walk of the caller's, apart from the sweep's).
  template <class F>
  void visitSome(uint32_t* cursor, uint32_t budget, uint32_t now_ms, F&& f) {
    for (uint32_t n = 0; n < budget && n < capacity_; ++n) {
      const uint32_t i = *cursor < 1 || *cursor > capacity_ ? 1 : *cursor;
      *cursor = i == capacity_ ? 1 : i + 1;
      const Entry& e = flows_[i];
      if (e.state != kFreeState && !expired(e, now_ms)) f(e);
    }
  }
  void onUdp(Entry* e, uint32_t now_ms) { e->expires_ms = now_ms + timeouts_.of(ConnState::kUdp); }

  // Per-backend connection counts, IPVS's ActiveConn / InActConn: TCP connections in
  // an active state (countsActive) at [2 * slot], all others (closing, UDP) at
  // [2 * slot + 1], slot = BackendId::slot(). Written by this table's thread only; `counts`
  // (2 * kCountSlots entries) may be read by another thread. nullptr: not counted.
  static constexpr uint32_t kCountSlots = BackendId::kSlots;
  void setConnCounts(std::atomic<uint32_t>* counts) { counts_ = counts; }
  const std::atomic<uint32_t>* connCounts() const { return counts_; }

  // Called as a kFlowPersist connection is freed (removed, expired, evicted), with its
  // record index (indexOf()).
  using ReleaseHook = void (*)(void* ctx, uint32_t record);
  void setReleaseHook(ReleaseHook hook, void* ctx) { release_ = hook, release_ctx_ = ctx; }
  uint32_t indexOf(const Entry* e) const { return static_cast<uint32_t>(e - flows_.get()); }

  ConnTimeouts& timeouts() { return timeouts_; }
  const FlowTableCounters& counters() const { return counters_; }
  uint32_t size() const { return size_; }
  uint32_t capacity() const { return capacity_; }
  size_t memoryBytes() const;

  // Control-plane iteration (ipvsadm -L -c); not for the packet path.
  template <class F>
  void forEach(F&& f) const {
    for (uint32_t i = 1; i <= capacity_; ++i) {
      if (flows_[i].state != kFreeState) f(flows_[i]);
    }
  }

 private:
  static constexpr uint32_t kFreeState = 15;
  static constexpr int kSlots = 8;
  static constexpr uint32_t kEvictWindow = 64;
  struct alignas(64) Bucket {
    uint32_t sig[kSlots];
    uint32_t ref[kSlots];  // (record index << 1) | direction; 0 = empty
  };

  // The kernel's tcp_state_active_table (ip_vs_proto_tcp.c, since Linux 4.x): the
  // handshake states count as active as ESTABLISHED does, so a server's ActiveConn
  // (and what wlc and the like weigh) includes connections being opened.
  static constexpr uint32_t kActiveStates = 1u << static_cast<int>(ConnState::kEstablished) |
                                            1u << static_cast<int>(ConnState::kSynSent) |
                                            1u << static_cast<int>(ConnState::kSynRecv) |
                                            1u << static_cast<int>(ConnState::kSynAck);
  static bool countsActive(ConnState s) { return kActiveStates >> static_cast<int>(s) & 1; }
  void countConn(const Entry& e, int delta) {
    if (!counts_) return;
    const uint32_t i = 2 * e.backendId().slot() + (countsActive(e.connState()) ? 0 : 1);
    counts_[i].store(counts_[i].load(std::memory_order_relaxed) + static_cast<uint32_t>(delta),
                     std::memory_order_relaxed);
  }

  uint32_t bucket1(uint64_t h) const { return fastRange32(static_cast<uint32_t>(h), num_buckets_); }
  uint32_t bucket2(uint64_t h) const {
    return fastRange32(static_cast<uint32_t>((h * 0x9e3779b97f4a7c15ull) >> 32), num_buckets_);
  }
  static_assert(offsetof(Entry, vip) == offsetof(Entry, client) + sizeof(Addr) &&
                    offsetof(Entry, local) == offsetof(Entry, backend) + sizeof(Addr) &&
                    offsetof(Entry, vport) == offsetof(Entry, cport) + 2 &&
                    offsetof(Entry, lport) == offsetof(Entry, bport) + 2 &&
                    offsetof(Key, dst) == offsetof(Key, src) + sizeof(Addr) &&
                    offsetof(Key, dport) == offsetof(Key, sport) + 2,
                "matches() compares each direction's endpoints as one block");
  static bool matches(const Entry& e, FlowDir dir, const Key& k) {
    if (k.proto != e.proto()) return false;
    // Each direction's addresses and ports lie side by side in both, as in the
    // key: two wide compares.
    const bool reply = dir == FlowDir::kReply;
    const Addr* addrs = reply ? &e.backend : &e.client;
    const uint16_t* ports = reply ? &e.bport : &e.cport;
    return std::memcmp(ports, &k.sport, 4) == 0 &&
           std::memcmp(addrs, &k.src, 2 * sizeof(Addr)) == 0;
  }
  // The reference in the first slot of `bucket` whose signature is the key's, or 0.
  uint32_t named(uint32_t bucket, uint64_t h) const {
    const Bucket& b = buckets_[bucket];
    const uint32_t m = detail::sigMask(b.sig, static_cast<uint32_t>(h >> 32));
    return m ? b.ref[__builtin_ctz(m)] : 0;
  }
  Hit find(const Key& k, uint64_t h) const;
  uint32_t* freeSlot(uint64_t h, uint32_t* sig_out, uint32_t protect, uint32_t now_ms);
  uint32_t allocRecord(uint32_t now_ms);
  int victimRank(const Entry& e, uint32_t now_ms) const;
  void countEviction(int rank);
  void removeIndex(uint32_t idx);
  void clearRef(const Key& k, uint32_t ref);
  static bool expired(const Entry& e, uint32_t now_ms) {
    return static_cast<int32_t>(now_ms - e.expires_ms) >= 0;
  }

  uint32_t capacity_;
  uint32_t num_buckets_;
  uint64_t seed_;
  uint32_t size_ = 0;
  uint32_t free_head_ = 0;  // 0 = none
  uint32_t sweep_cursor_ = 1;
  uint32_t evict_cursor_ = 1;
  HugeArray<Bucket> buckets_;
  HugeArray<Entry> flows_;  // index 0 unused: ref 0 means empty
  ConnTimeouts timeouts_;
  FlowTableCounters counters_;
  std::atomic<uint32_t>* counts_ = nullptr;
  ReleaseHook release_ = nullptr;
  void* release_ctx_ = nullptr;
  StateHook state_hook_ = nullptr;
  void* state_hook_ctx_ = nullptr;
};

template <>
inline uint64_t FlowTable<Ipv4Addr>::hash(const Key& k) const {
  uint64_t a = k.src.v | (static_cast<uint64_t>(k.dst.v) << 32);
  uint64_t b =
      k.sport | (static_cast<uint64_t>(k.dport) << 16) | (static_cast<uint64_t>(k.proto) << 32);
  uint64_t h = mum(a ^ seed_ ^ kHashK0, b ^ kHashK1);
  return mum(h ^ kHashK2, h ^ kHashK1);
}
template <>
uint64_t FlowTable<Ipv6Addr>::hash(const Key& k) const;

using FlowTable4 = FlowTable<Ipv4Addr>;
using FlowTable6 = FlowTable<Ipv6Addr>;

}  // namespace meshlb
