// Maglev consistent hashing (Eisenbud et al., NSDI 2016), weighted.
//
// Built on the control thread, read by workers. Each backend's preference list is
// the permutation (offset + j * skip) mod M, where offset and skip come from two
// independent hashes of a stable backend key (its address and port), so the table
// depends only on the backend set: not on insertion order, not on the process.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace meshlb {

constexpr uint32_t kDefaultMaglevSize = 65537;
constexpr uint32_t kLargeMaglevSize = 655373;

struct MaglevBackend {
  std::string key;      // stable identity, e.g. the backend's address bytes and port
  uint32_t weight = 1;  // IPVS weight; 0 = quiescent (takes no slots)
  uint32_t id = 0;      // value stored in the table; must be non-zero
};

class MaglevTable {
 public:
  // Builds the lookup table. Rejects a non-prime or too small size, an id of 0,
  // and duplicate keys. With every weight 0 (or no backends) every slot is 0.
  // `reference` fills the table one pick at a time, as the paper states it: the
  // oracle the tests hold the faster population to (same table, always).
  static absl::StatusOr<MaglevTable> build(std::vector<MaglevBackend> backends,
                                           uint32_t size = kDefaultMaglevSize,
                                           bool reference = false);
  static bool isPrime(uint32_t n);

  // The backend id for a flow hash, 0 when the table has no backend.
  uint32_t lookup(uint64_t flow_hash) const {
    return slots_[fastRange(static_cast<uint32_t>(flow_hash), size_)];
  }
  uint32_t size() const { return size_; }
  const std::vector<uint32_t>& slots() const { return slots_; }

 private:
  static uint32_t fastRange(uint32_t h, uint32_t n) {
    return static_cast<uint32_t>((static_cast<uint64_t>(h) * n) >> 32);
  }
  uint32_t size_ = 0;
  std::vector<uint32_t> slots_;
};

}  // namespace meshlb
