// Byte-order helpers for reading and writing packet fields in place.
// Packet memory is unaligned by nature (IP follows a 14-byte Ethernet header),
// so every access goes through memcpy, which compiles to a plain load/store.
#pragma once

#include <cstdint>
#include <cstring>

namespace meshlb {

inline uint16_t load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint32_t load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline void store16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
inline void store32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

// Host-order values from big-endian wire fields.
inline uint16_t loadBe16(const uint8_t* p) { return __builtin_bswap16(load16(p)); }
inline uint32_t loadBe32(const uint8_t* p) { return __builtin_bswap32(load32(p)); }
inline void storeBe16(uint8_t* p, uint16_t v) { store16(p, __builtin_bswap16(v)); }
inline void storeBe32(uint8_t* p, uint32_t v) { store32(p, __builtin_bswap32(v)); }

constexpr uint16_t hton16(uint16_t v) { return __builtin_bswap16(v); }
constexpr uint32_t hton32(uint32_t v) { return __builtin_bswap32(v); }

}  // namespace meshlb
