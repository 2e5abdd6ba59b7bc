// `meshlbctl iptables ...`: the part of iptables Docker Swarm's routing mesh uses
// that meshlb implements so far: `-t nat` POSTROUTING SNAT / MASQUERADE for IPVS
// traffic (full NAT). Everything else is refused with the option named.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace meshlb {

struct NatRule {
  bool ipvs = false;         // -m ipvs --ipvs
  uint32_t dst_net = 0;      // network order; with dst_len 0 matches everything
  uint8_t dst_len = 0;
  bool has_dst = false;
  bool masquerade = false;   // -j MASQUERADE, else -j SNAT --to-source
  uint32_t to_source = 0;    // network order
  friend bool operator==(const NatRule&, const NatRule&) = default;
};

struct IptablesModel {
  std::vector<NatRule> postrouting;  // in order; first match wins
};

absl::StatusOr<std::string> runIptables(IptablesModel& model, const std::vector<std::string>& args);

// iptables-save syntax of one rule, without the "-A POSTROUTING " prefix.
std::string natRuleSpec(const NatRule& r);

}  // namespace meshlb
