// `meshlbctl iptables ...`: the part of iptables Docker Swarm's routing mesh uses:
//   -t mangle PREROUTING/INPUT  [-s NET] [-d NET] [-p tcp|udp [--sport P] [--dport P]]
//                               -j MARK --set-mark V[/M] | --set-xmark V[/M] | --and-mark V |
//                                       --or-mark V | --xor-mark V  (the packet's firewall mark)
//   -t nat POSTROUTING          [-m ipvs --ipvs] [-d NET] -j SNAT --to-source ADDR | MASQUERADE
// with -A -I -D -C -F -S -L (-w/--wait accepted: there is no lock to wait for). Every matching
// MARK rule applies, in order, PREROUTING then INPUT (the last write wins). Everything else
// is refused with the option named; a single-valued option given twice is refused.
//
// IptablesModel is the rule model every front end changes (the iptables parser,
// state restore, tests), as ServiceModel is for IPVS: it checks each rule against
// its table and chain, so a rule that could not be honoured never enters it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "meshlb/types.h"

namespace meshlb {

enum class RuleTarget : uint8_t { kSnat, kMasquerade, kMark };

struct IptRule {
  // Matches. Ports host order, 0 = any; proto 0 = all.
  bool has_src = false, has_dst = false;
  IpAddr src_net, dst_net;  // host bits clear
  uint8_t src_len = 0, dst_len = 0;
  uint8_t proto = 0;
  uint16_t sport = 0, dport = 0;
  bool ipvs = false;  // -m ipvs --ipvs
  // Target.
  RuleTarget target = RuleTarget::kSnat;
  IpAddr to_source;  // SNAT
  // MARK: the packet's mark becomes (mark & ~mark_mask) ^ mark (xt_MARK); --set-mark
  // V/M is V with mask M|V, --set-mark V is V/0xffffffff.
  uint32_t mark = 0;
  uint32_t mark_mask = 0xffffffffu;
  friend bool operator==(const IptRule&, const IptRule&) = default;
};

enum class IptTable : uint8_t { kNat, kMangle };
enum class IptChain : uint8_t { kPrerouting, kInput, kForward, kOutput, kPostrouting };

const char* tableName(IptTable t);
const char* chainName(IptChain c);
// The chains a table has, in iptables' listing order (absent for an unknown name).
const std::vector<IptChain>& chainsOf(IptTable t);
std::optional<IptTable> tableByName(const std::string& name);
std::optional<IptChain> chainByName(IptTable t, const std::string& name);
// Whether meshlb takes rules in the chain (the others list empty, policy ACCEPT).
bool chainTakesRules(IptTable t, IptChain c);

class IptablesModel {
 public:
  // Each checks the rule against the table and chain first; on error nothing changes.
  absl::Status append(IptTable t, IptChain c, const IptRule& r);
  absl::Status insert(IptTable t, IptChain c, uint32_t position, const IptRule& r);  // 1-based
  absl::Status remove(IptTable t, IptChain c, const IptRule& r);
  absl::Status removeAt(IptTable t, IptChain c, uint32_t position);  // 1-based
  // The whole table when `c` is empty.
  void flush(IptTable t, std::optional<IptChain> c = std::nullopt);
  // Whether the rule could go in (its matches and target suit the chain).
  static absl::Status check(IptTable t, IptChain c, const IptRule& r);

  // Rules of a chain, first match first; empty for a chain meshlb takes none in.
  const std::vector<IptRule>& rules(IptTable t, IptChain c) const;
  const std::vector<IptRule>& natPostrouting() const { return nat_postrouting_; }
  const std::vector<IptRule>& manglePrerouting() const { return mangle_prerouting_; }
  const std::vector<IptRule>& mangleInput() const { return mangle_input_; }
  friend bool operator==(const IptablesModel&, const IptablesModel&) = default;

 private:
  std::vector<IptRule>* mutableRules(IptTable t, IptChain c);
  std::vector<IptRule> nat_postrouting_;    // SNAT / MASQUERADE, first match wins
  std::vector<IptRule> mangle_prerouting_;  // MARK, first match wins
  std::vector<IptRule> mangle_input_;       // MARK, evaluated after PREROUTING
};

absl::StatusOr<std::string> runIptables(IptablesModel& model, const std::vector<std::string>& args);

// The model as `iptables` argument lines, replayable by runIptables (the state file).
std::vector<std::string> iptablesRules(const IptablesModel& model);

}  // namespace meshlb
