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

enum class Cmd { kNone, kAppend, kInsert, kDelete, kFlush, kSave, kList };

struct Parsed {
  Cmd cmd = Cmd::kNone;
  std::string chain;
  std::optional<uint32_t> rulenum;
  NatRule rule;
  bool have_target = false;
  bool numeric = false;
};

// The table and chain decide what is supported, so they are judged first: a
// DNAT rule is refused for its chain, not for its first unknown option.
absl::Status checkTableAndChain(const std::vector<std::string>& args) {
  std::string table = "filter";
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "-t" || args[i] == "--table") table = args[i + 1];
  }
  if (table != "nat") {
    return bad(absl::StrCat("table \"", table, "\" is not supported by meshlb (only -t nat so far)"));
  }
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    const std::string& a = args[i];
    const bool rule_cmd = a == "-A" || a == "--append" || a == "-I" || a == "--insert" ||
                          a == "-D" || a == "--delete";
    const std::string& chain = args[i + 1];
    if (rule_cmd && (chain == "PREROUTING" || chain == "INPUT" || chain == "OUTPUT")) {
      return bad(absl::StrCat("rules in nat ", chain, " are not supported by meshlb yet"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Parsed> parse(const std::vector<std::string>& args) {
  if (auto st = checkTableAndChain(args); !st.ok()) return st;
  Parsed p;
  std::string table = "filter";
  bool match_ipvs_loaded = false;
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
    absl::Status st;
    if (a == "-t" || a == "--table") {
      auto v = value();
      if (!v.ok()) return v.status();
      table = *v;
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
    } else if (a == "-m" || a == "--match") {
      auto v = value();
      if (!v.ok()) return v.status();
      if (*v != "ipvs") return bad(absl::StrCat("match \"", *v, "\" is not supported by meshlb"));
      match_ipvs_loaded = true;
    } else if (a == "--ipvs") {
      if (!match_ipvs_loaded) return bad("option \"--ipvs\" needs \"-m ipvs\" before it");
      p.rule.ipvs = true;
    } else if (a == "-d" || a == "--destination") {
      auto v = value();
      if (!v.ok()) return v.status();
      auto net = parseNet(*v);
      if (!net.ok()) return net.status();
      p.rule.dst_net = net->first;
      p.rule.dst_len = net->second;
      p.rule.has_dst = true;
    } else if (a == "-j" || a == "--jump") {
      auto v = value();
      if (!v.ok()) return v.status();
      if (*v == "MASQUERADE") {
        p.rule.masquerade = true;
      } else if (*v != "SNAT") {
        return bad(absl::StrCat("target \"", *v, "\" is not supported by meshlb in this chain"));
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
    } else {
      return bad(absl::StrCat("option \"", a, "\" is not supported by meshlb"));
    }
    if (!st.ok()) return st;
  }
  if (table != "nat") {
    return bad(absl::StrCat("table \"", table, "\" is not supported by meshlb (only -t nat so far)"));
  }
  if (p.cmd == Cmd::kNone) return bad("no command specified");
  if (!p.chain.empty() && p.chain != "POSTROUTING") {
    if (p.chain == "PREROUTING" || p.chain == "INPUT" || p.chain == "OUTPUT") {
      if (p.cmd == Cmd::kSave || p.cmd == Cmd::kList || p.cmd == Cmd::kFlush) return p;
      return bad(absl::StrCat("rules in nat ", p.chain, " are not supported by meshlb yet"));
    }
    return bad(absl::StrCat("chain \"", p.chain, "\" does not exist"));
  }
  const bool rule_cmd = p.cmd == Cmd::kAppend || p.cmd == Cmd::kInsert ||
                        (p.cmd == Cmd::kDelete && !p.rulenum);
  if (rule_cmd) {
    if (!p.have_target) return bad("a target is required: -j SNAT --to-source ADDR or -j MASQUERADE");
    if (!p.rule.masquerade && p.rule.to_source == 0) return bad("SNAT needs --to-source");
    if (p.rule.masquerade && p.rule.to_source) return bad("MASQUERADE takes no --to-source");
  }
  return p;
}

constexpr const char* kChains[] = {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"};

}  // namespace

std::string natRuleSpec(const NatRule& r) {
  std::string s;
  if (r.has_dst) absl::StrAppend(&s, "-d ", ip4(r.dst_net), "/", r.dst_len, " ");
  if (r.ipvs) s += "-m ipvs --ipvs ";
  if (r.masquerade) {
    s += "-j MASQUERADE";
  } else {
    absl::StrAppend(&s, "-j SNAT --to-source ", ip4(r.to_source));
  }
  return s;
}

absl::StatusOr<std::string> runIptables(IptablesModel& m, const std::vector<std::string>& args) {
  auto p = parse(args);
  if (!p.ok()) return p.status();
  auto& rules = m.postrouting;
  const bool post = p->chain.empty() || p->chain == "POSTROUTING";
  switch (p->cmd) {
    case Cmd::kAppend:
      rules.push_back(p->rule);
      return std::string();
    case Cmd::kInsert: {
      uint32_t n = p->rulenum.value_or(1);
      if (n > rules.size() + 1) return bad("index of insertion too big");
      rules.insert(rules.begin() + (n - 1), p->rule);
      return std::string();
    }
    case Cmd::kDelete:
      if (p->rulenum) {
        if (*p->rulenum > rules.size()) return bad("index of deletion too big");
        rules.erase(rules.begin() + (*p->rulenum - 1));
        return std::string();
      }
      for (auto it = rules.begin(); it != rules.end(); ++it) {
        if (*it == p->rule) {
          rules.erase(it);
          return std::string();
        }
      }
      return bad("Bad rule (does a matching rule exist in that chain?)");
    case Cmd::kFlush:
      if (post) rules.clear();
      return std::string();
    case Cmd::kSave: {
      std::string out;
      for (const char* c : kChains) {
        if (p->chain.empty() || p->chain == c) absl::StrAppend(&out, "-P ", c, " ACCEPT\n");
      }
      if (post) {
        for (const NatRule& r : rules) absl::StrAppend(&out, "-A POSTROUTING ", natRuleSpec(r), "\n");
      }
      return out;
    }
    case Cmd::kList: {
      std::string out;
      bool first = true;
      for (const char* c : kChains) {
        if (!p->chain.empty() && p->chain != c) continue;
        if (!first) out += "\n";
        first = false;
        absl::StrAppend(&out, "Chain ", c, " (policy ACCEPT)\n");
        out += "target     prot opt source               destination         \n";
        if (std::string(c) != "POSTROUTING") continue;
        for (const NatRule& r : rules) {
          std::string dst = r.has_dst ? absl::StrCat(ip4(r.dst_net), "/", r.dst_len)
                                      : (p->numeric ? "0.0.0.0/0" : "anywhere");
          std::string src = p->numeric ? "0.0.0.0/0" : "anywhere";
          std::string extra = r.ipvs ? "ipvs" : "";
          if (!r.masquerade) absl::StrAppend(&extra, extra.empty() ? "" : " ", "to:", ip4(r.to_source));
          absl::StrAppend(&out, absl::StrFormat("%-10s %-4s %-3s %-20s %-20s %s\n",
                                                r.masquerade ? "MASQUERADE" : "SNAT", "all", "--",
                                                src, dst, extra));
        }
      }
      return out;
    }
    case Cmd::kNone:
      break;
  }
  return bad("no command specified");
}

}  // namespace meshlb
