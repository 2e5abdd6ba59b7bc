// The schedulers: IPVS's algorithms, one function each, and the registry.
#include "meshlb/scheduler.h"

#include <algorithm>
#include <array>

namespace meshlb {

namespace {

// ip_vs_rr: the next server after the last one, skipping weight 0.
uint32_t pickRr(const ServiceSched& s, SchedState& st, const PickInput&) {
  const auto n = static_cast<uint32_t>(s.weights.size());
  if (n == 0 || s.max_weight == 0) return kNoBackend;
  if (st.last != SchedState::kNone && st.last >= n) st.last = n - 1;  // servers were removed
  uint32_t i = st.last == SchedState::kNone ? n - 1 : st.last;
  for (uint32_t k = 0; k < n; ++k) {
    i = (i + 1) % n;
    if (s.weights[i]) return st.last = i;
  }
  return kNoBackend;
}

// ip_vs_wrr: walk the servers, lowering the current weight by the gcd of the
// weights each time round; serve the first at or above it. When the servers or
// weights change the walk starts again (ip_vs_wrr_dest_changed): a current weight
// above the new maximum would otherwise find no server for many rounds.
uint32_t pickWrr(const ServiceSched& s, SchedState& st, const PickInput&) {
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
    if (s.weights[i] >= st.cw) return st.last = i;
  }
  return kNoBackend;
}

// mh: the Maglev table (built by prepareMh) over the client address hash.
uint32_t pickMh(const ServiceSched& s, SchedState&, const PickInput& in) {
  if (!s.maglev) return kNoBackend;
  const uint32_t id = s.maglev->lookup(in.client_hash);
  return id ? id - 1 : kNoBackend;
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

constexpr std::array kSchedulers = {
    SchedulerDef{"rr", nullptr, pickRr, false},
    SchedulerDef{"wrr", nullptr, pickWrr, false},
    SchedulerDef{"mh", prepareMh, pickMh, false},
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
