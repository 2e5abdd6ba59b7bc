#include "commands.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "health.h"
#include "ipvsadm.h"
#include "meshlb/hash.h"
#include "sysctl.h"
#include "usage.h"

namespace meshlb {

namespace {

constexpr char kStatePrefix[] = "# meshlb state v";
constexpr char kTrailerPrefix[] = "# end of state: ";
constexpr char kJournalPrefix[] = "# changes after the base: ";
constexpr char kChangePrefix[] = "# change ";
// The records may grow to the base's size and this much more before the file is
// written again whole: each rewrite, O(configuration), follows at least as many
// bytes of changes, so a change costs O(change) amortised.
constexpr uint64_t kJournalSlack = 1 << 20;

// Line 2 of a version 4 file, rewritten in place: a fixed width, so that it stays
// where it is.
std::string journalLine(uint64_t changes, uint64_t checksum) {
  return absl::StrFormat("%s%010u, checksum %016x\n", kJournalPrefix, changes, checksum);
}

// The trailer's checksum: meshlb's 64-bit hash of every byte before the trailer.
std::string checksumOf(absl::string_view body) {
  return absl::StrFormat("%016x", hashBytes(body.data(), body.size(), 0));
}

// A section of the state file: the lines it saves of a configuration, each as
// the words after the section's name, and how one such line is applied.
struct StateSection {
  const char* name;
  std::vector<std::string> (*save)(const Config&);
  absl::Status (*restore)(Config&, const std::vector<std::string>& args);
};

std::vector<std::string> saveIpvsadm(const Config& c) {
  std::vector<std::string> out;
  auto rules = listIpvsadm(c.services, {"-S", "-n"});
  for (absl::string_view line : absl::StrSplit(*rules, '\n', absl::SkipEmpty())) {
    out.emplace_back(line);
  }
  for (std::string& line : ipvsadmThresholdRules(c.services)) out.push_back(std::move(line));
  const IpvsTimeouts& t = c.services.timeouts();
  out.push_back(absl::StrCat("--set ", t.tcp, " ", t.tcpfin, " ", t.udp));
  for (SyncRole role : {kSyncMaster, kSyncBackup}) {
    const SyncDaemon& d = c.services.syncDaemons()[role];
    if (d.running) out.push_back(syncDaemonRule(role, d));
  }
  return out;
}

std::vector<std::string> saveRules(const IptablesModel& m) {
  std::vector<std::string> out;
  for (const std::string& line : iptablesRules(m)) {
    out.push_back(line.substr(std::string(m.tool()).size() + 1));
  }
  return out;
}

absl::Status statusOf(const absl::StatusOr<std::string>& r) { return r.status(); }

constexpr StateSection kStateSections[] = {
    {"sysctl", [](const Config& c) { return sysctlSettings(c.services); },
     [](Config& c, const std::vector<std::string>& a) {
       return statusOf(runSysctl(c.services, a));
     }},
    {"ipvsadm", saveIpvsadm,
     [](Config& c, const std::vector<std::string>& a) {
       return statusOf(runIpvsadm(c.services, a));
     }},
    {"iptables", [](const Config& c) { return saveRules(c.nat); },
     [](Config& c, const std::vector<std::string>& a) { return statusOf(runIptables(c.nat, a)); }},
    {"ip6tables", [](const Config& c) { return saveRules(c.nat6); },
     [](Config& c, const std::vector<std::string>& a) { return statusOf(runIptables(c.nat6, a)); }},
    {"announce", [](const Config& c) { return announceRules(c.announce); },
     [](Config& c, const std::vector<std::string>& a) {
       return statusOf(runAnnounce(c.announce, c.services, a));
     }},
    // After ipvsadm's: the checks belong to its real servers.
    {"healthcheck", [](const Config& c) { return healthcheckRules(c.services); },
     [](Config& c, const std::vector<std::string>& a) {
       return statusOf(runHealthcheck(c.services, a));
     }},
};

// A whole state file: the version line, the journal line (no records yet), the
// base and its trailer. The base's checksum (of the bytes from the line after the
// journal line up to the trailer) is the first of the journal's chain.
struct Rendered {
  std::string text;
  uint64_t checksum = 0;
  size_t journal_at = 0;  // where the journal line starts
};

Rendered stateOf(const Config& c) {
  Rendered r;
  r.text = absl::StrCat(kStatePrefix, kStateVersion, "\n");
  r.journal_at = r.text.size();
  std::string base =
      "# meshlbd appends each accepted change and now and then rewrites this file whole; each "
      "line is a section name and its arguments.\n";
  size_t lines = 0;
  for (const StateSection& s : kStateSections) {
    for (const std::string& line : s.save(c)) {
      absl::StrAppend(&base, s.name, " ", line, "\n");
      ++lines;
    }
  }
  r.checksum = hashBytes(base.data(), base.size(), 0);
  absl::StrAppend(&r.text, journalLine(0, r.checksum), base, kTrailerPrefix, lines,
                  " lines, checksum ", absl::StrFormat("%016x", r.checksum), "\n");
  return r;
}

// The lines of `text` with where each starts, and whether it ends in a newline.
class LineReader {
 public:
  explicit LineReader(absl::string_view text) : text_(text) {}
  bool done() const { return pos_ >= text_.size(); }
  size_t pos() const { return pos_; }
  int lineno() const { return lineno_; }
  // The next line without its newline; `complete`: it had one.
  absl::string_view next(bool* complete) {
    const size_t end = text_.find('\n', pos_);
    *complete = end != absl::string_view::npos;
    absl::string_view line = text_.substr(pos_, *complete ? end - pos_ : absl::string_view::npos);
    pos_ = *complete ? end + 1 : text_.size();
    ++lineno_;
    return line;
  }

