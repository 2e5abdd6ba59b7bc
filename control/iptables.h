// `meshlbctl iptables ...`: the part of iptables Docker Swarm's routing mesh uses:
//   -t mangle PREROUTING/INPUT  [-s NET] [-d NET] [-p tcp|udp [--sport P] [--dport P]]
//                               -j MARK --set-mark V[/M] | --set-xmark V[/M] | --and-mark V |
//                                       --or-mark V | --xor-mark V  (the packet's firewall mark)
//   -t nat POSTROUTING          [-m ipvs --ipvs] [-d NET] -j SNAT --to-source ADDR | MASQUERADE
//   -t nat PREROUTING, OUTPUT and user chains (-N, -X):
//                               [-s NET] [-d NET] [-p tcp|udp [--sport P] [--dport P]]
//                               [-m addrtype --dst-type LOCAL]
//                               -j DNAT --to-destination ADDR[:PORT] | -j CHAIN | -j RETURN
// with -A -I -D -C -F -N -X -S -L (-w/--wait accepted: there is no lock to wait for). Every
// matching MARK rule applies, in order, PREROUTING then INPUT (the last write wins). Swarm's
// host-side form (`-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER-INGRESS`, DNAT in
// DOCKER-INGRESS) is evaluated for each new connection before IPVS sees it. Everything else
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

enum class RuleTarget : uint8_t { kSnat, kMasquerade, kMark, kDnat, kReturn, kJump };

struct IptRule {
  // Matches. Ports host order, 0 = any; proto 0 = all.
  bool has_src = false, has_dst = false;
  IpAddr src_net, dst_net;  // host bits clear
  uint8_t src_len = 0, dst_len = 0;
  uint8_t proto = 0;
  uint16_t sport = 0, dport = 0;
  bool ipvs = false;       // -m ipvs --ipvs
  bool dst_local = false;  // -m addrtype --dst-type LOCAL
  // Target.
  RuleTarget target = RuleTarget::kSnat;
  IpAddr to_source;  // SNAT
  // MARK: the packet's mark becomes (mark & ~mark_mask) ^ mark (xt_MARK); --set-mark
  // V/M is V with mask M|V, --set-mark V is V/0xffffffff.
  uint32_t mark = 0;
  uint32_t mark_mask = 0xffffffffu;
  IpAddr to_destination;  // DNAT
  uint16_t to_port = 0;   // DNAT, host order; 0 keeps the destination port
  std::string jump;       // kJump: the user chain
  friend bool operator==(const IptRule&, const IptRule&) = default;
};

enum class IptTable : uint8_t { kNat, kMangle };

const char* tableName(IptTable t);
std::optional<IptTable> tableByName(const std::string& name);
// The table's built-in chains, in iptables' listing order.
const std::vector<std::string>& builtinChains(IptTable t);

// One chain: a built-in one, or a user chain (-N) of the nat table.
struct IptChainRules {
  std::string name;
  bool builtin = false;
  std::vector<IptRule> rules;
  friend bool operator==(const IptChainRules&, const IptChainRules&) = default;
};

class IptablesModel {
 public:
  // iptables' rules (IPv4) or ip6tables' (IPv6): addresses of the other family are
  // refused, as each tool refuses them.
  explicit IptablesModel(Family family = Family::kIpv4);
  Family family() const { return family_; }
  // The tool's name: "iptables" or "ip6tables".
  const char* tool() const { return family_ == Family::kIpv6 ? "ip6tables" : "iptables"; }
  // Each checks the rule against the table and chain first; on error nothing changes.
  absl::Status append(IptTable t, const std::string& chain, const IptRule& r);
  absl::Status insert(IptTable t, const std::string& chain, uint32_t position,
                      const IptRule& r);  // 1-based
  absl::Status remove(IptTable t, const std::string& chain, const IptRule& r);
  absl::Status removeAt(IptTable t, const std::string& chain, uint32_t position);  // 1-based
  bool contains(IptTable t, const std::string& chain, const IptRule& r) const;
  // The whole table when `chain` is empty.
  absl::Status flush(IptTable t, const std::string& chain = "");
  absl::Status newChain(IptTable t, const std::string& name);     // -N
  absl::Status deleteChain(IptTable t, const std::string& name);  // -X (empty: every unused)
  // Whether the rule could go in that chain (its matches and target suit it).
  absl::Status check(IptTable t, const std::string& chain, const IptRule& r) const;

  // A chain of the table (built-in or user), or null.
  const IptChainRules* chain(IptTable t, const std::string& name) const;
  // Every chain of the table: built-in ones in iptables' order, then user chains by name.
  std::vector<const IptChainRules*> chains(IptTable t) const;
  // How many rules jump to the chain.
  uint32_t references(IptTable t, const std::string& name) const;
  // Rules of a chain, first match first; empty for a chain that does not exist.
  const std::vector<IptRule>& rules(IptTable t, const std::string& chain) const;
  const std::vector<IptRule>& natPostrouting() const {
    return rules(IptTable::kNat, "POSTROUTING");
  }
  const std::vector<IptRule>& natPrerouting() const { return rules(IptTable::kNat, "PREROUTING"); }
  const std::vector<IptRule>& manglePrerouting() const {
    return rules(IptTable::kMangle, "PREROUTING");
  }
  const std::vector<IptRule>& mangleInput() const { return rules(IptTable::kMangle, "INPUT"); }
  friend bool operator==(const IptablesModel&, const IptablesModel&) = default;

 private:
  IptChainRules* mutableChain(IptTable t, const std::string& name);
  bool reaches(IptTable t, const std::string& from, const std::string& to, int depth) const;
  std::vector<IptChainRules> tables_[2];  // by IptTable
  Family family_;
};

absl::StatusOr<std::string> runIptables(IptablesModel& model, const std::vector<std::string>& args);

// The model as `iptables` argument lines, replayable by runIptables (the state file).
std::vector<std::string> iptablesRules(const IptablesModel& model);

}  // namespace meshlb
