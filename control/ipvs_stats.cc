#include "ipvs_stats.h"

#include <cmath>

namespace meshlb {

IpvsStats::IpvsStats(uint16_t workers)
    : rates_(BackendId::kSlots, Backing::kLazy),
      services_(kMaxServices, Backing::kLazy),
      overload_(BackendId::kSlots, Backing::kLazy) {
  for (uint16_t w = 0; w < workers; ++w) {
    conn_counts_.emplace_back(2 * FlowTable4::kCountSlots, Backing::kLazy);
    backend_stats_.emplace_back(BackendId::kSlots, Backing::kLazy);
  }
}

IpvsStats::Totals IpvsStats::raw(uint32_t slot) const {
  Totals t{};
  for (const auto& w : backend_stats_) {
    const BackendStats& b = w[slot];
    t[0] += b.conns.load(std::memory_order_relaxed);
    t[1] += b.inpkts.load(std::memory_order_relaxed);
    t[2] += b.outpkts.load(std::memory_order_relaxed);
    t[3] += b.inbytes.load(std::memory_order_relaxed);
    t[4] += b.outbytes.load(std::memory_order_relaxed);
  }
  return t;
}

IpvsStats::Rates& IpvsStats::ratesOf(BackendId id) {
  Rates& r = rates_[id.slot()];
  const auto generation = static_cast<uint8_t>(id.generation() + 1);
  if (r.generation != generation) {
    // Another server than the slot's last: what its predecessor counted is not its.
    // (A slot seen for the first time counts from the start: it had no predecessor
    // the estimator saw, as it sees every server every period.)
    if (r.generation != 0) {
      r = Rates{};
      r.zero = r.last = r.attributed = r.start = raw(id.slot());
    }
    r.generation = generation;
  }
  return r;
}

DestCounters IpvsStats::counters(BackendId id) {
  const uint32_t slot = id.slot();
  DestCounters c;
  for (const auto& w : conn_counts_) {
    c.active += w[2 * slot].load(std::memory_order_relaxed);
    c.inactive += w[2 * slot + 1].load(std::memory_order_relaxed);
  }
  const Rates& r = ratesOf(id);
  const Totals t = raw(slot);
  c.conns = t[0] - r.zero[0];
  c.inpkts = t[1] - r.zero[1];
  c.outpkts = t[2] - r.zero[2];
  c.inbytes = t[3] - r.zero[3];
  c.outbytes = t[4] - r.zero[4];
  c.cps = rateOf(r, 0), c.inpps = rateOf(r, 1), c.outpps = rateOf(r, 2);
  c.inbps = rateOf(r, 3), c.outbps = rateOf(r, 4);
  return c;
}

void IpvsStats::zero(uint32_t service, const std::vector<BackendId>& ids) {
  // ip_vs_zero_stats: the counters count from here, and the estimates start again.
  attribute(service, ids);
  for (BackendId id : ids) {
    Rates& r = ratesOf(id);
    r.zero = r.last = raw(id.slot());
    r.est = {};
  }
  services_[service].zero = services_[service].sum;
}

void IpvsStats::attribute(uint32_t service, const std::vector<BackendId>& ids) {
  ServiceTotals& st = services_[service];
  for (BackendId id : ids) {
    Rates& r = ratesOf(id);
    const Totals t = raw(id.slot());
    for (size_t i = 0; i < t.size(); ++i) st.sum[i] += t[i] - r.attributed[i];
    r.attributed = t;
  }
}

DestCounters IpvsStats::serviceCounters(uint32_t service) const {
  const ServiceTotals& st = services_[service];
  DestCounters c;
  c.conns = st.sum[0] - st.zero[0];
  c.inpkts = st.sum[1] - st.zero[1];
  c.outpkts = st.sum[2] - st.zero[2];
  c.inbytes = st.sum[3] - st.zero[3];
  c.outbytes = st.sum[4] - st.zero[4];
  return c;
}

void IpvsStats::newService(uint32_t service) {
  retire(service);  // what a service gone from the slot still holds (if not retired yet)
}

namespace {
DestCounters countsOf(const std::array<uint64_t, 5>& t) {
  DestCounters c;
  c.conns = t[0], c.inpkts = t[1], c.outpkts = t[2], c.inbytes = t[3], c.outbytes = t[4];
  return c;
}
}  // namespace

DestCounters IpvsStats::totals(BackendId id) {
  DestCounters c = counters(id);  // the connection counts, and the slot's record current
  const Rates& r = ratesOf(id);
  const Totals t = raw(id.slot());
  Totals since{};
  for (size_t i = 0; i < t.size(); ++i) since[i] = t[i] - r.start[i];
  const DestCounters d = countsOf(since);
  c.conns = d.conns, c.inpkts = d.inpkts, c.outpkts = d.outpkts;
  c.inbytes = d.inbytes, c.outbytes = d.outbytes;
  return c;
}

DestCounters IpvsStats::serviceTotals(uint32_t service) const {
  return countsOf(services_[service].sum);
}

void IpvsStats::retire(uint32_t service) {
  const Totals& t = services_[service].sum;
  retired_.conns += t[0], retired_.inpkts += t[1], retired_.outpkts += t[2];
  retired_.inbytes += t[3], retired_.outbytes += t[4];
  services_[service] = ServiceTotals{};
}

// The kernel's estimator (ip_vs_est.c) keeps each rate in fixed point: connections
// and packets per second with 10 fractional bits, bytes per second with 5; each run
// moves the estimate a quarter of the way to the last interval's rate, and a reading
// rounds to the nearest integer. (Integer rates lost everything under 4 per second:
// at 2 connections per second, a quarter of 2 was 0 on every run, so --rate said 0.)
namespace {
constexpr int kFracBits[] = {10, 10, 10, 5, 5};  // conns, inpkts, outpkts, inbytes, outbytes
}

void IpvsStats::estimate(const std::vector<BackendId>& ids, double seconds) {
  if (seconds <= 0) return;
  for (BackendId id : ids) {
    Rates& r = ratesOf(id);
    const Totals t = raw(id.slot());
    for (size_t i = 0; i < t.size(); ++i) {
      const auto rate = static_cast<int64_t>(
          std::ldexp(static_cast<double>(t[i] - r.last[i]), kFracBits[i]) / seconds);
      const auto est = static_cast<int64_t>(r.est[i]);
      r.est[i] = static_cast<uint64_t>(est + ((rate - est) >> 2));
      r.last[i] = t[i];
    }
  }
}

uint64_t IpvsStats::rateOf(const Rates& r, size_t i) {
  const uint64_t half = (uint64_t{1} << kFracBits[i]) / 2 - 1;  // 0x1ff, 0xf: as the kernel reads
  return (r.est[i] + half) >> kFracBits[i];
}

}  // namespace meshlb
