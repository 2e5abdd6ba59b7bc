#include "meshlb/types.h"

#include <arpa/inet.h>

#include "absl/strings/str_cat.h"

namespace meshlb {

absl::StatusOr<IpAddr> IpAddr::parse(std::string_view text) {
  const std::string s(text);
  IpAddr a;
  if (inet_pton(AF_INET, s.c_str(), a.b) == 1) {
    a.family = Family::kIpv4;
    return a;
  }
  if (inet_pton(AF_INET6, s.c_str(), a.b) == 1) {
    a.family = Family::kIpv6;
    return a;
  }
  return absl::InvalidArgumentError(absl::StrCat("invalid IP address '", s, "'"));
}

std::string IpAddr::str() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family == Family::kNone) return "-";
  inet_ntop(isV4() ? AF_INET : AF_INET6, b, buf, sizeof(buf));
  return buf;
}

}  // namespace meshlb
