// Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//
// One's-complement sums are byte-order independent as long as every operand is
// read the same way, so these work on raw 16-bit words straight from the packet
// and the results are stored back unswapped.
#pragma once

#include <cstddef>
#include <cstdint>

#include "meshlb/bytes.h"

namespace meshlb {

// Adds `len` bytes at `data` to a 32-bit accumulator (not folded).
inline uint64_t csumAdd(const uint8_t* data, size_t len, uint64_t sum = 0) {
  while (len >= 4) {
    sum += load32(data);
    data += 4;
    len -= 4;
  }
  if (len >= 2) {
    sum += load16(data);
    data += 2;
    len -= 2;
  }
  if (len) {
    uint8_t tail[2] = {*data, 0};
    sum += load16(tail);
  }
  return sum;
}

// Folds a one's-complement accumulator to 16 bits with end-around carries: 64 to
// 32 bits with one add and its carry, then 32 to 16 with the rotate of Linux's
// csum_fold (the upper half of s + ror16(s) is hi + lo + their carry). Nonzero
// input gives 1..0xffff, never 0.
inline uint16_t csumFold(uint64_t sum) {
  const auto lo = static_cast<uint32_t>(sum);
  uint32_t s = lo + static_cast<uint32_t>(sum >> 32);
  s += s < lo;
  s += (s >> 16) | (s << 16);
  return static_cast<uint16_t>(s >> 16);
}

// Full checksum of a buffer: the value to store in the header field.
inline uint16_t csumFull(const uint8_t* data, size_t len, uint64_t sum = 0) {
  return static_cast<uint16_t>(~csumFold(csumAdd(data, len, sum)));
}

// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). `field` is the checksum's location.
inline void csumReplace16(uint8_t* field, uint16_t old_word, uint16_t new_word) {
  uint64_t sum = static_cast<uint16_t>(~load16(field));
  sum += static_cast<uint16_t>(~old_word);
  sum += new_word;
  store16(field, static_cast<uint16_t>(~csumFold(sum)));
}

inline void csumReplace32(uint8_t* field, uint32_t old_word, uint32_t new_word) {
  uint64_t sum = static_cast<uint16_t>(~load16(field));
  sum += static_cast<uint32_t>(~old_word);
  sum += new_word;
  store16(field, static_cast<uint16_t>(~csumFold(sum)));
}

// Replaces a 16-byte (IPv6) address covered by a checksum.
inline void csumReplace128(uint8_t* field, const uint8_t* old_addr, const uint8_t* new_addr) {
  uint64_t sum = static_cast<uint16_t>(~load16(field));
  for (int i = 0; i < 16; i += 4) {
    sum += static_cast<uint32_t>(~load32(old_addr + i));
    sum += load32(new_addr + i);
  }
  store16(field, static_cast<uint16_t>(~csumFold(sum)));
}

}  // namespace meshlb
