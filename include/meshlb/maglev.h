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

// The table size for a service of `backends` servers: the smallest of a fixed list
// of primes (about doubling, 251 .. 655373) that is at least 100 per server, as the
// paper advises for an imbalance near 1%; 655373 past 6553 servers. Memory is thus
// proportional to the servers (about 400 bytes each), not 256 KiB per service. The
// size changes only where the server count crosses a step (3, 6, 11, 21, 41, 82,
// 164, 328, 656, 1311, 2622 servers): then every slot is computed afresh, and mh's
// choice for new connections moves as after any rebuild (tracked ones stay).
uint32_t maglevSizeFor(size_t backends);

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
