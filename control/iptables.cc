#include "iptables.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <algorithm>
#include <optional>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "usage.h"

namespace meshlb {

namespace {

absl::Status bad(const std::string& m) { return absl::InvalidArgumentError(m); }

const char* familyWord(Family f) { return f == Family::kIpv6 ? "IPv6" : "IPv4"; }

// A numeric address of the model's family (iptables takes IPv4, ip6tables IPv6).
absl::StatusOr<IpAddr> parseAddr(const std::string& s, Family family) {
  auto a = IpAddr::parse(s);
  if (!a.ok() || a->family != family) return bad("");
  return *a;
}

absl::StatusOr<std::pair<IpAddr, uint8_t>> parseNet(const std::string& s, Family family) {
  std::string addr = s;
  const uint32_t max = family == Family::kIpv6 ? 128 : 32;
  uint32_t len = max;
  const auto slash = s.find('/');
  if (slash != std::string::npos) addr = s.substr(0, slash);
  auto a = parseAddr(addr, family);
  if (!a.ok()) {
    return bad(absl::StrCat("host/network '", s, "' not found (meshlb takes numeric ",
                            familyWord(family), " only)"));
  }
  if (slash != std::string::npos && (!absl::SimpleAtoi(s.substr(slash + 1), &len) || len > max)) {
    return bad(absl::StrCat("invalid prefix length in '", s, "'"));
  }
  IpAddr net = *a;
  for (uint32_t bit = len; bit < max; ++bit)
    net.b[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  return std::make_pair(net, static_cast<uint8_t>(len));
}

absl::StatusOr<uint32_t> parseNumber(const std::string& s, const char* what, uint64_t max) {
  uint64_t v;
  bool ok = s.rfind("0x", 0) == 0 ? absl::SimpleHexAtoi(s.substr(2), &v) : absl::SimpleAtoi(s, &v);
  if (!ok || v > max) return bad(absl::StrCat("invalid ", what, " '", s, "'"));
  return static_cast<uint32_t>(v);
}

enum class Cmd {
  kNone,
  kAppend,
  kInsert,
  kDelete,
  kCheck,
  kFlush,
  kNewChain,
  kDeleteChain,
  kSave,
  kList
};

struct Parsed {
  IptTable table = IptTable::kNat;
  Cmd cmd = Cmd::kNone;
  std::string chain;  // empty: none given
  std::optional<uint32_t> rulenum;
  IptRule rule;
  bool have_target = false;
  bool have_mark = false;
  bool numeric = false;
};

// The table decides what is supported, so it is judged before the rest: a rule for
// the filter table is refused for its table, not for its first unknown option.
absl::Status checkTable(const std::vector<std::string>& args) {
  std::string table = "filter";
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "-t" || args[i] == "--table") table = args[i + 1];
  }
  if (!tableByName(table)) {
    return bad(absl::StrCat("table \"", table,
                            "\" is not supported by meshlb (it takes -t nat and -t mangle)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Parsed> parse(const std::vector<std::string>& args, Family family) {
  if (auto st = checkTable(args); !st.ok()) return st;
  Parsed p;
  std::string& chain = p.chain;
  std::set<std::string> seen;  // single-valued options given so far
  bool match_ipvs = false, match_addrtype = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> absl::StatusOr<std::string> {
      if (i + 1 >= args.size()) return bad(absl::StrCat("option \"", a, "\" requires an argument"));
      return args[++i];
    };
    auto command = [&](Cmd c, bool chain_required) -> absl::Status {
      if (p.cmd != Cmd::kNone)
        return bad("only one command (-A -I -D -C -F -N -X -S -L) at a time");
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
      auto n = parseNet(*v, family);
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
    } else if (a == "-N" || a == "--new-chain") {
      st = command(Cmd::kNewChain, true);
    } else if (a == "-X" || a == "--delete-chain") {
      st = command(Cmd::kDeleteChain, false);
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
      } else if (*v == "addrtype") {
        match_addrtype = true;
      } else if ((*v == "tcp" && p.rule.proto == 6) || (*v == "udp" && p.rule.proto == 17)) {
        // implied by -p, as iptables-save writes it
      } else {
        return bad(absl::StrCat("match \"", *v, "\" is not supported by meshlb"));
      }
    } else if (a == "--dst-type") {
      if (!match_addrtype) return bad("option \"--dst-type\" needs \"-m addrtype\" before it");
      if (auto o = once("--dst-type"); !o.ok()) return o;
      auto v = value();
      if (!v.ok()) return v.status();
      if (*v != "LOCAL") {
        return bad(absl::StrCat("addrtype \"--dst-type ", *v,
                                "\" is not supported by meshlb (only LOCAL)"));
      }
      p.rule.dst_local = true;
    } else if (a == "--src-type" || a == "--limit-iface-in" || a == "--limit-iface-out") {
      return bad(absl::StrCat("addrtype option \"", a, "\" is not supported by meshlb"));
    } else if (a == "--to-destination") {
      if (auto o = once("--to-destination"); !o.ok()) {
        return bad("DNAT: option \"--to-destination\" can only be used once.");
      }
      auto v = value();
      if (!v.ok()) return v.status();
      // ADDR or ADDR:PORT; for IPv6, ADDR or [ADDR]:PORT (ip6tables' syntax).
      std::string host = *v;
      std::string port_text;
      const bool v6 = family == Family::kIpv6;
      const char* form = v6 ? "ADDR or [ADDR]:PORT" : "ADDR or ADDR:PORT";
      if (v6 && !host.empty() && host[0] == '[') {
        const auto close = host.find(']');
        if (close == std::string::npos || host.substr(close + 1, 1) != ":") {
          return bad(absl::StrCat("bad --to-destination \"", *v, "\" (meshlb takes ", form,
                                  ", no ranges)"));
        }
        port_text = host.substr(close + 2);
        host = host.substr(1, close - 1);
      } else if (auto colon = host.find(':'); !v6 && colon != std::string::npos) {
        port_text = host.substr(colon + 1);
        host.resize(colon);
      }
      uint32_t port = 0;
      if (!port_text.empty() || (v6 && (*v)[0] == '[')) {
        if (!absl::SimpleAtoi(port_text, &port) || port == 0 || port > 65535) {
          return bad(absl::StrCat("bad --to-destination \"", *v, "\" (meshlb takes ", form,
                                  ", no ranges)"));
        }
      }
      auto addr = parseAddr(host, family);
      if (!addr.ok()) {
        return bad(
            absl::StrCat("bad --to-destination \"", *v, "\" (meshlb takes ", form, ", no ranges)"));
      }
      p.rule.to_destination = *addr;
      p.rule.to_port = static_cast<uint16_t>(port);
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
      } else if (*v == "DNAT") {
        p.rule.target = RuleTarget::kDnat;
      } else if (*v == "RETURN") {
        p.rule.target = RuleTarget::kReturn;
      } else if (*v == "ACCEPT" || *v == "DROP" || *v == "REJECT" || *v == "LOG" ||
                 *v == "REDIRECT" || *v == "TPROXY" || *v == "CONNMARK" || *v == "TOS" ||
                 *v == "TTL" || *v == "NOTRACK" || *v == "CT" || *v == "NETMAP") {
        return bad(absl::StrCat("target \"", *v, "\" is not supported by meshlb"));
      } else {
        p.rule.target = RuleTarget::kJump;  // a user chain; the model checks it exists
        p.rule.jump = *v;
      }
      p.have_target = true;
    } else if (a == "--to-source") {
      if (auto o = once("--to-source"); !o.ok()) {
        return bad("SNAT: multiple --to-source not supported");
      }
      auto v = value();
      if (!v.ok()) return v.status();
      auto addr = parseAddr(*v, family);
      if (!addr.ok()) {
        return bad(absl::StrCat("bad --to-source \"", *v, "\" (meshlb takes one ",
                                familyWord(family), " address, no port range)"));
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
  if (match_addrtype && !p.rule.dst_local) return bad("addrtype: --dst-type LOCAL is required");
  if (p.have_mark && p.rule.target != RuleTarget::kMark) {
    return bad("MARK options need \"-j MARK\" before them");
  }
  const bool rule_cmd = p.cmd == Cmd::kAppend || p.cmd == Cmd::kInsert || p.cmd == Cmd::kCheck ||
                        (p.cmd == Cmd::kDelete && !p.rulenum);
  if (!rule_cmd) return p;
  if (!p.have_target) {
    return bad(p.table == IptTable::kNat
                   ? "a target is required: -j SNAT --to-source ADDR, -j MASQUERADE, -j DNAT "
                     "--to-destination ADDR[:PORT], -j CHAIN or -j RETURN"
                   : "a target is required: -j MARK --set-mark M");
  }
  if (p.rule.target == RuleTarget::kMark && !p.have_mark) {
    return bad(
        "MARK target: one of --set-mark, --set-xmark, --and-mark, --or-mark, --xor-mark is "
        "required");
  }
  if (p.rule.target == RuleTarget::kDnat && p.rule.to_destination.family == Family::kNone) {
    return bad("DNAT needs --to-destination");
  }
  if (p.rule.target != RuleTarget::kDnat && p.rule.to_destination.family != Family::kNone) {
    return bad("--to-destination belongs to -j DNAT");
  }
  return p;
}

std::string markHex(uint32_t m) { return absl::StrFormat("0x%x", m); }

std::string dnatTo(const IptRule& r) {
  if (!r.to_port) return r.to_destination.str();
  return r.to_destination.isV6() ? absl::StrCat("[", r.to_destination.str(), "]:", r.to_port)
                                 : absl::StrCat(r.to_destination.str(), ":", r.to_port);
}

const char* targetName(const IptRule& r) {
  switch (r.target) {
    case RuleTarget::kSnat:
      return "SNAT";
    case RuleTarget::kMasquerade:
      return "MASQUERADE";
    case RuleTarget::kMark:
      return "MARK";
    case RuleTarget::kDnat:
      return "DNAT";
    case RuleTarget::kReturn:
      return "RETURN";
    case RuleTarget::kJump:
      return r.jump.c_str();
  }
  return "";
}

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
  if (r.dst_local) s += "-m addrtype --dst-type LOCAL ";
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
    case RuleTarget::kDnat:
      absl::StrAppend(&s, "-j DNAT --to-destination ", dnatTo(r));
      break;
    case RuleTarget::kReturn:
      s += "-j RETURN";
      break;
    case RuleTarget::kJump:
      absl::StrAppend(&s, "-j ", r.jump);
      break;
  }
  return s;
}

// iptables 1.8.9's -L: "%-9s  %-5s--  %-20s %-20s" and then each match's and the
// target's words, each after a space; -n prints protocol numbers, otherwise names
// (and services for ports, as /etc/services has them); a /32 prints without its length.
std::string port(uint16_t p, uint8_t proto, bool numeric) {
  if (!numeric) {
    if (const servent* se = getservbyport(htons(p), proto == 6 ? "tcp" : "udp")) return se->s_name;
  }
  return absl::StrCat(p);
}

std::string net(bool has, const IpAddr& a, uint8_t len, bool numeric, Family family) {
  const bool v6 = family == Family::kIpv6;
  if (!has) return numeric ? (v6 ? "::/0" : "0.0.0.0/0") : "anywhere";
  return len == (v6 ? 128 : 32) ? a.str() : absl::StrCat(a.str(), "/", len);
}

// The opt column is "--" in both families, as Debian 12's iptables and ip6tables 1.8.9
// (nf_tables) print it (checked against them in tests/e2e/appliance_test.sh).
void listChain(std::string& out, const IptChainRules& c, uint32_t references, bool numeric,
               Family family) {
  const char* opt = "--  ";
  if (c.builtin) {
    absl::StrAppend(&out, "Chain ", c.name, " (policy ACCEPT)\n");
  } else {
    absl::StrAppend(&out, "Chain ", c.name, " (", references, " references)\n");
  }
  out += "target     prot opt source               destination         \n";
  for (const IptRule& r : c.rules) {
    std::string extra;
    auto add = [&](const std::string& x) { absl::StrAppend(&extra, " ", x); };
    const char* pname = r.proto == 6 ? "tcp" : r.proto == 17 ? "udp" : "all";
    if (r.sport) add(absl::StrCat(pname, " spt:", port(r.sport, r.proto, numeric)));
    if (r.dport) add(absl::StrCat(pname, " dpt:", port(r.dport, r.proto, numeric)));
    if (r.dst_local) add("ADDRTYPE match dst-type LOCAL");
    if (r.ipvs) add("ipvs");
    if (r.target == RuleTarget::kSnat) add(absl::StrCat("to:", r.to_source.str()));
    if (r.target == RuleTarget::kDnat) add(absl::StrCat("to:", dnatTo(r)));
    if (r.target == RuleTarget::kMark) add(markAction(r));
    const std::string prot = numeric ? absl::StrCat(r.proto) : pname;
    absl::StrAppend(&out,
                    absl::StrFormat("%-9s  %-5s%s%-20s %-20s%s\n", targetName(r), prot, opt,
                                    net(r.has_src, r.src_net, r.src_len, numeric, family),
                                    net(r.has_dst, r.dst_net, r.dst_len, numeric, family), extra));
  }
}

}  // namespace

std::vector<std::string> iptablesRules(const IptablesModel& m) {
  std::vector<std::string> out;
  for (IptTable t : {IptTable::kMangle, IptTable::kNat}) {
    // User chains first, so that the jumps replayed after them find them.
    for (const IptChainRules* c : m.chains(t)) {
      if (!c->builtin) out.push_back(absl::StrCat(m.tool(), " -t ", tableName(t), " -N ", c->name));
    }
    for (const IptChainRules* c : m.chains(t)) {
      for (const IptRule& r : c->rules) {
        out.push_back(
            absl::StrCat(m.tool(), " -t ", tableName(t), " -A ", c->name, " ", ruleSpec(r)));
      }
    }
  }
  return out;
}

absl::StatusOr<std::string> runIptables(IptablesModel& m, const std::vector<std::string>& args) {
  for (const std::string& a : args) {
    if (a == "-h" || a == "--help") return std::string(kIptablesUsage);
  }
  auto parsed = parse(args, m.family());
  if (!parsed.ok()) return parsed.status();
  const Parsed& p = *parsed;
  const IptTable t = p.table;
  absl::Status st;
  switch (p.cmd) {
    case Cmd::kAppend:
      st = m.append(t, p.chain, p.rule);
      break;
    case Cmd::kInsert:
      st = m.insert(t, p.chain, p.rulenum.value_or(1), p.rule);
      break;
    case Cmd::kDelete:
      st = p.rulenum ? m.removeAt(t, p.chain, *p.rulenum) : m.remove(t, p.chain, p.rule);
      break;
    case Cmd::kCheck:
      if (!m.chain(t, p.chain)) return bad("No chain/target/match by that name.");
      if (!m.contains(t, p.chain, p.rule)) {
        return bad("Bad rule (does a matching rule exist in that chain?)");
      }
      break;
    case Cmd::kFlush:
      st = m.flush(t, p.chain);
      break;
    case Cmd::kNewChain:
      st = m.newChain(t, p.chain);
      break;
    case Cmd::kDeleteChain:
      st = m.deleteChain(t, p.chain);
      break;
    case Cmd::kSave:
    case Cmd::kList: {
      if (!p.chain.empty() && !m.chain(t, p.chain)) {
        return bad("No chain/target/match by that name.");
      }
      std::string out;
      const auto chains = m.chains(t);
      if (p.cmd == Cmd::kSave) {
        for (const IptChainRules* c : chains) {
          if (!p.chain.empty() && p.chain != c->name) continue;
          absl::StrAppend(&out, c->builtin ? "-P " : "-N ", c->name,
                          c->builtin ? " ACCEPT\n" : "\n");
        }
        for (const IptChainRules* c : chains) {
          if (!p.chain.empty() && p.chain != c->name) continue;
          for (const IptRule& r : c->rules) {
            absl::StrAppend(&out, "-A ", c->name, " ", ruleSpec(r), "\n");
          }
        }
      } else {
        bool first = true;
        for (const IptChainRules* c : chains) {
          if (!p.chain.empty() && p.chain != c->name) continue;
          if (!first) out += "\n";
          first = false;
          listChain(out, *c, m.references(t, c->name), p.numeric, m.family());
        }
      }
      return out;
    }
    case Cmd::kNone:
      return bad("no command specified");
  }
  if (!st.ok()) return st;
  return std::string();
}

// ---- the model -------------------------------------------------------------------

const char* tableName(IptTable t) { return t == IptTable::kNat ? "nat" : "mangle"; }

std::optional<IptTable> tableByName(const std::string& name) {
  if (name == "nat") return IptTable::kNat;
  if (name == "mangle") return IptTable::kMangle;
  return std::nullopt;
}

const std::vector<std::string>& builtinChains(IptTable t) {
  static const std::vector<std::string> nat{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"};
  static const std::vector<std::string> mangle{"PREROUTING", "INPUT", "FORWARD", "OUTPUT",
                                               "POSTROUTING"};
  return t == IptTable::kNat ? nat : mangle;
}

IptablesModel::IptablesModel(Family family) : family_(family) {
  for (IptTable t : {IptTable::kNat, IptTable::kMangle}) {
    for (const std::string& c : builtinChains(t)) {
      tables_[static_cast<int>(t)].push_back({c, true, {}});
    }
  }
}

const IptChainRules* IptablesModel::chain(IptTable t, const std::string& name) const {
  for (const IptChainRules& c : tables_[static_cast<int>(t)]) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

IptChainRules* IptablesModel::mutableChain(IptTable t, const std::string& name) {
  return const_cast<IptChainRules*>(chain(t, name));
}

std::vector<const IptChainRules*> IptablesModel::chains(IptTable t) const {
  std::vector<const IptChainRules*> out;
  for (const IptChainRules& c : tables_[static_cast<int>(t)]) {
    if (c.builtin) out.push_back(&c);
  }
  std::vector<const IptChainRules*> user;
  for (const IptChainRules& c : tables_[static_cast<int>(t)]) {
    if (!c.builtin) user.push_back(&c);
  }
  std::sort(user.begin(), user.end(), [](auto* a, auto* b) { return a->name < b->name; });
  out.insert(out.end(), user.begin(), user.end());
  return out;
}

uint32_t IptablesModel::references(IptTable t, const std::string& name) const {
  uint32_t n = 0;
  for (const IptChainRules& c : tables_[static_cast<int>(t)]) {
    for (const IptRule& r : c.rules) n += r.target == RuleTarget::kJump && r.jump == name;
  }
  return n;
}

const std::vector<IptRule>& IptablesModel::rules(IptTable t, const std::string& name) const {
  static const std::vector<IptRule> none;
  const IptChainRules* c = chain(t, name);
  return c ? c->rules : none;
}

// Whether `to` is reachable from `from` through jumps (a jump from `to`'s side back to
// `from` would make a loop).
bool IptablesModel::reaches(IptTable t, const std::string& from, const std::string& to,
                            int depth) const {
  if (from == to) return true;
  if (depth > 16) return true;  // deeper than meshlb follows: treat as a loop
  const IptChainRules* c = chain(t, from);
  if (!c) return false;
  for (const IptRule& r : c->rules) {
    if (r.target == RuleTarget::kJump && reaches(t, r.jump, to, depth + 1)) return true;
  }
  return false;
}

absl::Status IptablesModel::check(IptTable t, const std::string& name, const IptRule& r) const {
  const IptChainRules* c = chain(t, name);
  if (!c) return bad(absl::StrCat("chain \"", name, "\" does not exist in table ", tableName(t)));
  const bool nat = t == IptTable::kNat;
  // Which chains meshlb takes rules in, and which targets in each.
  const bool post = nat && name == "POSTROUTING";
  const bool dnat_chain = nat && (name == "PREROUTING" || name == "OUTPUT" || !c->builtin);
  const bool mark_chain = !nat && (name == "PREROUTING" || name == "INPUT");
  if (!post && !dnat_chain && !mark_chain) {
    return bad(
        absl::StrCat("rules in ", tableName(t), " ", name, " are not supported by meshlb yet"));
  }
  if (r.target == RuleTarget::kJump || r.target == RuleTarget::kReturn) {
    if (!dnat_chain) {
      return bad(
          absl::StrCat("target \"", r.target == RuleTarget::kJump ? r.jump : "RETURN",
                       "\" is supported in the nat table's PREROUTING, OUTPUT and user chains"));
    }
    if (r.target == RuleTarget::kJump) {
      const IptChainRules* to = chain(t, r.jump);
      if (!to || to->builtin) return bad(absl::StrCat("Chain '", r.jump, "' does not exist"));
      if (reaches(t, r.jump, name, 0)) {
        return bad(absl::StrCat("jumping to ", r.jump, " from ", name, " would make a loop"));
      }
    }
  }
  if (r.dst_local && !dnat_chain) {
    return bad("-m addrtype is supported in the nat table's PREROUTING, OUTPUT and user chains");
  }
  if (r.ipvs && !post) return bad("-m ipvs is supported in the nat table's POSTROUTING");
  if (post) {
    if (r.target != RuleTarget::kSnat && r.target != RuleTarget::kMasquerade) {
      return bad(absl::StrCat("target \"", targetName(r),
                              "\" is not supported in nat POSTROUTING (SNAT, MASQUERADE)"));
    }
    if (r.target == RuleTarget::kSnat && r.to_source.family == Family::kNone) {
      return bad("SNAT needs --to-source");
    }
    if (r.target == RuleTarget::kMasquerade && r.to_source.family != Family::kNone) {
      return bad("MASQUERADE takes no --to-source");
    }
    if (r.has_src || r.proto || r.sport || r.dport) {
      return bad("meshlb's nat POSTROUTING rules match on -d only (and -m ipvs --ipvs)");
    }
  } else if (dnat_chain) {
    if (r.target == RuleTarget::kMark) return bad("target \"MARK\" belongs in the mangle table");
    if (r.target == RuleTarget::kSnat || r.target == RuleTarget::kMasquerade) {
      return bad(absl::StrCat("target \"", targetName(r), "\" belongs in nat POSTROUTING"));
    }
  } else if (r.target != RuleTarget::kMark) {
    return bad("only target \"MARK\" is supported in the mangle table");
  }
  return absl::OkStatus();
}

absl::Status IptablesModel::append(IptTable t, const std::string& name, const IptRule& r) {
  return insert(t, name, static_cast<uint32_t>(rules(t, name).size() + 1), r);
}

absl::Status IptablesModel::insert(IptTable t, const std::string& name, uint32_t position,
                                   const IptRule& r) {
  if (!chain(t, name)) return bad("No chain/target/match by that name.");
  if (auto st = check(t, name, r); !st.ok()) return st;
  IptChainRules* c = mutableChain(t, name);
  if (position == 0 || position > c->rules.size() + 1) return bad("index of insertion too big");
  c->rules.insert(c->rules.begin() + (position - 1), r);
  return absl::OkStatus();
}

bool IptablesModel::contains(IptTable t, const std::string& name, const IptRule& r) const {
  const auto& rs = rules(t, name);
  return std::find(rs.begin(), rs.end(), r) != rs.end();
}

absl::Status IptablesModel::remove(IptTable t, const std::string& name, const IptRule& r) {
  if (IptChainRules* c = mutableChain(t, name)) {
    for (auto it = c->rules.begin(); it != c->rules.end(); ++it) {
      if (*it == r) {
        c->rules.erase(it);
        return absl::OkStatus();
      }
    }
    return bad("Bad rule (does a matching rule exist in that chain?)");
  }
  return bad("No chain/target/match by that name.");
}

absl::Status IptablesModel::removeAt(IptTable t, const std::string& name, uint32_t position) {
  IptChainRules* c = mutableChain(t, name);
  if (!c) return bad("No chain/target/match by that name.");
  if (position == 0 || position > c->rules.size()) return bad("index of deletion too big");
  c->rules.erase(c->rules.begin() + (position - 1));
  return absl::OkStatus();
}

absl::Status IptablesModel::flush(IptTable t, const std::string& name) {
  if (name.empty()) {
    for (IptChainRules& c : tables_[static_cast<int>(t)]) c.rules.clear();
    return absl::OkStatus();
  }
  IptChainRules* c = mutableChain(t, name);
  if (!c) return bad("No chain/target/match by that name.");
  c->rules.clear();
  return absl::OkStatus();
}

absl::Status IptablesModel::newChain(IptTable t, const std::string& name) {
  if (t != IptTable::kNat) {
    return bad("user chains are supported by meshlb in the nat table only");
  }
  if (chain(t, name)) return bad("Chain already exists.");
  if (name.empty() || name.size() > 28 || name[0] == '-' || name == "RETURN" || name == "DNAT" ||
      name == "SNAT" || name == "MASQUERADE" || name == "MARK" || name == "ACCEPT" ||
      name == "DROP") {
    return bad(absl::StrCat("invalid chain name '", name, "'"));
  }
  tables_[static_cast<int>(t)].push_back({name, false, {}});
  return absl::OkStatus();
}

absl::Status IptablesModel::deleteChain(IptTable t, const std::string& name) {
  auto& cs = tables_[static_cast<int>(t)];
  if (name.empty()) {  // -X alone: every user chain nothing jumps to and that is empty
    std::erase_if(cs, [&](const IptChainRules& c) {
      return !c.builtin && c.rules.empty() && references(t, c.name) == 0;
    });
    return absl::OkStatus();
  }
  const IptChainRules* c = chain(t, name);
  if (!c) return bad("No chain/target/match by that name.");
  if (c->builtin) return bad(absl::StrCat("Can't delete built-in chain ", name));
  if (references(t, name) || !c->rules.empty()) {
    return bad(absl::StrCat("CHAIN_DEL failed (Device or resource busy): chain ", name));
  }
  std::erase_if(cs, [&](const IptChainRules& x) { return x.name == name; });
  return absl::OkStatus();
}

}  // namespace meshlb
