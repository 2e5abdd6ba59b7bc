#include "iptables.h"

#include <arpa/inet.h>

#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace meshlb {

namespace {

absl::Status bad(const std::string& m) { return absl::InvalidArgumentError(m); }

std::string ip4(uint32_t a) {
  char b[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a, b, sizeof(b));
  return b;
}

uint32_t maskOf(uint8_t len) { return len == 0 ? 0 : htonl(~uint32_t{0} << (32 - len)); }

absl::StatusOr<std::pair<uint32_t, uint8_t>> parseNet(const std::string& s) {
  std::string addr = s;
  uint32_t len = 32;
  if (auto slash = s.find('/'); slash != std::string::npos) {
    addr = s.substr(0, slash);
    if (!absl::SimpleAtoi(s.substr(slash + 1), &len) || len > 32) {
      return bad(absl::StrCat("invalid prefix length in '", s, "'"));
    }
  }
  uint32_t a;
  if (inet_pton(AF_INET, addr.c_str(), &a) != 1) {
    return bad(absl::StrCat("host/network '", s, "' not found (meshlb takes numeric IPv4 only)"));
  }
  return std::make_pair(a & maskOf(static_cast<uint8_t>(len)), static_cast<uint8_t>(len));
}

absl::StatusOr<uint32_t> parseNumber(const std::string& s, const char* what, uint64_t max) {
  uint64_t v;
  bool ok = s.rfind("0x", 0) == 0 ? absl::SimpleHexAtoi(s.substr(2), &v) : absl::SimpleAtoi(s, &v);
  if (!ok || v > max) return bad(absl::StrCat("invalid ", what, " '", s, "'"));
  return static_cast<uint32_t>(v);
}

enum class Cmd { kNone, kAppend, kInsert, kDelete, kFlush, kSave, kList };

struct Chain {
  const char* name;
  bool rules;  // meshlb takes rules in it
};
constexpr Chain kNatChains[] = {
    {"PREROUTING", false}, {"INPUT", false}, {"OUTPUT", false}, {"POSTROUTING", true}};
constexpr Chain kMangleChains[] = {{"PREROUTING", true}, {"INPUT", true}, {"FORWARD", false},
                                   {"OUTPUT", false}, {"POSTROUTING", false}};

struct Parsed {
  std::string table = "filter";
  Cmd cmd = Cmd::kNone;
  std::string chain;
  std::optional<uint32_t> rulenum;
  IptRule rule;
  bool have_target = false;
  bool numeric = false;
};

template <size_t N>
const Chain* findChain(const Chain (&chains)[N], const std::string& name) {
  for (const Chain& c : chains) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

// Table and chain decide what is supported, so they are judged before the rest:
// a DNAT rule is refused for its chain, not for its first unknown option.
absl::Status checkTableAndChain(const std::vector<std::string>& args) {
  std::string table = "filter";
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "-t" || args[i] == "--table") table = args[i + 1];
  }
  if (table != "nat" && table != "mangle") {
    return bad(absl::StrCat("table \"", table,
                            "\" is not supported by meshlb (it takes -t nat and -t mangle)"));
  }
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    const std::string& a = args[i];
    const bool rule_cmd = a == "-A" || a == "--append" || a == "-I" || a == "--insert" ||
                          a == "-D" || a == "--delete";
    if (!rule_cmd) continue;
    const std::string& name = args[i + 1];
    const Chain* c = table == "nat" ? findChain(kNatChains, name) : findChain(kMangleChains, name);
    if (!c) return bad(absl::StrCat("chain \"", name, "\" does not exist in table ", table));
    if (!c->rules) {
      return bad(absl::StrCat("rules in ", table, " ", name, " are not supported by meshlb yet"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Parsed> parse(const std::vector<std::string>& args) {
  if (auto st = checkTableAndChain(args); !st.ok()) return st;
  Parsed p;
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
        p.chain = args[++i];
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
    absl::Status st;
    if (a == "-t" || a == "--table") {
      auto v = value();
      if (!v.ok()) return v.status();
      p.table = *v;
    } else if (a == "-A" || a == "--append") {
      st = command(Cmd::kAppend, true);
    } else if (a == "-I" || a == "--insert") {
      st = command(Cmd::kInsert, true);
    } else if (a == "-D" || a == "--delete") {
      st = command(Cmd::kDelete, true);
    } else if (a == "-F" || a == "--flush") {
      st = command(Cmd::kFlush, false);
    } else if (a == "-S" || a == "--list-rules") {
      st = command(Cmd::kSave, false);
    } else if (a == "-L" || a == "--list") {
      st = command(Cmd::kList, false);
    } else if (a == "-n" || a == "--numeric") {
      p.numeric = true;
    } else if (a == "-s" || a == "--source") {
      st = net(true);
    } else if (a == "-d" || a == "--destination") {
      st = net(false);
    } else if (a == "-p" || a == "--protocol") {
      auto v = value();
      if (!v.ok()) return v.status();
      if (*v == "tcp") {
        p.rule.proto = 6;
      } else if (*v == "udp") {
        p.rule.proto = 17;
      } else if (*v != "all") {
        return bad(absl::StrCat("protocol \"", *v, "\" is not supported by meshlb (tcp, udp, all)"));
      }
    } else if (a == "--sport" || a == "--source-port") {
      st = port(&p.rule.sport);
    } else if (a == "--dport" || a == "--destination-port") {
      st = port(&p.rule.dport);
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
      auto v = value();
      if (!v.ok()) return v.status();
      uint32_t addr;
      if (inet_pton(AF_INET, v->c_str(), &addr) != 1) {
        return bad(absl::StrCat("bad --to-source \"", *v,
                                "\" (meshlb takes one IPv4 address, no port range)"));
      }
      p.rule.to_source = addr;
    } else if (a == "--set-mark" || a == "--set-xmark") {
      auto v = value();
      if (!v.ok()) return v.status();
      std::string mark = *v;
      if (auto slash = mark.find('/'); slash != std::string::npos) {
        // iptables-save writes --set-xmark VALUE/0xffffffff; only a full mask is a plain set.
        if (mark.substr(slash + 1) != "0xffffffff") {
          return bad(absl::StrCat("mark mask '", mark.substr(slash + 1),
                                  "' is not supported by meshlb (only /0xffffffff)"));
        }
        mark.resize(slash);
      }
      auto n = parseNumber(mark, "mark", 0xffffffffu);
      if (!n.ok() || *n == 0) return bad(absl::StrCat("invalid mark '", *v, "'"));
      p.rule.mark = *n;
    } else {
      return bad(absl::StrCat("option \"", a, "\" is not supported by meshlb"));
    }
    if (!st.ok()) return st;
  }
  if (p.cmd == Cmd::kNone) return bad("no command specified");
  const bool rule_cmd = p.cmd == Cmd::kAppend || p.cmd == Cmd::kInsert ||
                        (p.cmd == Cmd::kDelete && !p.rulenum);
  if (!p.chain.empty()) {
    const Chain* c = p.table == "nat" ? findChain(kNatChains, p.chain)
                                      : findChain(kMangleChains, p.chain);
    if (!c) return bad(absl::StrCat("chain \"", p.chain, "\" does not exist in table ", p.table));
  }
  if (!rule_cmd) return p;
  if (!p.have_target) {
    return bad(p.table == "nat" ? "a target is required: -j SNAT --to-source ADDR or -j MASQUERADE"
                                : "a target is required: -j MARK --set-mark M");
  }
  const RuleTarget t = p.rule.target;
  if (p.table == "nat") {
    if (t == RuleTarget::kMark) return bad("target \"MARK\" belongs in the mangle table");
    if (t == RuleTarget::kSnat && p.rule.to_source == 0) return bad("SNAT needs --to-source");
    if (t == RuleTarget::kMasquerade && p.rule.to_source) return bad("MASQUERADE takes no --to-source");
    if (p.rule.has_src || p.rule.proto || p.rule.sport || p.rule.dport) {
      return bad("meshlb's nat POSTROUTING rules match on -d only (and -m ipvs --ipvs)");
    }
  } else {
    if (t != RuleTarget::kMark) return bad("only target \"MARK\" is supported in the mangle table");
    if (p.rule.mark == 0) return bad("MARK needs --set-mark");
    if (p.rule.ipvs) return bad("-m ipvs is not supported in the mangle table");
  }
  return p;
}

std::string markHex(uint32_t m) { return absl::StrFormat("0x%x", m); }

// iptables-save syntax of a rule, without "-A CHAIN".
std::string ruleSpec(const IptRule& r) {
  std::string s;
  if (r.has_src) absl::StrAppend(&s, "-s ", ip4(r.src_net), "/", r.src_len, " ");
  if (r.has_dst) absl::StrAppend(&s, "-d ", ip4(r.dst_net), "/", r.dst_len, " ");
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
      absl::StrAppend(&s, "-j SNAT --to-source ", ip4(r.to_source));
      break;
    case RuleTarget::kMark:
      absl::StrAppend(&s, "-j MARK --set-xmark ", markHex(r.mark), "/0xffffffff");
      break;
  }
  return s;
}

std::vector<IptRule>* rulesOf(IptablesModel& m, const std::string& table, const std::string& chain) {
  if (table == "nat") return chain == "POSTROUTING" ? &m.nat_postrouting : nullptr;
  if (chain == "PREROUTING") return &m.mangle_prerouting;
  if (chain == "INPUT") return &m.mangle_input;
  return nullptr;
}

void listChain(std::string& out, const char* chain, const std::vector<IptRule>* rules, bool numeric) {
  absl::StrAppend(&out, "Chain ", chain, " (policy ACCEPT)\n");
  out += "target     prot opt source               destination         \n";
  if (!rules) return;
  const std::string any = numeric ? "0.0.0.0/0" : "anywhere";
  for (const IptRule& r : *rules) {
    std::string src = r.has_src ? absl::StrCat(ip4(r.src_net), "/", r.src_len) : any;
    std::string dst = r.has_dst ? absl::StrCat(ip4(r.dst_net), "/", r.dst_len) : any;
    std::string extra;
    auto add = [&](const std::string& x) { absl::StrAppend(&extra, extra.empty() ? "" : " ", x); };
    const char* proto = r.proto == 6 ? "tcp" : r.proto == 17 ? "udp" : "all";
    if (r.sport) add(absl::StrCat(proto, " spt:", r.sport));
    if (r.dport) add(absl::StrCat(proto, " dpt:", r.dport));
    if (r.ipvs) add("ipvs");
    const char* target = "SNAT";
    if (r.target == RuleTarget::kSnat) add(absl::StrCat("to:", ip4(r.to_source)));
    if (r.target == RuleTarget::kMasquerade) target = "MASQUERADE";
    if (r.target == RuleTarget::kMark) {
      target = "MARK";
      add(absl::StrCat("MARK set ", markHex(r.mark)));
    }
    absl::StrAppend(&out, absl::StrFormat("%-10s %-4s %-3s %-20s %-20s %s\n", target, proto, "--",
                                          src, dst, extra));
  }
}

}  // namespace

std::vector<std::string> iptablesRules(const IptablesModel& m) {
  std::vector<std::string> out;
  for (const IptRule& r : m.mangle_prerouting) {
    out.push_back(absl::StrCat("iptables -t mangle -A PREROUTING ", ruleSpec(r)));
  }
  for (const IptRule& r : m.mangle_input) {
    out.push_back(absl::StrCat("iptables -t mangle -A INPUT ", ruleSpec(r)));
  }
  for (const IptRule& r : m.nat_postrouting) {
    out.push_back(absl::StrCat("iptables -t nat -A POSTROUTING ", ruleSpec(r)));
  }
  return out;
}

absl::StatusOr<std::string> runIptables(IptablesModel& m, const std::vector<std::string>& args) {
  auto parsed = parse(args);
  if (!parsed.ok()) return parsed.status();
  const Parsed& p = *parsed;
  std::vector<IptRule>* rules = p.chain.empty() ? nullptr : rulesOf(m, p.table, p.chain);
  switch (p.cmd) {
    case Cmd::kAppend:
      rules->push_back(p.rule);
      return std::string();
    case Cmd::kInsert: {
      uint32_t n = p.rulenum.value_or(1);
      if (n > rules->size() + 1) return bad("index of insertion too big");
      rules->insert(rules->begin() + (n - 1), p.rule);
      return std::string();
    }
    case Cmd::kDelete:
      if (p.rulenum) {
        if (*p.rulenum > rules->size()) return bad("index of deletion too big");
        rules->erase(rules->begin() + (*p.rulenum - 1));
        return std::string();
      }
      for (auto it = rules->begin(); it != rules->end(); ++it) {
        if (*it == p.rule) {
          rules->erase(it);
          return std::string();
        }
      }
      return bad("Bad rule (does a matching rule exist in that chain?)");
    case Cmd::kFlush:
      if (p.chain.empty()) {
        if (p.table == "nat") {
          m.nat_postrouting.clear();
        } else {
          m.mangle_prerouting.clear();
          m.mangle_input.clear();
        }
      } else if (rules) {
        rules->clear();
      }
      return std::string();
    case Cmd::kSave:
    case Cmd::kList: {
      std::string out;
      auto each = [&](const auto& chains) {
        bool first = true;
        if (p.cmd == Cmd::kSave) {
          for (const Chain& c : chains) {
            if (p.chain.empty() || p.chain == c.name) absl::StrAppend(&out, "-P ", c.name, " ACCEPT\n");
          }
        }
        for (const Chain& c : chains) {
          if (!p.chain.empty() && p.chain != c.name) continue;
          const std::vector<IptRule>* rs = rulesOf(m, p.table, c.name);
          if (p.cmd == Cmd::kSave) {
            if (rs) {
              for (const IptRule& r : *rs) absl::StrAppend(&out, "-A ", c.name, " ", ruleSpec(r), "\n");
            }
          } else {
            if (!first) out += "\n";
            first = false;
            listChain(out, c.name, rs, p.numeric);
          }
        }
      };
      if (p.table == "nat") {
        each(kNatChains);
      } else {
        each(kMangleChains);
      }
      return out;
    }
    case Cmd::kNone:
      break;
  }
  return bad("no command specified");
}

}  // namespace meshlb
