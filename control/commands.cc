#include "commands.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "ipvsadm.h"
#include "meshlb/hash.h"

namespace meshlb {

namespace {

constexpr char kStatePrefix[] = "# meshlb state v";
constexpr char kTrailerPrefix[] = "# end of state: ";

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
  // -S changes nothing: no copy of the model (O(configuration) on every change).
  auto rules = runIpvsadm(const_cast<ServiceModel&>(c.services), {"-S", "-n"});
  for (absl::string_view line : absl::StrSplit(*rules, '\n', absl::SkipEmpty())) {
    out.emplace_back(line);
  }
  const IpvsTimeouts& t = c.services.timeouts();
  out.push_back(absl::StrCat("--set ", t.tcp, " ", t.tcpfin, " ", t.udp));
  return out;
}

std::vector<std::string> saveIptables(const Config& c) {
  std::vector<std::string> out;
  for (const std::string& line : iptablesRules(c.nat)) {
    out.push_back(line.substr(std::string("iptables ").size()));
  }
  return out;
}

absl::Status statusOf(const absl::StatusOr<std::string>& r) { return r.status(); }

constexpr StateSection kStateSections[] = {
    {"ipvsadm", saveIpvsadm,
     [](Config& c, const std::vector<std::string>& a) {
       return statusOf(runIpvsadm(c.services, a));
     }},
    {"iptables", saveIptables,
     [](Config& c, const std::vector<std::string>& a) { return statusOf(runIptables(c.nat, a)); }},
};

std::string stateOf(const Config& c) {
  std::string out = absl::StrCat(kStatePrefix, kStateVersion, "\n",
                                 "# meshlbd rewrites this file on every accepted change; each line "
                                 "is a section name and its arguments.\n");
  size_t lines = 0;
  for (const StateSection& s : kStateSections) {
    for (const std::string& line : s.save(c)) {
      absl::StrAppend(&out, s.name, " ", line, "\n");
      ++lines;
    }
  }
  absl::StrAppend(&out, kTrailerPrefix, lines, " lines, checksum ", checksumOf(out), "\n");
  return out;
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

}  // namespace

absl::StatusOr<std::string> Commands::run(const std::vector<std::string>& args,
                                          const std::string& input, bool* changed) {
  *changed = false;
  if (args.empty()) {
    return absl::InvalidArgumentError("no command: use ipvsadm, iptables or stats");
  }
  const std::string& tool = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (tool == "stats") {
    bool json = false;
    for (const auto& a : rest) {
      if (a == "--json") {
        json = true;
      } else {
        return absl::InvalidArgumentError(absl::StrCat("stats: unknown option '", a, "'"));
      }
    }
    return stats_ ? stats_(json) : std::string();
  }
  if (tool != "ipvsadm" && tool != "iptables") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown command '", tool, "': use ipvsadm, iptables or stats"));
  }
  // Listings change nothing: they read the live configuration, uncopied.
  if (tool == "ipvsadm" && ipvsadmReadsOnly(rest))
    return runIpvsadm(config_.services, rest, input, ipvs_);
  // Work on a copy, so that a failure to persist leaves the running state as it was.
  Config next = config_;
  auto out = tool == "ipvsadm" ? runIpvsadm(next.services, rest, input, ipvs_)
                               : runIptables(next.nat, rest);
  if (!out.ok()) return out;
  if (auto st = validate(next); !st.ok()) return st;
  // The models say whether anything changed.
  if (!next.sameAs(config_)) {
    std::swap(next, config_);
    if (auto st = persist(); !st.ok()) {
      std::swap(next, config_);
      return absl::InternalError(absl::StrCat("change not applied: ", st.message()));
    }
    *changed = true;
  }
  return out;
}

absl::Status Commands::validate(const Config& c) const {
  if (!ipv4_only_) return absl::OkStatus();
  for (const auto& [key, svc] : c.services.services()) {
    bool v6 = !key.fwmark && key.addr.family == Family::kIpv6;
    for (const RealServer& d : svc.dests) v6 = v6 || d.addr.family == Family::kIpv6;
    if (v6) {
      return absl::UnimplementedError(
          "IPv6 services and real servers are not served by meshlb's dataplane yet; "
          "nothing was changed");
    }
  }
  return absl::OkStatus();
}

std::string Commands::saveState() const { return stateOf(config_); }

absl::Status Commands::restoreState(const std::string& text) {
  if (text.empty()) {
    return absl::DataLossError("the file is empty: truncated, or not written by meshlbd");
  }
  Config c;
  int lineno = 0, version = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++lineno;
    if (line.empty()) continue;
    if (line[0] == '#') {
      if (version == 0 && absl::ConsumePrefix(&line, kStatePrefix)) {
        if (!absl::SimpleAtoi(line, &version) || version < 1) {
          return absl::DataLossError("not a meshlb state file (bad version line)");
        }
        if (version > kStateVersion) {
          return absl::DataLossError(absl::StrCat("state file version ", version,
                                                  " is newer than this meshlbd reads (",
                                                  kStateVersion, ")"));
        }
        if (version >= 3) {
          if (auto st = checkTrailer(text); !st.ok()) return st;
        }
      }
      continue;
    }
    if (version == 0) return absl::DataLossError("not a meshlb state file (no header)");
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
  if (version == 0) return absl::DataLossError("not a meshlb state file (no header)");
  // The whole configuration, as a command's result would be.
  if (auto st = validate(c); !st.ok()) {
    return absl::DataLossError(
        absl::StrCat("the configuration it holds is refused: ", st.message()));
  }
  config_ = std::move(c);
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
  return persist();
}

absl::Status Commands::persist() {
  if (state_file_.empty()) return absl::OkStatus();
  // write, fsync, rename, fsync the directory: a crash leaves the old or the new file.
  const std::string tmp = state_file_ + ".tmp";
  const std::string body = saveState();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(absl::StrCat(tmp, ": ", std::strerror(errno)));
  bool ok = ::write(fd, body.data(), body.size()) == static_cast<ssize_t>(body.size()) &&
            ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), state_file_.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat(state_file_, ": ", std::strerror(errno)));
  }
  std::string dir = state_file_.substr(0, state_file_.find_last_of('/') + 1);
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return absl::OkStatus();
}

}  // namespace meshlb