 private:
  absl::string_view text_;
  size_t pos_ = 0;
  int lineno_ = 0;
};

using SettingLines = std::vector<std::pair<int, absl::string_view>>;  // line number, text

// A record's header, "# change K: M lines, checksum C": M (at least 1) and C.
bool parseChangeHeader(absl::string_view line, uint64_t k, size_t* m, uint64_t* sum) {
  if (!absl::ConsumePrefix(&line, absl::StrCat(kChangePrefix, k, ": "))) return false;
  std::vector<absl::string_view> parts = absl::StrSplit(line, " lines, checksum ");
  return parts.size() == 2 && absl::SimpleAtoi(parts[0], m) && *m > 0 &&
         absl::SimpleHexAtoi(parts[1], sum);
}

// A version 4 file: the base's setting lines, then those of each record the journal
// line counts, all checked against their checksums.
absl::Status parseV4(absl::string_view text, SettingLines* settings, std::string* note) {
  LineReader in(text);
  bool complete = false;
  in.next(&complete);  // the version line
  uint64_t changes = 0, journal_sum = 0;
  {
    absl::string_view line = in.next(&complete);
    std::vector<absl::string_view> parts;
    if (complete && absl::ConsumePrefix(&line, kJournalPrefix)) {
      parts = absl::StrSplit(line, ", checksum ");
    }
    if (parts.size() != 2 || parts[0].size() != 10 || parts[1].size() != 16 ||
        !absl::SimpleAtoi(parts[0], &changes) || !absl::SimpleHexAtoi(parts[1], &journal_sum)) {
      return absl::DataLossError(
          "line 2 is not the journal line (\"# changes after the base: ...\"): truncated or "
          "altered");
    }
  }
  // The base, up to its trailer.
  const size_t base_at = in.pos();
  size_t lines = 0;
  absl::string_view trailer;
  uint64_t chain_start = 0;
  for (;;) {
    if (in.done()) {
      return absl::DataLossError(
          "truncated: no \"# end of state\" trailer after the last line (the file was cut, or "
          "edited by hand; restore a configuration with meshlbctl ipvsadm -R instead)");
    }
    const size_t at = in.pos();
    absl::string_view line = in.next(&complete);
    if (!complete) return absl::DataLossError("truncated: the last line is incomplete");
    if (absl::ConsumePrefix(&line, kTrailerPrefix)) {
      trailer = line;
      absl::string_view base = text.substr(base_at, at - base_at);
      const uint64_t sum = hashBytes(base.data(), base.size(), 0);
      const std::string want =
          absl::StrCat(lines, " lines, checksum ", absl::StrFormat("%016x", sum));
      if (trailer != want) {
        return absl::DataLossError(absl::StrCat("the trailer says \"", trailer,
                                                "\" but the file has \"", want,
                                                "\": truncated or altered"));
      }
      chain_start = sum;
      break;
    }
    if (!line.empty() && line[0] != '#') {
      settings->emplace_back(in.lineno(), line);
      ++lines;
    }
  }
  // The records the journal line counts, each checked against the chain.
  uint64_t chain = chain_start;
  for (uint64_t k = 1; k <= changes; ++k) {
    if (in.done()) {
      return absl::DataLossError(absl::StrCat("truncated: the journal line counts ", changes,
                                              " changes after the base, the file holds ", k - 1));
    }
    size_t m = 0;
    uint64_t sum = 0;
    absl::string_view head = in.next(&complete);
    const int head_line = in.lineno();
    if (!complete || !parseChangeHeader(head, k, &m, &sum)) {
      return absl::DataLossError(absl::StrCat("line ", head_line, " is not the header of change ",
                                              k, ": truncated or altered"));
    }
    const size_t body_at = in.pos();
    for (size_t i = 0; i < m; ++i) {
      absl::string_view l = in.next(&complete);
      if (!complete || l.empty() || l[0] == '#') {
        return absl::DataLossError(absl::StrCat("change ", k, " (line ", head_line,
                                                ") is cut short or holds other than settings: "
                                                "truncated or altered"));
      }
      settings->emplace_back(in.lineno(), l);
    }
    absl::string_view body = text.substr(body_at, in.pos() - body_at);
    chain = hashBytes(body.data(), body.size(), chain);
    if (chain != sum) {
      return absl::DataLossError(absl::StrCat("change ", k, " (line ", head_line,
                                              ") does not match its checksum: truncated or "
                                              "altered"));
    }
  }
  if (chain != journal_sum) {
    return absl::DataLossError(
        "the journal line's checksum is not the last change's: truncated or altered");
  }
  if (in.done()) return absl::OkStatus();
  // After them, only the change that was being written when meshlbd stopped may
  // follow, whole or cut anywhere: it was never acknowledged (the journal line is
  // written after it), so it is passed over. Anything else was put there by
  // something other than meshlbd.
  const int at_line = in.lineno() + 1;
  const std::string expected = absl::StrCat(kChangePrefix, changes + 1, ": ");
  absl::string_view head = in.next(&complete);
  size_t m = 0, written = 0;
  uint64_t sum = 0;
  bool ok = complete ? parseChangeHeader(head, changes + 1, &m, &sum)
                     : absl::StartsWith(expected, head) || absl::StartsWith(head, expected);
  while (ok && !in.done()) {
    absl::string_view l = in.next(&complete);
    ok = ++written <= m && !(complete && (l.empty() || l[0] == '#'));
  }
  if (!ok) {
    return absl::DataLossError(absl::StrCat("line ", at_line,
                                            " follows the last change the journal line counts: "
                                            "altered, or appended to by hand"));
  }
  *note = absl::StrCat("passed over change ", changes + 1, " (", written, " of its ",
                       m ? absl::StrCat(m) : std::string("?"),
                       " lines written): meshlbd stopped while saving it, before it was "
                       "acknowledged");
  return absl::OkStatus();
}

// Since version 3 the last line is the trailer: the count of setting lines and the
// checksum of everything before it. A file cut anywhere, emptied, or edited by
// hand fails here, before any line is applied.
absl::Status checkTrailer(absl::string_view text) {
  size_t settings = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    settings += line[0] != '#';
  }
  absl::string_view body = text;
  if (!absl::ConsumeSuffix(&body, "\n")) {
    return absl::DataLossError("truncated: the last line is incomplete (no trailer)");
  }
  const size_t start = body.find_last_of('\n') + 1;  // npos + 1 == 0
  absl::string_view trailer = body.substr(start);
  body = text.substr(0, start);
  if (!absl::ConsumePrefix(&trailer, kTrailerPrefix)) {
    return absl::DataLossError(
        "truncated: no \"# end of state\" trailer after the last line (the file was cut, or "
        "edited by hand; restore a configuration with meshlbctl ipvsadm -R instead)");
  }
  const std::string want = absl::StrCat(settings, " lines, checksum ", checksumOf(body));
  if (trailer != want) {
    return absl::DataLossError(absl::StrCat("the trailer says \"", trailer,
                                            "\" but the file has \"", want,
                                            "\": truncated or altered"));
  }
  return absl::OkStatus();
}

// The setting lines that replay a change: the command itself, or for ipvsadm -R
// each line of its input (applied in order, as -R applies them). Nullopt when a word
// could not be written as one (blank, or a control character): the caller then
// saves the whole configuration instead.
std::optional<std::vector<std::string>> changeLines(const std::string& tool,
                                                    const std::vector<std::string>& args,
                                                    const std::string& input) {
  auto plain = [](absl::string_view w) {
    return !w.empty() && std::none_of(w.begin(), w.end(), [](char ch) {
      return static_cast<unsigned char>(ch) <= 0x20 || ch == 0x7f;
    });
  };
  std::vector<std::string> out;
  auto add = [&](const std::vector<absl::string_view>& words) {
    if (!std::all_of(words.begin(), words.end(), plain)) return false;
    out.push_back(absl::StrCat(tool, " ", absl::StrJoin(words, " ")));
    return true;
  };
  if (tool == "ipvsadm" && ipvsadmRestores(args)) {
    for (absl::string_view line : absl::StrSplit(input, '\n')) {
      std::vector<absl::string_view> words =
          absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
      if (words.empty() || words[0][0] == '#') continue;  // as -R reads it
      if (!add(words)) return std::nullopt;
    }
  } else if (!add(std::vector<absl::string_view>(args.begin(), args.end()))) {
    return std::nullopt;
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> Commands::run(const std::vector<std::string>& args,
                                          const std::string& input, bool* changed) {
  *changed = false;
  if (args.empty()) {
    return absl::InvalidArgumentError(
        "no command: use ipvsadm, iptables, ip6tables, sysctl, healthcheck, announce or stats");
  }
  const std::string& tool = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (tool == "stats") {
    bool json = false;
    for (const auto& a : rest) {
      if (a == "--json") {
        json = true;
      } else if (a == "-h" || a == "--help") {
        return std::string(kStatsUsage);
      } else {
        return absl::InvalidArgumentError(absl::StrCat("stats: unknown option '", a, "'"));
      }
    }
    return stats_ ? stats_(json) : std::string();
  }
  if (tool == "ipvsadm" || tool == "sysctl" || tool == "healthcheck") {
    const bool ipvsadm = tool == "ipvsadm", health = tool == "healthcheck";
    // Listings change nothing: they read the live configuration.
    if (ipvsadm && ipvsadmReadsOnly(rest)) return runIpvsadm(config_.services, rest, input, ipvs_);
    if (health && healthcheckReadsOnly(rest)) {
      return runHealthcheck(config_.services, rest, health_status_);
    }
    // Applied in place, undone unless everything (the command, the checks, the state
    // file) succeeds: nothing is copied, so a change costs what it touches.
    ServiceModel::Transaction txn(config_.services);
    auto out = ipvsadm  ? runIpvsadm(config_.services, rest, input, ipvs_)
               : health ? runHealthcheck(config_.services, rest, health_status_)
                        : runSysctl(config_.services, rest);
    if (!out.ok()) return out;
    const std::vector<ServiceKey> touched = txn.touched();
    if (auto st = validate(config_.services, &touched); !st.ok()) return st;
    if (txn.changed()) {
      if (auto st = persistChange(changeLines(tool, rest, input)); !st.ok()) {
        return absl::InternalError(absl::StrCat("change not applied: ", st.message()));
      }
      *changed = true;
      tellStatistics(txn.before());
      if (health || touchesChecks(txn.before())) ++checks_version_;
    }
    txn.commit();
    return out;
  }
  if (tool == "announce") {
    if (announceReadsOnly(rest)) {
      return runAnnounce(config_.announce, config_.services, rest, announce_runtime_);
    }
    AnnounceModel next = config_.announce;
    auto out = runAnnounce(next, config_.services, rest, announce_runtime_);
    if (!out.ok()) return out;
    if (!(next == config_.announce)) {
      if (auto st = persistChange(changeLines(tool, rest, input)); !st.ok()) {
        return absl::InternalError(absl::StrCat("change not applied: ", st.message()));
      }
      config_.announce = std::move(next);
      *changed = true;
    }
    return out;
  }
  if (tool == "iptables" || tool == "ip6tables") {
    // Rules are few, and a command works on a copy of them (as the kernel's iptables
    // replaces a whole table), so that a failure to save leaves them as they were.
    IptablesModel& rules = tool == "iptables" ? config_.nat : config_.nat6;
    IptablesModel next = rules;
    auto out = runIptables(next, rest);
    if (!out.ok()) return out;
    if (!(next == rules)) {
      if (auto st = persistChange(changeLines(tool, rest, input)); !st.ok()) {
        return absl::InternalError(absl::StrCat("change not applied: ", st.message()));
      }
      rules = std::move(next);
      *changed = true;
    }
    return out;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown command '", tool,
                   "': use ipvsadm, iptables, ip6tables, sysctl, healthcheck, announce or stats"));
}

// Whether a change touched a real server with a health check (before or after it).
bool Commands::touchesChecks(const std::map<ServiceKey, std::optional<Service>>& before) const {
  auto checked = [](const Service& s) {
    return std::any_of(s.dests.begin(), s.dests.end(),
                       [](const RealServer& d) { return d.check.has_value(); });
  };
  for (const auto& [key, old] : before) {
    if (old && checked(*old)) return true;
    auto it = config_.services.services().find(key);
    if (it != config_.services.services().end() && checked(it->second)) return true;
  }
  return false;
}

// The statistics' side of a change: a service keeps what its removed servers counted
// (IPVS's service counters are its own), and a service new in its slot starts at 0.
void Commands::tellStatistics(const std::map<ServiceKey, std::optional<Service>>& before) {
  for (const auto& [key, old] : before) {
    auto it = config_.services.services().find(key);
    const Service* now = it == config_.services.services().end() ? nullptr : &it->second;
    const bool same = old && now && old->slot == now->slot;
    if (old && ipvs_.removed) {
      absl::flat_hash_set<uint32_t> kept;  // O(servers), not O(servers^2), for a big service
      if (same) {
        for (const RealServer& n : now->dests) kept.insert(n.id.raw());
      }
      std::vector<BackendId> gone;
      for (const RealServer& d : old->dests) {
        if (!kept.contains(d.id.raw())) gone.push_back(d.id);
      }
      if (!gone.empty() || !same) ipvs_.removed(old->slot, gone);
    }
    if (old && !same && ipvs_.retired) ipvs_.retired(old->slot);
    if (now && !same && ipvs_.added) ipvs_.added(now->slot);
  }
}

absl::Status Commands::validate(const ServiceModel& m, const std::vector<ServiceKey>* keys) const {
  if (!dataplane_limits_) return absl::OkStatus();
  auto check = [](const ServiceKey&, const Service& svc) {
    for (const RealServer& d : svc.dests) {
      if (d.addr.family == Family::kIpv6 && d.fwd == ForwardMethod::kTunnel) {
        return absl::UnimplementedError(absl::StrCat(
            "IPv6 real server ", d.addr.str(),
            ": tunnelling (-i) to IPv6 real servers is not carried by meshlb's dataplane yet "
            "(use -m or -g); nothing was changed"));
      }
    }
    return absl::OkStatus();
  };
  if (!keys) {
    for (const auto& [key, svc] : m.services()) {
      if (auto st = check(key, svc); !st.ok()) return st;
    }
    return absl::OkStatus();
  }
  for (const ServiceKey& key : *keys) {
    auto it = m.services().find(key);
    if (it == m.services().end()) continue;
    if (auto st = check(key, it->second); !st.ok()) return st;
  }
  return absl::OkStatus();
}

std::string Commands::saveState() const { return stateOf(config_).text; }

absl::Status Commands::restoreState(const std::string& text) {
  load_note_.clear();
  if (text.empty()) {
    return absl::DataLossError("the file is empty: truncated, or not written by meshlbd");
  }
  int version = 0;
  {
    absl::string_view first = absl::string_view(text).substr(0, text.find('\n'));
    if (!absl::ConsumePrefix(&first, kStatePrefix)) {
      return absl::DataLossError("not a meshlb state file (no header)");
    }
    if (!absl::SimpleAtoi(first, &version) || version < 1) {
      return absl::DataLossError("not a meshlb state file (bad version line)");
    }
    if (version > kStateVersion) {
      return absl::DataLossError(absl::StrCat("state file version ", version,
                                              " is newer than this meshlbd reads (", kStateVersion,
                                              ")"));
    }
  }
  SettingLines settings;
  std::string note;
  if (version >= 4) {
    if (auto st = parseV4(text, &settings, &note); !st.ok()) return st;
  } else {
    if (version == 3) {
      if (auto st = checkTrailer(text); !st.ok()) return st;
    }
    LineReader in(text);
    while (!in.done()) {
      bool complete = false;
      absl::string_view line = in.next(&complete);
      if (!line.empty() && line[0] != '#') settings.emplace_back(in.lineno(), line);
    }
  }
  Config c;
  for (const auto& [lineno, line] : settings) {
    // Every line is a command as an operator would send it: split on blanks only,
    // and refused if it holds anything else (a control character, a lone blank).
    std::vector<std::string> w = absl::StrSplit(line, ' ', absl::SkipEmpty());
    auto bad = std::find_if(line.begin(), line.end(),
                            [](char ch) { return static_cast<unsigned char>(ch) < 0x20; });
    absl::Status st;
    if (bad != line.end() || w.empty()) {
      st = absl::InvalidArgumentError("not a setting (blank, or a control character)");
    } else {
      const std::vector<std::string> rest(w.begin() + 1, w.end());
      const StateSection* section = nullptr;
      for (const StateSection& s : kStateSections) {
        if (w[0] == s.name) section = &s;
      }
      st = section ? section->restore(c, rest)
                   : absl::InvalidArgumentError(absl::StrCat("unknown section '", w[0], "'"));
    }
    if (!st.ok()) {
      return absl::DataLossError(absl::StrCat("state line ", lineno, ": ", st.message()));
    }
  }
  // The whole configuration, as a command's result would be.
  if (auto st = validate(c.services, nullptr); !st.ok()) {
    return absl::DataLossError(
        absl::StrCat("the configuration it holds is refused: ", st.message()));
  }
  config_ = std::move(c);
  load_note_ = std::move(note);
  ++checks_version_;
  return absl::OkStatus();
}

absl::Status Commands::useStateFile(const std::string& path) {
  std::ifstream in(path);
  if (in) {
    std::stringstream ss;
    ss << in.rdbuf();
    if (auto st = restoreState(ss.str()); !st.ok()) {
      return absl::Status(
          st.code(), absl::StrCat(path, ": ", st.message(), " (left untouched; fix or remove it)"));
    }
  } else if (errno != ENOENT) {
    return absl::InternalError(absl::StrCat(path, ": ", std::strerror(errno)));
  }
  state_file_ = path;
  return persistAll();
}

namespace {
bool pwriteAll(int fd, absl::string_view data, uint64_t at) {
  while (!data.empty()) {
    const ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
    at += static_cast<uint64_t>(n);
  }
  return true;
}
}  // namespace

absl::Status Commands::persistAll() {
  if (state_file_.empty()) return absl::OkStatus();
  journal_.broken = true;
  // write, fsync, rename, fsync the directory: a crash leaves the old or the new file.
  const std::string tmp = state_file_ + ".tmp";
  const Rendered r = stateOf(config_);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(absl::StrCat(tmp, ": ", std::strerror(errno)));
  bool ok = pwriteAll(fd, r.text, 0) && ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), state_file_.c_str()) != 0) {
    const int e = ok ? errno : err;
    ::unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat(state_file_, ": ", std::strerror(e)));
  }
  std::string dir = state_file_.substr(0, state_file_.find_last_of('/') + 1);
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  journal_ = Journal{0, r.checksum, r.text.size(), r.text.size(), r.journal_at, false};
  return absl::OkStatus();
}

