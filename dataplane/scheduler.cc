// The schedulers: IPVS's algorithms, one function each, and the registry.
#include "meshlb/scheduler.h"

#include <algorithm>
#include <array>

namespace meshlb {

namespace {

// IP_VS_DEST_F_OVERLOAD, as ip_vs_bind_dest sets it and ip_vs_unbind_dest clears it
// (there at each connection; here at each pick, from the counts summed over the
// workers): from u_threshold connections, until under l_threshold, or under 3/4 of
// u_threshold without one.
bool overloaded(const ServiceSched& s, const PickInput& in, uint32_t i) {
  if (s.u_thresholds.empty() || !in.overload) return false;
  const uint32_t u = s.u_thresholds[i], l = s.l_thresholds[i];
  std::atomic<uint8_t>& flag = in.overload[s.slots[i]];
  bool over = flag.load(std::memory_order_relaxed) != 0;
  if (!u && !l) {
    over = false;
  } else {
    const uint64_t total = uint64_t{in.active(s.slots[i])} + in.inactive(s.slots[i]);
    if (u && total >= u) {
      over = true;
    } else if (over && (l ? total < l : total * 4 < uint64_t{u} * 3)) {
      over = false;
    }
  }
  flag.store(over ? 1 : 0, std::memory_order_relaxed);
  return over;
}

// A server a new connection may go to: weight above 0 and not overloaded.
bool available(const ServiceSched& s, const PickInput& in, uint32_t i) {
  return s.weights[i] && !overloaded(s, in, i);
}

// ip_vs_rr: the next server after the last one, skipping weight 0.
uint32_t pickRr(const ServiceSched& s, SchedState& st, const PickInput& in) {
  const auto n = static_cast<uint32_t>(s.weights.size());
  if (n == 0 || s.max_weight == 0) return kNoBackend;
  if (st.last != SchedState::kNone && st.last >= n) st.last = n - 1;  // servers were removed
  uint32_t i = st.last == SchedState::kNone ? n - 1 : st.last;
  for (uint32_t k = 0; k < n; ++k) {
    i = (i + 1) % n;
    if (available(s, in, i)) return st.last = i;
  }
  return kNoBackend;
}

// ip_vs_wrr: walk the servers, lowering the current weight by the gcd of the
// weights each time round; serve the first at or above it. When the servers or
// weights change the walk starts again (ip_vs_wrr_dest_changed): a current weight
// above the new maximum would otherwise find no server for many rounds.
uint32_t pickWrr(const ServiceSched& s, SchedState& st, const PickInput& in) {
  const auto n = static_cast<uint32_t>(s.weights.size());
  if (st.epoch != s.epoch) st = SchedState{.epoch = s.epoch};
  if (n == 0 || s.max_weight == 0) return kNoBackend;
  if (st.last != SchedState::kNone && st.last >= n) st.last = n - 1;
  uint32_t i = st.last == SchedState::kNone ? n - 1 : st.last;
  for (uint64_t k = 0; k <= uint64_t{n} * (s.max_weight / s.weight_gcd + 1); ++k) {
    i = (i + 1) % n;
    if (i == 0) {
      st.cw -= s.weight_gcd;
      if (st.cw <= 0) st.cw = s.max_weight;
    }
    if (s.weights[i] >= st.cw && !overloaded(s, in, i)) return st.last = i;
  }
  return kNoBackend;
}

// mh: the Maglev table (built by prepareMh) over the client address hash.
// A server the table gives that is overloaded is none, unless mh-fallback, which
// looks again with the hash moved on, as ip_vs_mh_get_fallback does with its offsets.
uint32_t pickMh(const ServiceSched& s, SchedState&, const PickInput& in) {
  if (!s.maglev) return kNoBackend;
  const uint32_t id = s.maglev->lookup(in.client_hash);
  if (!id || !overloaded(s, in, id - 1)) return id ? id - 1 : kNoBackend;
  if (!(s.sched_flags & kSchedFallback)) return kNoBackend;
  for (uint64_t k = 1; k <= s.maglev->size(); ++k) {
    const uint32_t other = s.maglev->lookup(in.client_hash + k * 0x9e3779b97f4a7c15ull);
    if (other && !overloaded(s, in, other - 1)) return other - 1;
  }
  return kNoBackend;
}

void prepareMh(ServiceSched& s, const ServiceSched* previous) {
  if (previous && previous->maglev && previous->keys == s.keys && previous->weights == s.weights) {
    s.maglev = previous->maglev;
    return;
  }
  // No server to pick (none, or all quiescent): no table (pickMh finds none).
  if (std::none_of(s.weights.begin(), s.weights.end(), [](uint32_t w) { return w > 0; })) {
    s.maglev = nullptr;
    return;
  }
  std::vector<MaglevBackend> mb;
  mb.reserve(s.keys.size());
  for (size_t i = 0; i < s.keys.size(); ++i) {
    mb.push_back({s.keys[i], s.weights[i], static_cast<uint32_t>(i + 1)});
  }
  // Sized by the servers, quiescent ones included, so that draining one (weight 0)
  // does not change the size and move everyone else's clients.
  auto table = MaglevTable::build(std::move(mb), maglevSizeFor(s.keys.size()));
  s.maglev = table.ok() ? std::make_shared<const MaglevTable>(std::move(*table)) : nullptr;
}

// The connection-count schedulers (ip_vs_lc.c, ip_vs_wlc.c, ip_vs_sed.c, ip_vs_nq.c,
// ip_vs_fo.c, ip_vs_ovf.c, ip_vs_twos.c): each walks the servers in their index order
// (sorted by address and port: every appliance with the same servers walks the same
// order, where the kernel walks its list, newest first) and skips a server of weight
// 0, as the kernel skips an unavailable one. Connection counts are summed over the
// workers (PickInput::active).

// ip_vs_dest_conn_overhead: an active connection weighs 256 inactive ones.
uint64_t connOverhead(const ServiceSched& s, const PickInput& in, uint32_t i) {
  return (uint64_t{in.active(s.slots[i])} << 8) + in.inactive(s.slots[i]);
}
// sed and nq: the active connections a new one would queue behind, itself included.
uint64_t queueOverhead(const ServiceSched& s, const PickInput& in, uint32_t i) {
  return uint64_t{in.active(s.slots[i])} + 1;
}

// ip_vs_lc: the least overhead, the first of equals.
uint32_t pickLc(const ServiceSched& s, SchedState&, const PickInput& in) {
  uint32_t least = kNoBackend;
  uint64_t loh = 0;
  for (uint32_t i = 0; i < s.weights.size(); ++i) {
    if (!available(s, in, i)) continue;
    const uint64_t doh = connOverhead(s, in, i);
    if (least == kNoBackend || doh < loh) least = i, loh = doh;
  }
  return least;
}

// ip_vs_wlc and ip_vs_sed: the least overhead per weight (loh * w_i > doh * w_least,
// in integers, as the kernel compares), the first of equals.
template <uint64_t (*Overhead)(const ServiceSched&, const PickInput&, uint32_t)>
uint32_t pickLeastPerWeight(const ServiceSched& s, SchedState&, const PickInput& in) {
  const auto n = static_cast<uint32_t>(s.weights.size());
  uint32_t least = 0;
  while (least < n && !available(s, in, least)) ++least;
  if (least == n) return kNoBackend;
  uint64_t loh = Overhead(s, in, least);
  for (uint32_t i = least + 1; i < n; ++i) {
    if (!available(s, in, i)) continue;
    const uint64_t doh = Overhead(s, in, i);
    if (loh * s.weights[i] > doh * s.weights[least]) least = i, loh = doh;
  }
  return least;
}

// ip_vs_nq: an idle server at once (the first); else as sed.
uint32_t pickNq(const ServiceSched& s, SchedState&, const PickInput& in) {
  uint32_t least = kNoBackend;
  uint64_t loh = 0;
  for (uint32_t i = 0; i < s.weights.size(); ++i) {
    if (!available(s, in, i)) continue;
    const uint64_t doh = queueOverhead(s, in, i);
    if (doh == 1) return i;
    if (least == kNoBackend || loh * s.weights[i] > doh * s.weights[least]) least = i, loh = doh;
  }
  return least;
}

// ip_vs_fo (weighted failover): the highest weight, the first of equals.
uint32_t pickFo(const ServiceSched& s, SchedState&, const PickInput& in) {
  uint32_t best = kNoBackend, hw = 0;
  for (uint32_t i = 0; i < s.weights.size(); ++i) {
    if (s.weights[i] > hw && !overloaded(s, in, i)) best = i, hw = s.weights[i];
  }
  return best;
}

// ip_vs_ovf (overflow-connection): the highest weight among the servers whose active
// connections do not exceed their weight.
uint32_t pickOvf(const ServiceSched& s, SchedState&, const PickInput& in) {
  uint32_t best = kNoBackend, hw = 0;
  for (uint32_t i = 0; i < s.weights.size(); ++i) {
    const uint32_t w = s.weights[i];
    if (w == 0 || in.active(s.slots[i]) > w || overloaded(s, in, i)) continue;
    if (best == kNoBackend || w > hw) best = i, hw = w;
  }
  return best;
}

// ip_vs_twos (power of two choices): two servers drawn at random by weight; the one
// of lower overhead per weight.
uint32_t pickTwos(const ServiceSched& s, SchedState&, const PickInput& in) {
  // Which servers may be drawn, taken once: the draw and the walk must agree.
  std::vector<uint8_t> usable(s.weights.size());
  int64_t total = 0;
  for (uint32_t i = 0; i < s.weights.size(); ++i) {
    usable[i] = available(s, in, i);
    if (usable[i]) total += s.weights[i];
  }
  if (total == 0) return kNoBackend;
  total += 1;  // as the kernel draws: 0 .. total weight
  int64_t r1 = static_cast<int64_t>((in.random & 0xffffffffu) % static_cast<uint64_t>(total));
  int64_t r2 = static_cast<int64_t>((in.random >> 32) % static_cast<uint64_t>(total));
  uint32_t c1 = kNoBackend, c2 = kNoBackend;
  for (uint32_t i = 0; i < s.weights.size() && (c1 == kNoBackend || c2 == kNoBackend); ++i) {
    if (!usable[i]) continue;
    r1 -= s.weights[i];
    r2 -= s.weights[i];
    if (r1 <= 0 && c1 == kNoBackend) c1 = i;
    if (r2 <= 0 && c2 == kNoBackend) c2 = i;
  }
  if (c1 == kNoBackend || c2 == kNoBackend) return c1;
  if (connOverhead(s, in, c1) * s.weights[c2] > connOverhead(s, in, c2) * s.weights[c1]) return c2;
  return c1;
}

// sh and dh (ip_vs_sh.c, ip_vs_dh.c): 256 buckets of servers, looked up by a hash of
// the client's address (sh) or the destination's (dh): hash_32(value, 8).
constexpr uint32_t kHashBuckets = 256;
uint32_t hash8(uint32_t v) { return (v * 0x61c88647u) >> 24; }

// ip_vs_sh_reassign: the servers in turn, each taking as many buckets in a row as its
// weight (one at weight 0).
void prepareSh(ServiceSched& s, const ServiceSched* previous) {
  if (previous && previous->buckets && previous->keys == s.keys && previous->weights == s.weights) {
    s.buckets = previous->buckets;
    return;
  }
  const auto n = static_cast<uint32_t>(s.weights.size());
  auto b = std::make_shared<std::vector<uint32_t>>(kHashBuckets, kNoBackend);
  for (uint32_t i = 0, at = 0, count = 0; n && i < kHashBuckets; ++i) {
    (*b)[i] = at;
    if (++count >= s.weights[at]) at = (at + 1) % n, count = 0;
  }
  s.buckets = std::move(b);
}

// ip_vs_sh_schedule: the bucket of the client's address (and port, with sh-port);
// none if its server has weight 0, unless sh-fallback, which tries the buckets after
// it (each hashed again with its offset, as ip_vs_sh_get_fallback does).
uint32_t pickSh(const ServiceSched& s, SchedState&, const PickInput& in) {
  if (!s.buckets) return kNoBackend;
  const uint32_t value = in.src_fold + (s.sched_flags & kSchedPort ? in.src_port : 0);
  const uint32_t first = hash8(value);
  const uint32_t i = (*s.buckets)[first];
  if (i == kNoBackend || available(s, in, i)) return i;
  if (!(s.sched_flags & kSchedFallback)) return kNoBackend;
  for (uint32_t offset = 0; offset < kHashBuckets; ++offset) {
    const uint32_t roffset = (offset + first) % kHashBuckets;
    const uint32_t j = (*s.buckets)[(roffset + hash8(value)) & (kHashBuckets - 1)];
    if (j == kNoBackend) break;
    if (available(s, in, j)) return j;
  }
  return kNoBackend;
}

// ip_vs_dh_reassign: the servers in turn, a bucket each, whatever their weight.
void prepareDh(ServiceSched& s, const ServiceSched* previous) {
  if (previous && previous->buckets && previous->keys == s.keys) {
    s.buckets = previous->buckets;
    return;
  }
  const auto n = static_cast<uint32_t>(s.weights.size());
  auto b = std::make_shared<std::vector<uint32_t>>(kHashBuckets, kNoBackend);
  for (uint32_t i = 0; n && i < kHashBuckets; ++i) (*b)[i] = i % n;
  s.buckets = std::move(b);
}

uint32_t pickDh(const ServiceSched& s, SchedState&, const PickInput& in) {
  if (!s.buckets) return kNoBackend;
  const uint32_t i = (*s.buckets)[hash8(in.dst_fold)];
  return i != kNoBackend && available(s, in, i) ? i : kNoBackend;
}

// lblc and lblcr: the table is the previous snapshot's while the service exists;
// entries naming a server it no longer has are passed over at the pick.
void prepareLocality(ServiceSched& s, const ServiceSched* previous) {
  s.locality =
      previous && previous->locality ? previous->locality : std::make_shared<LocalityTable>();
}

uint32_t indexOfSlot(const ServiceSched& s, uint32_t slot) {
  for (uint32_t i = 0; i < s.slots.size(); ++i) {
    if (s.slots[i] == slot) return i;
  }
  return kNoBackend;
}

// The kernel's is_overloaded for lblc and lblcr: more active connections than its
// weight, while another server has fewer than half its weight.
bool localityOverloaded(const ServiceSched& s, const PickInput& in, uint32_t i) {
  if (in.active(s.slots[i]) <= s.weights[i]) return false;
  for (uint32_t j = 0; j < s.weights.size(); ++j) {
    if (uint64_t{in.active(s.slots[j])} * 2 < s.weights[j]) return true;
  }
  return false;
}

struct EntryLock {
  explicit EntryLock(LocalityTable::Entry& e) : e_(e) {
    while (e_.lock.test_and_set(std::memory_order_acquire)) {
    }
  }
  ~EntryLock() { e_.lock.clear(std::memory_order_release); }
  LocalityTable::Entry& e_;
};

LocalityTable::Entry& entryOf(const ServiceSched& s, const PickInput& in) {
  static_assert(LocalityTable::kEntries == 1u << 12);
  return s.locality->entries[(in.dst_fold * 0x61c88647u) >> 20];  // hash_32(dst, 12)
}

// The entry of the packet's destination, if it is there and not expired.
bool localityHit(const LocalityTable::Entry& e, const PickInput& in) {
  return e.used && e.dst == in.dst_fold && in.now_s - e.lastuse_s <= in.expiration_s;
}

// The destination's entry, (re)started with wlc's pick as its one server.
uint32_t startEntry(const ServiceSched& s, SchedState& st, const PickInput& in,
                    LocalityTable::Entry& e) {
  const uint32_t i = pickLeastPerWeight<connOverhead>(s, st, in);
  if (i == kNoBackend) return i;
  e.used = true, e.dst = in.dst_fold, e.size = 1, e.slots[0] = s.slots[i];
  e.lastuse_s = e.lastmod_s = in.now_s;
  return i;
}

// ip_vs_lblc_schedule: the destination's server while it is usable and not
// overloaded; else wlc's pick, which the destination then keeps.
uint32_t pickLblc(const ServiceSched& s, SchedState& st, const PickInput& in) {
  if (!s.locality) return kNoBackend;
  LocalityTable::Entry& e = entryOf(s, in);
  EntryLock lock(e);
  if (localityHit(e, in)) {
    e.lastuse_s = in.now_s;
    const uint32_t i = indexOfSlot(s, e.slots[0]);
    if (i != kNoBackend && s.weights[i] && !localityOverloaded(s, in, i)) return i;
  }
  return startEntry(s, st, in, e);
}

// ip_vs_lblcr_schedule: the least loaded (per weight) of the destination's set;
// when the set has had more than one server and been unchanged for the expiration,
// it loses its most loaded; when its least loaded is overloaded, wlc's pick joins it.
uint32_t pickLblcr(const ServiceSched& s, SchedState& st, const PickInput& in) {
  if (!s.locality) return kNoBackend;
  LocalityTable::Entry& e = entryOf(s, in);
  EntryLock lock(e);
  if (!localityHit(e, in)) return startEntry(s, st, in, e);
  e.lastuse_s = in.now_s;
  // The set's members the service still has, usable ones first considered.
  uint32_t least = kNoBackend, most = kNoBackend, most_at = 0;
  uint64_t loh = 0, moh = 0;
  for (uint32_t k = 0; k < e.size;) {
    const uint32_t i = indexOfSlot(s, e.slots[k]);
    if (i == kNoBackend) {  // a server the service no longer has leaves the set
      e.slots[k] = e.slots[--e.size];
      continue;
    }
    const uint64_t oh = connOverhead(s, in, i);
    if (available(s, in, i) &&
        (least == kNoBackend || loh * s.weights[i] > oh * s.weights[least])) {
      least = i, loh = oh;
    }
    if (most == kNoBackend || oh * s.weights[most] > moh * s.weights[i]) {
      most = i, most_at = k, moh = oh;
    }
    ++k;
  }
  if (e.size > 1 && in.now_s - e.lastmod_s > in.expiration_s && most != kNoBackend) {
    e.slots[most_at] = e.slots[--e.size];
    e.lastmod_s = in.now_s;
    if (least == most) least = kNoBackend;
  }
  if (least != kNoBackend && !localityOverloaded(s, in, least)) return least;
  const uint32_t i = pickLeastPerWeight<connOverhead>(s, st, in);
  if (i == kNoBackend) return i;
  bool member = false;
  for (uint32_t k = 0; k < e.size; ++k) member = member || e.slots[k] == s.slots[i];
  if (!member) {
    // A full set gives up its most loaded member for the new one.
    const uint32_t at = e.size < LocalityTable::kMaxSet ? e.size++ : most_at;
    e.slots[at] = s.slots[i];
    e.lastmod_s = in.now_s;
  }
  return i;
}

constexpr std::array kSchedulers = {
    SchedulerDef{"rr", nullptr, pickRr, false},
    SchedulerDef{"wrr", nullptr, pickWrr, false},
    SchedulerDef{"lc", nullptr, pickLc, true},
    SchedulerDef{"wlc", nullptr, pickLeastPerWeight<connOverhead>, true},
    SchedulerDef{"lblc", prepareLocality, pickLblc, true},
    SchedulerDef{"lblcr", prepareLocality, pickLblcr, true},
    SchedulerDef{"dh", prepareDh, pickDh, false},
    SchedulerDef{"sh", prepareSh, pickSh, false},
    SchedulerDef{"sed", nullptr, pickLeastPerWeight<queueOverhead>, true},
    SchedulerDef{"nq", nullptr, pickNq, true},
    SchedulerDef{"fo", nullptr, pickFo, false},
    SchedulerDef{"ovf", nullptr, pickOvf, true},
    SchedulerDef{"mh", prepareMh, pickMh, false},
    SchedulerDef{"twos", nullptr, pickTwos, true},
};

}  // namespace

std::span<const SchedulerDef> schedulers() { return kSchedulers; }

const SchedulerDef* findScheduler(std::string_view name) {
  for (const SchedulerDef& d : kSchedulers) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

std::string schedulerNames() {
  std::string out;
  for (const SchedulerDef& d : kSchedulers) {
    if (!out.empty()) out += ", ";
    out += d.name;
  }
  return out;
}

}  // namespace meshlb
