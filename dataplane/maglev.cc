#include "meshlb/maglev.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "meshlb/hash.h"

namespace meshlb {

namespace {
// Fixed seeds: changing them changes every appliance's assignments.
constexpr uint64_t kOffsetSeed = 0x6d61676c65766f66ull;  // "maglevof"
constexpr uint64_t kSkipSeed = 0x6d61676c6576736bull;    // "maglevsk"
}  // namespace

bool MaglevTable::isPrime(uint32_t n) {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (uint32_t d = 3; static_cast<uint64_t>(d) * d <= n; d += 2) {
    if (n % d == 0) return false;
  }
  return true;
}

absl::StatusOr<MaglevTable> MaglevTable::build(std::vector<MaglevBackend> backends,
                                               uint32_t size) {
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

  struct Entry {
    uint32_t id;
    uint64_t weight;
    uint64_t next_pick;  // in units of iteration * weight (Envoy's weighted Maglev)
    uint32_t pos;        // current permutation position
    uint32_t skip;
  };
  std::vector<Entry> entries;
  uint64_t max_weight = 0;
  for (const MaglevBackend& b : backends) {
    if (b.weight == 0) continue;
    uint64_t offset = hashBytes(b.key.data(), b.key.size(), kOffsetSeed) % size;
    uint64_t skip = hashBytes(b.key.data(), b.key.size(), kSkipSeed) % (size - 1) + 1;
    entries.push_back({b.id, b.weight, 0, static_cast<uint32_t>(offset),
                       static_cast<uint32_t>(skip)});
    max_weight = std::max<uint64_t>(max_weight, b.weight);
  }

  MaglevTable t;
  t.size_ = size;
  t.slots_.assign(size, 0);
  if (entries.empty()) return t;

  // Each round every backend whose accrued share has reached its next pick takes
  // its next preferred free slot. Unweighted, that is plain round robin, so every
  // backend ends with floor(M/N) or ceil(M/N) slots (the paper's guarantee);
  // weighted, a backend with weight w picks w/max_weight as often.
  // Occupancy is probed in a bitmap (8 KiB at M=65537: L1-resident) rather than in
  // the 4-byte slots, since population is dominated by probes of taken slots.
  std::vector<uint64_t> taken((size + 63) / 64, 0);
  uint32_t filled = 0;
  for (uint64_t round = 1; filled < size; ++round) {
    for (Entry& e : entries) {
      if (round * e.weight < e.next_pick) continue;
      e.next_pick += max_weight;
      while (taken[e.pos >> 6] & (1ull << (e.pos & 63))) {
        e.pos += e.skip;
        if (e.pos >= size) e.pos -= size;
      }
      taken[e.pos >> 6] |= 1ull << (e.pos & 63);
      t.slots_[e.pos] = e.id;
      e.pos += e.skip;
      if (e.pos >= size) e.pos -= size;
      if (++filled == size) break;
    }
  }
  return t;
}

}  // namespace meshlb