absl::Status Commands::persistChange(const std::optional<std::vector<std::string>>& lines) {
  if (state_file_.empty()) return absl::OkStatus();
  std::string body;
  if (lines) {
    for (const std::string& l : *lines) absl::StrAppend(&body, l, "\n");
  }
  if (!lines || lines->empty() || journal_.broken ||
      journal_.size - journal_.base + body.size() > journal_.base + kJournalSlack) {
    return persistAll();
  }
  // The record, then (once it is on disk) the journal line that counts it: a crash
  // between the two leaves a record no one was told of, which the next start passes
  // over. A failure puts back what it can and has the next change rewrite the file.
  const uint64_t k = journal_.changes + 1;
  const uint64_t sum = hashBytes(body.data(), body.size(), journal_.checksum);
  const std::string record =
      absl::StrCat(kChangePrefix, k, ": ", lines->size(), " lines, checksum ",
                   absl::StrFormat("%016x", sum), "\n", body);
  const int fd = ::open(state_file_.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    journal_.broken = true;
    return absl::InternalError(absl::StrCat(state_file_, ": ", std::strerror(errno)));
  }
  bool appended = pwriteAll(fd, record, journal_.size) && ::fsync(fd) == 0;
  bool counted =
      appended && pwriteAll(fd, journalLine(k, sum), journal_.line_at) && ::fsync(fd) == 0;
  const int err = errno;
  if (!counted) {
    journal_.broken = true;
    if (appended) {
      (void)pwriteAll(fd, journalLine(journal_.changes, journal_.checksum), journal_.line_at);
    }
    (void)!::ftruncate(fd, static_cast<off_t>(journal_.size));
    ::close(fd);
    return absl::InternalError(absl::StrCat(state_file_, ": ", std::strerror(err)));
  }
  ::close(fd);
  journal_.changes = k;
  journal_.checksum = sum;
  journal_.size += record.size();
  return absl::OkStatus();
}

}  // namespace meshlb
