#include "meshlb/flow_table.h"

#include "meshlb/hash.h"
#include "meshlb/proto.h"

namespace meshlb {

const char* connStateName(ConnState s) {
  static constexpr const char* kNames[] = {
#define MESHLB_X(name, label, secs) label,
      MESHLB_CONN_STATES(MESHLB_X)
#undef MESHLB_X
  };
  auto i = static_cast<unsigned>(s);
  return i < static_cast<unsigned>(kNumConnStates) ? kNames[i] : "BUG!";
}

ConnTimeouts::ConnTimeouts() {
  int i = 0;
#define MESHLB_X(name, label, secs) ms[i++] = (secs)*1000u;
  MESHLB_CONN_STATES(MESHLB_X)
#undef MESHLB_X
}

template <class Addr>
FlowTable<Addr>::FlowTable(uint32_t capacity, uint64_t seed)
    : capacity_(capacity < 1 ? 1 : capacity), seed_(seed) {
  // Two keys per connection at a load factor of at most 0.8.
  uint64_t slots = (2ull * capacity_ * 5 + 3) / 4;
  num_buckets_ = static_cast<uint32_t>((slots + kSlots - 1) / kSlots);
  if (num_buckets_ < 2) num_buckets_ = 2;
  buckets_ = HugeArray<Bucket>(num_buckets_);  // zero-filled: every slot empty
  flows_ = HugeArray<Entry>(capacity_ + 1);
  // Free list in index order; the link lives in expires_ms of a free record.
  for (uint32_t i = 1; i <= capacity_; ++i) {
    flows_[i].state = kFreeState;
    flows_[i].expires_ms = i < capacity_ ? i + 1 : 0;
  }
  free_head_ = 1;
}

template <>
uint64_t FlowTable<Ipv6Addr>::hash(const Key& k) const {
  uint64_t w[4];
  std::memcpy(w, k.src.b, 16);
  std::memcpy(w + 2, k.dst.b, 16);
  uint64_t b =
      k.sport | (static_cast<uint64_t>(k.dport) << 16) | (static_cast<uint64_t>(k.proto) << 32);
  uint64_t h = mum(w[0] ^ seed_ ^ kHashK0, w[1] ^ kHashK1);
  h = mum(w[2] ^ h, w[3] ^ kHashK2);
  return mum(h ^ b ^ kHashK1, h ^ kHashK0);
}

template <class Addr>
typename FlowTable<Addr>::Hit FlowTable<Addr>::find(const Key& k, uint64_t h) const {
  const uint32_t sig = static_cast<uint32_t>(h >> 32);
  const uint32_t bs[2] = {bucket1(h), bucket2(h)};
  for (int j = 0; j < (bs[0] == bs[1] ? 1 : 2); ++j) {
    const Bucket& b = buckets_[bs[j]];
    for (uint32_t m = detail::sigMask(b.sig, sig); m; m &= m - 1) {
      uint32_t ref = b.ref[__builtin_ctz(m)];
      if (ref == 0) continue;
      Entry& e = flows_[ref >> 1];
      auto dir = static_cast<FlowDir>(ref & 1);
      if (matches(e, dir, k)) return {&e, dir};
    }
  }
  return {};
}

template <class Addr>
typename FlowTable<Addr>::Hit FlowTable<Addr>::lookup(const Key& k, uint64_t h, uint32_t now_ms) {
  Hit hit = find(k, h);
  if (hit.flow && expired(*hit.flow, now_ms)) {
    ++counters_.expired;
    remove(hit.flow);
    return {};
  }
  return hit;
}

template <class Addr>
void FlowTable<Addr>::hashAndPrefetch(const Key* keys, uint32_t n, uint64_t* hashes) const {
  for (uint32_t i = 0; i < n; ++i) {
    hashes[i] = hash(keys[i]);
    prefetch(hashes[i]);
  }
}

template <class Addr>
void FlowTable<Addr>::prefetchRecords(const uint64_t* hashes, uint32_t n, uint32_t* cands) const {
  for (uint32_t i = 0; i < n; ++i) cands[i] = prefetchRecord(hashes[i]);
}

template <class Addr>
void FlowTable<Addr>::lookupHashed(const Key* keys, const uint64_t* hashes, const uint32_t* cands,
                                   uint32_t n, Hit* hits, uint32_t now_ms) {
  uint32_t second[kMaxBurst];
  if (n > kMaxBurst) n = kMaxBurst;
  for (uint32_t i = 0; i < n; ++i) {
    second[i] = cands[i] ? cands[i] : prefetchSecondRecord(hashes[i]);
  }
  for (uint32_t i = 0; i < n; ++i) hits[i] = lookupCandidate(keys[i], hashes[i], second[i], now_ms);
}

template <class Addr>
void FlowTable<Addr>::lookupBurst(const Key* keys, uint32_t n, Hit* hits, uint32_t now_ms) {
  uint64_t hs[kMaxBurst];
  uint32_t cands[kMaxBurst];
  if (n > kMaxBurst) n = kMaxBurst;
  hashAndPrefetch(keys, n, hs);
  prefetchRecords(hs, n, cands);
  lookupHashed(keys, hs, cands, n, hits, now_ms);
}

template <class Addr>
int FlowTable<Addr>::victimRank(const Entry& e, uint32_t now_ms) const {
  if (expired(e, now_ms)) return 0;
  switch (e.connState()) {
    case ConnState::kNone:
    case ConnState::kSynSent:
    case ConnState::kSynRecv:
    case ConnState::kSynAck:
    case ConnState::kListen:
      return 1;
    case ConnState::kEstablished:
    case ConnState::kUdp:
      return 3;
    default:
      return 2;
  }
}

template <class Addr>
void FlowTable<Addr>::countEviction(int rank) {
  switch (rank) {
    case 0:
      ++counters_.expired;
      break;
    case 1:
      ++counters_.evicted_embryonic;
      break;
    case 2:
      ++counters_.evicted_closing;
      break;
    default:
      ++counters_.evicted_established;
      break;
  }
}

template <class Addr>
uint32_t FlowTable<Addr>::allocRecord(uint32_t now_ms) {
  if (free_head_ == 0) {
    // Pool exhausted: the best victim in a bounded window of records. Lowest rank
    // wins; among equals the one closest to expiry.
    uint32_t best = 0;
    int best_rank = 4;
    for (uint32_t n = 0; n < kEvictWindow && n < capacity_; ++n) {
      uint32_t i = evict_cursor_;
      evict_cursor_ = evict_cursor_ == capacity_ ? 1 : evict_cursor_ + 1;
      const Entry& e = flows_[i];
      int rank = victimRank(e, now_ms);
      if (rank < best_rank ||
          (rank == best_rank && static_cast<int32_t>(e.expires_ms - flows_[best].expires_ms) < 0)) {
        best = i;
        best_rank = rank;
        if (rank == 0) break;
      }
    }
    countEviction(best_rank);
    removeIndex(best);
  }
  uint32_t idx = free_head_;
  free_head_ = flows_[idx].expires_ms;
  return idx;
}

template <class Addr>
uint32_t* FlowTable<Addr>::freeSlot(uint64_t h, uint32_t* sig_out, uint32_t protect,
                                    uint32_t now_ms) {
  *sig_out = static_cast<uint32_t>(h >> 32);
  Bucket* bs[2] = {&buckets_[bucket1(h)], &buckets_[bucket2(h)]};
  // The first bucket while it has room (lookups then touch one bucket line), the
  // second otherwise.
  for (Bucket* b : bs) {
    for (int s = 0; s < kSlots; ++s) {
      if (b->ref[s] == 0) return &b->ref[s];
    }
  }
  // Both buckets full: move one occupant to its other bucket if that has room
  // (one cuckoo step; keeps the table usable up to its design load)...
  for (Bucket* b : bs) {
    for (int s = 0; s < kSlots; ++s) {
      const uint32_t ref = b->ref[s];
      const Entry& e = flows_[ref >> 1];
      const uint64_t oh = hash((ref & 1) ? e.replyKey() : e.originalKey());
      Bucket* alt = &buckets_[bucket1(oh)];
      if (alt == b) alt = &buckets_[bucket2(oh)];
      if (alt == b) continue;
      for (int t = 0; t < kSlots; ++t) {
        if (alt->ref[t] == 0) {
          alt->ref[t] = ref;
          alt->sig[t] = b->sig[s];
          b->ref[s] = 0;
          b->sig[s] = 0;
          ++counters_.displaced;
          return &b->ref[s];
        }
      }
    }
  }
  // ...else evict the weakest of the 16 occupants.
  uint32_t* victim = nullptr;
  int victim_rank = 4;
  uint32_t victim_expiry = 0;
  for (Bucket* b : bs) {
    for (int s = 0; s < kSlots; ++s) {
      uint32_t idx = b->ref[s] >> 1;
      if (idx == protect) continue;
      const Entry& e = flows_[idx];
      int rank = victimRank(e, now_ms);
      if (rank < victim_rank ||
          (rank == victim_rank && static_cast<int32_t>(e.expires_ms - victim_expiry) < 0)) {
        victim = &b->ref[s];
        victim_rank = rank;
        victim_expiry = e.expires_ms;
      }
    }
  }
  if (!victim) return nullptr;  // only the protected record: cannot happen with 16 slots
  countEviction(victim_rank);
  removeIndex(*victim >> 1);
  return victim;
}

template <class Addr>
typename FlowTable<Addr>::Entry* FlowTable<Addr>::insert(const Entry& e, uint32_t now_ms,
                                                         uint64_t oh, uint64_t rh,
                                                         bool recycle_embryonic) {
  if (Entry* held = lookup(e.replyKey(), rh, now_ms).flow) {
    if (!recycle_embryonic || victimRank(*held, now_ms) != 1) {
      ++counters_.reply_key_in_use;
      return nullptr;
    }
    remove(held);
    ++counters_.recycled_embryonic;
  }
  const uint32_t idx = allocRecord(now_ms);
  flows_[idx] = e;
  flows_[idx].expires_ms = now_ms + timeouts_.of(e.connState());
  uint32_t sig;
  uint32_t* slot = freeSlot(oh, &sig, idx, now_ms);
  slot[-kSlots] = sig;  // sig[] sits kSlots words before ref[] in the bucket
  *slot = idx << 1;
  slot = freeSlot(rh, &sig, idx, now_ms);
  slot[-kSlots] = sig;
  *slot = (idx << 1) | 1;
  ++size_;
  ++counters_.inserted;
  countConn(flows_[idx], +1);
  return &flows_[idx];
}

template <class Addr>
void FlowTable<Addr>::clearRef(const Key& k, uint32_t ref) {
  const uint64_t h = hash(k);
  for (uint32_t bi : {bucket1(h), bucket2(h)}) {
    Bucket& b = buckets_[bi];
    for (int s = 0; s < kSlots; ++s) {
      if (b.ref[s] == ref) {
        b.ref[s] = 0;
        b.sig[s] = 0;
        return;
      }
    }
  }
}

template <class Addr>
void FlowTable<Addr>::removeIndex(uint32_t idx) {
  Entry& e = flows_[idx];
  countConn(e, -1);
  if (e.flags & kFlowPersist && release_) release_(release_ctx_, idx);
  clearRef(e.originalKey(), idx << 1);
  clearRef(e.replyKey(), (idx << 1) | 1);
  e.state = kFreeState;
  e.expires_ms = free_head_;
  free_head_ = idx;
  --size_;
  ++counters_.removed;
}

template <class Addr>
void FlowTable<Addr>::remove(Entry* e) {
  removeIndex(static_cast<uint32_t>(e - flows_.get()));
}

template <class Addr>
uint32_t FlowTable<Addr>::expireSome(uint32_t now_ms, uint32_t budget) {
  uint32_t freed = 0;
  for (uint32_t n = 0; n < budget && n < capacity_; ++n) {
    uint32_t i = sweep_cursor_;
    sweep_cursor_ = sweep_cursor_ == capacity_ ? 1 : sweep_cursor_ + 1;
    const Entry& e = flows_[i];
    if (e.state != kFreeState && expired(e, now_ms)) {
      removeIndex(i);
      ++counters_.expired;
      ++freed;
    }
  }
  return freed;
}

template <class Addr>
size_t FlowTable<Addr>::memoryBytes() const {
  return sizeof(Bucket) * num_buckets_ + sizeof(Entry) * (capacity_ + 1);
}

template class FlowTable<Ipv4Addr>;
template class FlowTable<Ipv6Addr>;

}  // namespace meshlb
