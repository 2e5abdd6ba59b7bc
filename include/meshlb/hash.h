// Fast, deterministic 64-bit hashing. Deterministic across processes and hosts
// (no per-process salt) wherever a seed is fixed, which Maglev needs: two
// appliances with the same configuration must pick the same task for a flow.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace meshlb {

// 64x64->128 multiply folded to 64 bits: the mixing step of wyhash/mum-hash.
inline uint64_t mum(uint64_t a, uint64_t b) {
  __uint128_t r = static_cast<__uint128_t>(a) * b;
  return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}

constexpr uint64_t kHashK0 = 0xa0761d6478bd642full;
constexpr uint64_t kHashK1 = 0xe7037ed1a0b428dbull;
constexpr uint64_t kHashK2 = 0x8ebc6af09c88c6e3ull;

inline uint64_t hashBytes(const void* data, size_t len, uint64_t seed) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t h = seed ^ kHashK0 ^ (len * kHashK2);
  while (len >= 16) {
    uint64_t a, b;
    std::memcpy(&a, p, 8);
    std::memcpy(&b, p + 8, 8);
    h = mum(a ^ kHashK1 ^ h, b ^ kHashK2);
    p += 16;
    len -= 16;
  }
  uint64_t a = 0, b = 0;
  if (len > 8) {
    std::memcpy(&a, p, 8);
    std::memcpy(&b, p + 8, len - 8);
  } else {
    std::memcpy(&a, p, len);
  }
  h = mum(a ^ kHashK1 ^ h, b ^ kHashK2 ^ len);
  return mum(h ^ kHashK0, h ^ kHashK1);
}

// Maps a 32-bit hash uniformly onto [0, n) without a division (Lemire).
inline uint32_t fastRange32(uint32_t hash, uint32_t n) {
  return static_cast<uint32_t>((static_cast<uint64_t>(hash) * n) >> 32);
}

}  // namespace meshlb
