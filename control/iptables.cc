#include "iptables.h"

#include <arpa/inet.h>

#include <optional>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace meshlb {

namespace {

absl::Status bad(const std::string& m) { return absl::InvalidArgumentError(m); }

absl::StatusOr<std::pair<IpAddr, uint8_t>> parseNet(const std::string& s) {
  std::string addr = s;
  uint32_t len = 32;
  if (auto slash = s.find('/'); slash != std::string::npos) {
    addr = s.substr(0, slash);
    if (!absl::SimpleAtoi(s.substr(slash + 1), &len) || len > 32) {
      return bad(absl::StrCat("invalid prefix length in '", s, "'"));
    }
  }
  auto a = IpAddr::parse(addr);
  if (!a.ok() || !a->isV4()) {
    return bad(absl::StrCat("host/network '", s, "' not found (meshlb takes numeric IPv4 only)"));
  }
  const uint32_t net = a->v4().v & ipv4Mask(static_cast<uint8_t>(len));
  return std::make_pair(IpAddr::of(Ipv4Addr{net}), static_cast<uint8_t>(len));
}

absl::StatusOr<uint32_t> parseNumber(const std::string& s, const char* what, uint64_t max) {
  uint64_t v;
  bool ok = s.rfind("0x", 0) == 0 ? absl::SimpleHexAtoi(s.substr(2), &v) : absl::SimpleAtoi(s, &v);
  if (!ok || v > max) return bad(absl::StrCat("invalid ", what, " '", s, "'"));
  return static_cast<uint32_t>(v);
}

enum class Cmd { kNone, kAppend, kInsert, kDelete, kCheck, kFlush, kSave, kList };

struct Parsed {
  IptTable table = IptTable::kNat;
  Cmd cmd = Cmd::kNone;
  std::optional<IptChain> chain;
  std::optional<uint32_t> rulenum;
  IptRule rule;
  bool have_target = false;
  bool have_mark = false;
  bool numeric = false;
};

// Table and chain decide what is supported, so they are judged before the rest:
// a DNAT rule is refused for its chain, not for its first unknown option.
absl::Status checkTableAndChain(const std::vector<std::string>& args) {
  std::string table = "filter";
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "-t" || args[i] == "--table") table = args[i + 1];
  }
  const std::optional<IptTable> t = tableByName(table);
  if (!t) {
    return bad(absl::StrCat("table \"", table,
                            "\" is not supported by meshlb (it takes -t nat and -t mangle)"));
  }
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    const std::string& a = args[i];
    const bool rule_cmd = a == "-A" || a == "--append" || a == "-I" || a == "--insert" ||
                          a == "-D" || a == "--delete" || a == "-C" || a == "--check";
    if (!rule_cmd) continue;
    const std::string& name = args[i + 1];
    const std::optional<IptChain> c = chainByName(*t, name);
    if (!c) return bad(absl::StrCat("chain \"", name, "\" does not exist in table ", table));
    if (!chainTakesRules(*t, *c)) {
      return bad(absl::StrCat("rules in ", table, " ", name, " are not supported by meshlb yet"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Parsed> parse(const std::vector<std::string>& args) {
  if (auto st = checkTableAndChain(args); !st.ok()) return st;
  Parsed p;
  std::string chain;
  std::set<std::string> seen;  // single-valued options given so far
  bool match_ipvs = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> absl::StatusOr<std::string> {
      if (i + 1 >= args.size()) return bad(absl::StrCat("option \"", a, "\" requires an argument"));
      return args[++i];
    };
    auto command = [&](Cmd c, bool chain_required) -> absl::Status {
      if (p.cmd != Cmd::kNone) return bad("only one command (-A -I -D -F -S -L) at a time");
      p.cmd = c;
      if (i + 1 < args.size() && args[i + 1][0] != '-') {
        chain = args[++i];
      } else if (chain_required) {
        return bad(absl::StrCat("option \"", a, "\" requires a chain"));
      }
      // -I and -D take an optional rule number after the chain.
      uint32_t n;
      if ((c == Cmd::kInsert || c == Cmd::kDelete) && i + 1 < args.size() &&
          absl::SimpleAtoi(args[i + 1], &n)) {
        if (n == 0) return bad("invalid rule number 0");
        p.rulenum = n;
        ++i;
      }
      return absl::OkStatus();
    };
    auto net = [&](bool src) -> absl::Status {
      auto v = value();
      if (!v.ok()) return v.status();
      auto n = parseNet(*v);
      if (!n.ok()) return n.status();
      (src ? p.rule.src_net : p.rule.dst_net) = n->first;
      (src ? p.rule.src_len : p.rule.dst_len) = n->second;
      (src ? p.rule.has_src : p.rule.has_dst) = true;
      return absl::OkStatus();
    };
    auto port = [&](uint16_t* out) -> absl::Status {
      if (p.rule.proto == 0) {
        return bad(absl::StrCat("option \"", a, "\" needs \"-p tcp\" or \"-p udp\" before it"));
      }
      auto v = value();
      if (!v.ok()) return v.status();
      auto n = parseNumber(*v, "port", 65535);
      if (!n.ok() || *n == 0) return bad(absl::StrCat("invalid port '", *v, "' (no ranges)"));
      *out = static_cast<uint16_t>(*n);
      return absl::OkStatus();
    };
    // iptables refuses a single-valued option given twice ("multiple -p flags not allowed").
    auto once = [&](const char* name) -> absl::Status {
      if (!seen.insert(name).second) {
        return bad(absl::StrCat("multiple ", name, " flags not allowed"));
      }
      return absl::OkStatus();
    };
    // MARK's actions, each one (value, xor mask) as the kernel applies them:
    // mark = (mark & ~mask) ^ value (libxt_MARK, xt_MARK revision 2).
    auto markAction = [&](const std::string& opt) -> absl::Status {
      if (auto st2 =
              once("MARK action (--set-mark, --set-xmark, --and-mark, --or-mark, --xor-mark)");
          !st2.ok()) {
        return bad(absl::StrCat("MARK: only one action allowed (\"", opt, "\" is the second)"));
      }
      auto v = value();
      if (!v.ok()) return v.status();
      std::string text = *v, mask_text;
      if (auto slash = text.find('/'); slash != std::string::npos) {
        mask_text = text.substr(slash + 1);
        text.resize(slash);
      }
      auto n = parseNumber(text, "mark", 0xffffffffu);
      if (!n.ok()) return n.status();
      uint32_t mask = 0xffffffffu;
      if (!mask_text.empty()) {
        if (opt != "--set-mark" && opt != "--set-xmark") {
          return bad(absl::StrCat("MARK: \"", opt, "\" takes no mask"));
        }
        auto m = parseNumber(mask_text, "mark mask", 0xffffffffu);
        if (!m.ok()) return m.status();
        mask = *m;
      }
      if (opt == "--set-xmark") {
        p.rule.mark = *n, p.rule.mark_mask = mask;
      } else if (opt == "--set-mark") {
        p.rule.mark = *n, p.rule.mark_mask = mask | *n;
      } else if (opt == "--and-mark") {
        p.rule.mark = 0, p.rule.mark_mask = ~*n;
      } else if (opt == "--or-mark") {
        p.rule.mark = *n, p.rule.mark_mask = *n;
      } else {  // --xor-mark
        p.rule.mark = *n, p.rule.mark_mask = 0;
      }
      p.have_mark = true;
      return absl::OkStatus();
    };
    absl::Status st;
    if (a == "-t" || a == "--table") {
      auto v = value();
      if (!v.ok()) return v.status();
      p.table = *tableByName(*v);  // checkTableAndChain vouched for it
    } else if (a == "-A" || a == "--append") {
      st = command(Cmd::kAppend, true);
    } else if (a == "-I" || a == "--insert") {
      st = command(Cmd::kInsert, true);
    } else if (a == "-D" || a == "--delete") {
      st = command(Cmd::kDelete, true);
    } else if (a == "-C" || a == "--check") {
      st = command(Cmd::kCheck, true);
    } else if (a == "-w" || a == "--wait") {
      // The xtables lock's wait: meshlb has no lock to wait for. An optional seconds value.
      uint32_t secs;
      if (i + 1 < args.size() && absl::SimpleAtoi(args[i + 1], &secs)) ++i;
    } else if (a == "-W" || a == "--wait-interval") {
      auto v = value();
      if (!v.ok()) return v.status();
    } else if (a == "-F" || a == "--flush") {
      st = command(Cmd::kFlush, false);
    } else if (a == "-S" || a == "--list-rules") {
      st = command(Cmd::kSave, false);
    } else if (a == "-L" || a == "--list") {
      st = command(Cmd::kList, false);
    } else if (a == "-n" || a == "--numeric") {
      p.numeric = true;
    } else if (a == "-s" || a == "--source") {
      st = once("-s");
      if (st.ok()) st = net(true);
    } else if (a == "-d" || a == "--destination") {
      st = once("-d");
      if (st.ok()) st = net(false);
    } else if (a == "-p" || a == "--protocol") {
      if (auto o = once("-p"); !o.ok()) return o;
      auto v = value();
      if (!v.ok()) return v.status();
      if (*v == "tcp") {
        p.rule.proto = 6;
      } else if (*v == "udp") {
        p.rule.proto = 17;
      } else if (*v != "all") {
        return bad(
            absl::StrCat("protocol \"", *v, "\" is not supported by meshlb (tcp, udp, all)"));
      }
    } else if (a == "--sport" || a == "--source-port") {
      st = once("--sport");
      if (st.ok()) st = port(&p.rule.sport);
    } else if (a == "--dport" || a == "--destination-port") {
      st = once("--dport");
      if (st.ok()) st = port(&p.rule.dport);
    } else if (a == "-m" || a == "--match") {
      auto v = value();
      if (!v.ok()) return v.status();
      if (*v == "ipvs") {
        match_ipvs = true;
      } else if ((*v == "tcp" && p.rule.proto == 6) || (*v == "udp" && p.rule.proto == 17)) {
        // implied by -p, as iptables-save writes it
      } else {
        return bad(absl::StrCat("match \"", *v, "\" is not supported by meshlb"));
      }
    } else if (a == "--ipvs") {
      if (!match_ipvs) return bad("option \"--ipvs\" needs \"-m ipvs\" before it");
      p.rule.ipvs = true;
    } else if (a == "-j" || a == "--jump") {
      if (auto o = once("-j"); !o.ok()) return o;
      auto v = value();
      if (!v.ok()) return v.status();
      if (*v == "MASQUERADE") {
        p.rule.target = RuleTarget::kMasquerade;
      } else if (*v == "SNAT") {
        p.rule.target = RuleTarget::kSnat;
      } else if (*v == "MARK") {
        p.rule.target = RuleTarget::kMark;
      } else {
        return bad(absl::StrCat("target \"", *v, "\" is not supported by meshlb"));
      }
      p.have_target = true;
    } else if (a == "--to-source") {
      if (auto o = once("--to-source"); !o.ok()) {
        return bad("SNAT: multiple --to-source not supported");
      }
      auto v = value();
      if (!v.ok()) return v.status();
      auto addr = IpAddr::parse(*v);
      if (!addr.ok() || !addr->isV4()) {
        return bad(absl::StrCat("bad --to-source \"", *v,
                                "\" (meshlb takes one IPv4 address, no port range)"));
      }
      p.rule.to_source = *addr;
    } else if (a == "--set-mark" || a == "--set-xmark" || a == "--and-mark" || a == "--or-mark" ||
               a == "--xor-mark") {
      st = markAction(a);
    } else {
      return bad(absl::StrCat("option \"", a, "\" is not supported by meshlb"));
    }
    if (!st.ok()) return st;
  }
  if (p.cmd == Cmd::kNone) return bad("no command specified");
  if (match_ipvs && !p.rule.ipvs) return bad("IPVS: At least one option is required");
  if (p.have_mark && p.rule.target != RuleTarget::kMark) {
    return bad("MARK options need \"-j MARK\" before them");
  }
  const bool rule_cmd = p.cmd == Cmd::kAppend || p.cmd == Cmd::kInsert || p.cmd == Cmd::kCheck ||
                        (p.cmd == Cmd::kDelete && !p.rulenum);
  if (!chain.empty()) {
    p.chain = chainByName(p.table, chain);
    if (!p.chain) {
      return bad(
          absl::StrCat("chain \"", chain, "\" does not exist in table ", tableName(p.table)));
    }
  }
  if (!rule_cmd) return p;
  if (!p.have_target) {
    return bad(p.table == IptTable::kNat
                   ? "a target is required: -j SNAT --to-source ADDR or -j MASQUERADE"
                   : "a target is required: -j MARK --set-mark M");
  }
  if (p.rule.target == RuleTarget::kMark && !p.have_mark) {
    return bad(
        "MARK target: one of --set-mark, --set-xmark, --and-mark, --or-mark, --xor-mark is "
        "required");
  }
  if (auto st = IptablesModel::check(p.table, *p.chain, p.rule); !st.ok()) return st;
  return p;
}

std::string markHex(uint32_t m) { return absl::StrFormat("0x%x", m); }

// iptables -L's words for a MARK rule (libxt_MARK's mark_tg_print).
std::string markAction(const IptRule& r) {
  if (r.mark_mask == 0xffffffffu) return absl::StrCat("MARK set ", markHex(r.mark));
  if (r.mark == 0) return absl::StrCat("MARK and ", markHex(~r.mark_mask));
  if (r.mark == r.mark_mask) return absl::StrCat("MARK or ", markHex(r.mark));
  if (r.mark_mask == 0) return absl::StrCat("MARK xor ", markHex(r.mark));
  return absl::StrCat("MARK xset ", markHex(r.mark), "/", markHex(r.mark_mask));
}

// iptables-save syntax of a rule, without "-A CHAIN".
std::string ruleSpec(const IptRule& r) {
  std::string s;
  if (r.has_src) absl::StrAppend(&s, "-s ", r.src_net.str(), "/", r.src_len, " ");
  if (r.has_dst) absl::StrAppend(&s, "-d ", r.dst_net.str(), "/", r.dst_len, " ");
  if (r.proto) {
    const char* p = r.proto == 6 ? "tcp" : "udp";
    absl::StrAppend(&s, "-p ", p, " ");
    if (r.sport || r.dport) absl::StrAppend(&s, "-m ", p, " ");
    if (r.sport) absl::StrAppend(&s, "--sport ", r.sport, " ");
    if (r.dport) absl::StrAppend(&s, "--dport ", r.dport, " ");
  }
  if (r.ipvs) s += "-m ipvs --ipvs ";
  switch (r.target) {
    case RuleTarget::kMasquerade:
      s += "-j MASQUERADE";
      break;
    case RuleTarget::kSnat:
      absl::StrAppend(&s, "-j SNAT --to-source ", r.to_source.str());
      break;
    case RuleTarget::kMark:
      absl::StrAppend(&s, "-j MARK --set-xmark ", markHex(r.mark), "/", markHex(r.mark_mask));
      break;
  }
  return s;
}

void listChain(std::string& out, const char* chain, const std::vector<IptRule>& rules,
               bool numeric) {
  absl::StrAppend(&out, "Chain ", chain, " (policy ACCEPT)\n");
  out += "target     prot opt source               destination         \n";
  const std::string any = numeric ? "0.0.0.0/0" : "anywhere";
  for (const IptRule& r : rules) {
    std::string src = r.has_src ? absl::StrCat(r.src_net.str(), "/", r.src_len) : any;
    std::string dst = r.has_dst ? absl::StrCat(r.dst_net.str(), "/", r.dst_len) : any;
    std::string extra;
    auto add = [&](const std::string& x) { absl::StrAppend(&extra, extra.empty() ? "" : " ", x); };
    const char* proto = r.proto == 6 ? "tcp" : r.proto == 17 ? "udp" : "all";
    if (r.sport) add(absl::StrCat(proto, " spt:", r.sport));
    if (r.dport) add(absl::StrCat(proto, " dpt:", r.dport));
    if (r.ipvs) add("ipvs");
    const char* target = "SNAT";
    if (r.target == RuleTarget::kSnat) add(absl::StrCat("to:", r.to_source.str()));
    if (r.target == RuleTarget::kMasquerade) target = "MASQUERADE";
    if (r.target == RuleTarget::kMark) {
      target = "MARK";
      add(markAction(r));
    }
    absl::StrAppend(&out, absl::StrFormat("%-10s %-4s %-3s %-20s %-20s %s\n", target, proto, "--",
                                          src, dst, extra));
  }
}

}  // namespace

std::vector<std::string> iptablesRules(const IptablesModel& m) {
  std::vector<std::string> out;
  for (IptTable t : {IptTable::kMangle, IptTable::kNat}) {
    for (IptChain c : chainsOf(t)) {
      for (const IptRule& r : m.rules(t, c)) {
        out.push_back(
            absl::StrCat("iptables -t ", tableName(t), " -A ", chainName(c), " ", ruleSpec(r)));
      }
    }
  }
  return out;
}

absl::StatusOr<std::string> runIptables(IptablesModel& m, const std::vector<std::string>& args) {
  auto parsed = parse(args);
  if (!parsed.ok()) return parsed.status();
  const Parsed& p = *parsed;
  switch (p.cmd) {
    case Cmd::kAppend:
      if (auto st = m.append(p.table, *p.chain, p.rule); !st.ok()) return st;
      return std::string();
    case Cmd::kInsert:
      if (auto st = m.insert(p.table, *p.chain, p.rulenum.value_or(1), p.rule); !st.ok()) return st;
      return std::string();
    case Cmd::kDelete:
      if (auto st = p.rulenum ? m.removeAt(p.table, *p.chain, *p.rulenum)
                              : m.remove(p.table, *p.chain, p.rule);
          !st.ok()) {
        return st;
      }
      return std::string();
    case Cmd::kCheck:
      for (const IptRule& r : m.rules(p.table, *p.chain)) {
        if (r == p.rule) return std::string();
      }
      return bad("Bad rule (does a matching rule exist in that chain?)");
    case Cmd::kFlush:
      m.flush(p.table, p.chain);
      return std::string();
    case Cmd::kSave:
    case Cmd::kList: {
      std::string out;
      bool first = true;
      if (p.cmd == Cmd::kSave) {
        for (IptChain c : chainsOf(p.table)) {
          if (!p.chain || *p.chain == c) absl::StrAppend(&out, "-P ", chainName(c), " ACCEPT\n");
        }
      }
      for (IptChain c : chainsOf(p.table)) {
        if (p.chain && *p.chain != c) continue;
        if (p.cmd == Cmd::kSave) {
          for (const IptRule& r : m.rules(p.table, c)) {
            absl::StrAppend(&out, "-A ", chainName(c), " ", ruleSpec(r), "\n");
          }
        } else {
          if (!first) out += "\n";
          first = false;
          listChain(out, chainName(c), m.rules(p.table, c), p.numeric);
        }
      }
      return out;
    }
    case Cmd::kNone:
      break;
  }
  return bad("no command specified");
}

// ---- the model -------------------------------------------------------------------

const char* tableName(IptTable t) { return t == IptTable::kNat ? "nat" : "mangle"; }

const char* chainName(IptChain c) {
  switch (c) {
    case IptChain::kPrerouting:
      return "PREROUTING";
    case IptChain::kInput:
      return "INPUT";
    case IptChain::kForward:
      return "FORWARD";
    case IptChain::kOutput:
      return "OUTPUT";
    case IptChain::kPostrouting:
      return "POSTROUTING";
  }
  return "?";
}

const std::vector<IptChain>& chainsOf(IptTable t) {
  using C = IptChain;
  static const std::vector<IptChain> nat{C::kPrerouting, C::kInput, C::kOutput, C::kPostrouting};
  static const std::vector<IptChain> mangle{C::kPrerouting, C::kInput, C::kForward, C::kOutput,
                                            C::kPostrouting};
  return t == IptTable::kNat ? nat : mangle;
}

std::optional<IptTable> tableByName(const std::string& name) {
  if (name == "nat") return IptTable::kNat;
  if (name == "mangle") return IptTable::kMangle;
  return std::nullopt;
}

std::optional<IptChain> chainByName(IptTable t, const std::string& name) {
  for (IptChain c : chainsOf(t)) {
    if (name == chainName(c)) return c;
  }
  return std::nullopt;
}

bool chainTakesRules(IptTable t, IptChain c) {
  return t == IptTable::kNat ? c == IptChain::kPostrouting
                             : c == IptChain::kPrerouting || c == IptChain::kInput;
}

absl::Status IptablesModel::check(IptTable t, IptChain c, const IptRule& r) {
  if (!chainTakesRules(t, c)) {
    return bad(absl::StrCat("rules in ", tableName(t), " ", chainName(c),
                            " are not supported by meshlb yet"));
  }
  if (t == IptTable::kNat) {
    if (r.target == RuleTarget::kMark) return bad("target \"MARK\" belongs in the mangle table");
    if (r.target == RuleTarget::kSnat && r.to_source.family == Family::kNone) {
      return bad("SNAT needs --to-source");
    }
    if (r.target == RuleTarget::kMasquerade && r.to_source.family != Family::kNone) {
      return bad("MASQUERADE takes no --to-source");
    }
    if (r.has_src || r.proto || r.sport || r.dport) {
      return bad("meshlb's nat POSTROUTING rules match on -d only (and -m ipvs --ipvs)");
    }
  } else {
    if (r.target != RuleTarget::kMark)
      return bad("only target \"MARK\" is supported in the mangle table");
    if (r.ipvs) return bad("-m ipvs is not supported in the mangle table");
  }
  return absl::OkStatus();
}

std::vector<IptRule>* IptablesModel::mutableRules(IptTable t, IptChain c) {
  if (t == IptTable::kNat) return c == IptChain::kPostrouting ? &nat_postrouting_ : nullptr;
  if (c == IptChain::kPrerouting) return &mangle_prerouting_;
  if (c == IptChain::kInput) return &mangle_input_;
  return nullptr;
}

const std::vector<IptRule>& IptablesModel::rules(IptTable t, IptChain c) const {
  static const std::vector<IptRule> none;
  const auto* r = const_cast<IptablesModel*>(this)->mutableRules(t, c);
  return r ? *r : none;
}

absl::Status IptablesModel::append(IptTable t, IptChain c, const IptRule& r) {
  return insert(t, c, static_cast<uint32_t>(rules(t, c).size() + 1), r);
}

absl::Status IptablesModel::insert(IptTable t, IptChain c, uint32_t position, const IptRule& r) {
  if (auto st = check(t, c, r); !st.ok()) return st;
  std::vector<IptRule>* rs = mutableRules(t, c);
  if (position == 0 || position > rs->size() + 1) return bad("index of insertion too big");
  rs->insert(rs->begin() + (position - 1), r);
  return absl::OkStatus();
}

absl::Status IptablesModel::remove(IptTable t, IptChain c, const IptRule& r) {
  if (std::vector<IptRule>* rs = mutableRules(t, c)) {
    for (auto it = rs->begin(); it != rs->end(); ++it) {
      if (*it == r) {
        rs->erase(it);
        return absl::OkStatus();
      }
    }
  }
  return bad("Bad rule (does a matching rule exist in that chain?)");
}

absl::Status IptablesModel::removeAt(IptTable t, IptChain c, uint32_t position) {
  std::vector<IptRule>* rs = mutableRules(t, c);
  if (!rs || position == 0 || position > rs->size()) return bad("index of deletion too big");
  rs->erase(rs->begin() + (position - 1));
  return absl::OkStatus();
}

void IptablesModel::flush(IptTable t, std::optional<IptChain> c) {
  for (IptChain each : chainsOf(t)) {
    if (c && *c != each) continue;
    if (std::vector<IptRule>* rs = mutableRules(t, each)) rs->clear();
  }
}

}  // namespace meshlb
