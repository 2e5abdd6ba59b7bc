#include "meshlb/maglev.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "meshlb/hash.h"

namespace meshlb {

namespace {
// Fixed seeds: changing them changes every appliance's assignments.
constexpr uint64_t kOffsetSeed = 0x6d61676c65766f66ull;  // "maglevof"
constexpr uint64_t kSkipSeed = 0x6d61676c6576736bull;    // "maglevsk"

struct Entry {
  uint32_t id;
  uint64_t weight;
  uint64_t next_pick;  // in units of iteration * weight (Envoy's weighted Maglev)
  uint32_t pos;        // current permutation position
  uint32_t skip;
};

// Occupancy is probed in a bitmap (8 KiB at M=65537: L1-resident) rather than in
// the 4-byte slots, since population is dominated by probes of taken slots.
class Occupancy {
 public:
  explicit Occupancy(uint32_t size) : size_(size), bits_((size + 63) / 64, 0) {}
  bool taken(uint32_t pos) const { return bits_[pos >> 6] >> (pos & 63) & 1; }
  void take(uint32_t pos) { bits_[pos >> 6] |= 1ull << (pos & 63); }
  uint32_t next(uint32_t pos, uint32_t skip) const {
    pos += skip;
    return pos >= size_ ? pos - size_ : pos;
  }

 private:
  uint32_t size_;
  std::vector<uint64_t> bits_;
};

// The definition: each round every backend whose accrued share has reached its
// next pick takes its next preferred free slot, in key order. Unweighted, that is
// plain round robin, so every backend ends with floor(M/N) or ceil(M/N) slots (the
// paper's guarantee); weighted, a backend with weight w picks w/max_weight as often.
void populateOneByOne(std::vector<Entry>& entries, uint64_t max_weight,
                      std::vector<uint32_t>& slots) {
  const auto size = static_cast<uint32_t>(slots.size());
  Occupancy occ(size);
  uint32_t filled = 0;
  for (uint64_t round = 1; filled < size; ++round) {
    for (Entry& e : entries) {
      if (round * e.weight < e.next_pick) continue;
      e.next_pick += max_weight;
      while (occ.taken(e.pos)) e.pos = occ.next(e.pos, e.skip);
      occ.take(e.pos);
      slots[e.pos] = e.id;
      e.pos = occ.next(e.pos, e.skip);
      if (++filled == size) break;
    }
  }
}

// The same table, faster: a search looks at four positions of the permutation per
// iteration. Each comes straight from the iteration's start (pos + k * skip, mod M,
// with k * skip mod M precomputed), so the four probes do not wait on each other
// and one branch decides the group; only the step to the next start chains from
// one iteration to the next, where one-by-one every probe waited on the previous
// position and had its own branch. The first free position of the group is the
// one the one-by-one search stops at, so every pick is the same.
void populate(std::vector<Entry>& entries, uint64_t max_weight, std::vector<uint32_t>& slots) {
  const auto size = static_cast<uint32_t>(slots.size());
  Occupancy occ(size);
  struct Steps {
    uint32_t s1, s2, s3, s4;  // k * skip mod size
  };
  std::vector<Steps> steps;
  steps.reserve(entries.size());
  for (const Entry& e : entries) {
    const uint64_t k = e.skip;
    steps.push_back({static_cast<uint32_t>(k), static_cast<uint32_t>(2 * k % size),
                     static_cast<uint32_t>(3 * k % size), static_cast<uint32_t>(4 * k % size)});
  }
  uint32_t filled = 0;
  for (uint64_t round = 1; filled < size; ++round) {
    for (size_t i = 0; i < entries.size(); ++i) {
      Entry& e = entries[i];
      if (round * e.weight < e.next_pick) continue;
      e.next_pick += max_weight;
      const Steps& st = steps[i];
      uint32_t pos = e.pos;
      for (;;) {
        const uint32_t p[4] = {pos, occ.next(pos, st.s1), occ.next(pos, st.s2),
                               occ.next(pos, st.s3)};
        const uint32_t taken =
            occ.taken(p[0]) | occ.taken(p[1]) << 1 | occ.taken(p[2]) << 2 | occ.taken(p[3]) << 3;
        if (taken != 0xf) {
          pos = p[__builtin_ctz(~taken)];
          break;
        }
        pos = occ.next(pos, st.s4);
      }
      occ.take(pos);
      slots[pos] = e.id;
      e.pos = occ.next(pos, e.skip);
      if (++filled == size) return;
    }
  }
}

}  // namespace

uint32_t maglevSizeFor(size_t backends) {
  static constexpr uint32_t kSizes[] = {251,   509,   1021,  2039,   4093,   8191,
                                        16381, 32749, 65537, 131071, 262139, kLargeMaglevSize};
  for (uint32_t m : kSizes) {
    if (m >= 100 * backends) return m;
  }
  return kLargeMaglevSize;
}

bool MaglevTable::isPrime(uint32_t n) {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (uint32_t d = 3; static_cast<uint64_t>(d) * d <= n; d += 2) {
    if (n % d == 0) return false;
  }
  return true;
}

absl::StatusOr<MaglevTable> MaglevTable::build(std::vector<MaglevBackend> backends, uint32_t size,
                                               bool reference) {
  if (size < 3 || !isPrime(size)) {
    return absl::InvalidArgumentError(
        absl::StrCat("maglev table size ", size, " is not a prime >= 3"));
  }
  std::sort(backends.begin(), backends.end(),
            [](const MaglevBackend& a, const MaglevBackend& b) { return a.key < b.key; });
  for (size_t i = 0; i < backends.size(); ++i) {
    if (backends[i].id == 0) return absl::InvalidArgumentError("maglev backend id 0 is reserved");
    if (i > 0 && backends[i].key == backends[i - 1].key) {
      return absl::InvalidArgumentError("duplicate maglev backend key");
    }
  }

  std::vector<Entry> entries;
  uint64_t max_weight = 0;
  for (const MaglevBackend& b : backends) {
    if (b.weight == 0) continue;
    uint64_t offset = hashBytes(b.key.data(), b.key.size(), kOffsetSeed) % size;
    uint64_t skip = hashBytes(b.key.data(), b.key.size(), kSkipSeed) % (size - 1) + 1;
    entries.push_back(
        {b.id, b.weight, 0, static_cast<uint32_t>(offset), static_cast<uint32_t>(skip)});
    max_weight = std::max<uint64_t>(max_weight, b.weight);
  }

  MaglevTable t;
  t.size_ = size;
  t.slots_.assign(size, 0);
  if (entries.empty()) return t;
  if (reference) {
    populateOneByOne(entries, max_weight, t.slots_);
  } else {
    populate(entries, max_weight, t.slots_);
  }
  return t;
}

}  // namespace meshlb
