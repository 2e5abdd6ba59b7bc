// Golden packets made by scapy (tests/data/gen_golden.py), loaded by name.
#pragma once

#include <arpa/inet.h>

#include <cstdint>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "meshlb/flow_table.h"

namespace meshlb::test {

inline Ipv4Addr v4(const char* s) {
  Ipv4Addr a;
  if (inet_pton(AF_INET, s, &a.v) != 1) throw std::runtime_error(std::string("bad IPv4 ") + s);
  return a;
}
inline Ipv6Addr v6(const char* s) {
  Ipv6Addr a;
  if (inet_pton(AF_INET6, s, a.b) != 1) throw std::runtime_error(std::string("bad IPv6 ") + s);
  return a;
}

using Bytes = std::vector<uint8_t>;

inline Bytes fromHex(const std::string& hex) {
  Bytes b;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    b.push_back(static_cast<uint8_t>(std::stoul(hex.substr(i, 2), nullptr, 16)));
  }
  return b;
}

inline const Bytes& golden(const std::string& name) {
  static const std::map<std::string, Bytes> all = [] {
    std::map<std::string, Bytes> m;
    std::ifstream in(MESHLB_TEST_DATA_DIR "/golden_packets.txt");
    if (!in) throw std::runtime_error("cannot open golden_packets.txt");
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      std::istringstream ls(line);
      std::string n, hex;
      ls >> n >> hex;
      m[n] = fromHex(hex);
    }
    return m;
  }();
  auto it = all.find(name);
  if (it == all.end()) throw std::runtime_error("no golden packet " + name);
  return it->second;
}

inline std::string toHex(const Bytes& b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (uint8_t c : b) {
    s += d[c >> 4];
    s += d[c & 15];
  }
  return s;
}

}  // namespace meshlb::test
