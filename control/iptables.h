// `meshlbctl iptables ...`: the part of iptables Docker Swarm's routing mesh uses:
//   -t mangle PREROUTING/INPUT  [-s NET] [-d NET] [-p tcp|udp [--sport P] [--dport P]]
//                               -j MARK --set-mark M   (selects a firewall-mark service)
//   -t nat POSTROUTING          [-m ipvs --ipvs] [-d NET] -j SNAT --to-source ADDR | MASQUERADE
// with -A -I -D -F -S -L. Everything else is refused with the option named.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace meshlb {

enum class RuleTarget : uint8_t { kSnat, kMasquerade, kMark };

struct IptRule {
  // Matches. Addresses network order; ports host order, 0 = any; proto 0 = all.
  bool has_src = false, has_dst = false;
  uint32_t src_net = 0, dst_net = 0;
  uint8_t src_len = 0, dst_len = 0;
  uint8_t proto = 0;
  uint16_t sport = 0, dport = 0;
  bool ipvs = false;  // -m ipvs --ipvs
  // Target.
  RuleTarget target = RuleTarget::kSnat;
  uint32_t to_source = 0;  // SNAT, network order
  uint32_t mark = 0;       // MARK
  friend bool operator==(const IptRule&, const IptRule&) = default;
};

struct IptablesModel {
  std::vector<IptRule> nat_postrouting;    // SNAT / MASQUERADE, first match wins
  std::vector<IptRule> mangle_prerouting;  // MARK, first match wins
  std::vector<IptRule> mangle_input;       // MARK, evaluated after PREROUTING
};

absl::StatusOr<std::string> runIptables(IptablesModel& model, const std::vector<std::string>& args);

// The model as replayable `iptables` command lines (for the state file).
std::vector<std::string> iptablesRules(const IptablesModel& model);

}  // namespace meshlb
