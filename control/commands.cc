#include "commands.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "ipvsadm.h"

namespace meshlb {

namespace {
constexpr char kStateHeader[] = "# meshlb state v1";

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
  // Work on copies, so that a failure to persist leaves the running state as it was.
  ServiceModel s = services_;
  IptablesModel n = nat_;
  auto out = tool == "ipvsadm" ? runIpvsadm(s, rest, input, ipvs_) : runIptables(n, rest);
  if (!out.ok()) return out;
  if (ipv4_only_) {
    for (const auto& [key, svc] : s.services()) {
      bool v6 = !key.fwmark && key.addr.af == AF_INET6;
      for (const RealServer& d : svc.dests) v6 = v6 || d.addr.af == AF_INET6;
      if (v6) {
        return absl::UnimplementedError(
            "IPv6 services and real servers are not served by meshlb's dataplane yet; "
            "nothing was changed");
      }
    }
  }
  // A command changed the configuration when its replayable form changed.
  if (stateOf(s, n) != stateOf(services_, nat_)) {
    std::swap(s, services_);
    std::swap(n, nat_);
    if (auto st = persist(); !st.ok()) {
      std::swap(s, services_);
      std::swap(n, nat_);
      return absl::InternalError(absl::StrCat("change not applied: ", st.message()));
    }
    *changed = true;
  }
  return out;
}

std::string Commands::stateOf(const ServiceModel& services, const IptablesModel& nat) {
  std::string out = absl::StrCat(kStateHeader, "\n");
  ServiceModel copy = services;
  auto rules = runIpvsadm(copy, {"-S", "-n"});
  for (absl::string_view line : absl::StrSplit(*rules, '\n', absl::SkipEmpty())) {
    absl::StrAppend(&out, "ipvsadm ", line, "\n");
  }
  const IpvsTimeouts& t = services.timeouts();
  absl::StrAppend(&out, "ipvsadm --set ", t.tcp, " ", t.tcpfin, " ", t.udp, "\n");
  for (const std::string& line : iptablesRules(nat)) absl::StrAppend(&out, line, "\n");
  return out;
}

std::string Commands::saveState() const { return stateOf(services_, nat_); }

absl::Status Commands::restoreState(const std::string& text) {
  ServiceModel s;
  IptablesModel n;
  int lineno = 0;
  bool header = false;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++lineno;
    if (line.empty()) continue;
    if (line[0] == '#') {
      header = header || line == kStateHeader;
      continue;
    }
    if (!header) return absl::DataLossError("not a meshlb state file (no header)");
    std::vector<std::string> w = absl::StrSplit(line, ' ', absl::SkipEmpty());
    const std::vector<std::string> rest(w.begin() + 1, w.end());
    absl::StatusOr<std::string> r =
        w[0] == "ipvsadm"    ? runIpvsadm(s, rest)
        : w[0] == "iptables" ? runIptables(n, rest)
                             : absl::StatusOr<std::string>(absl::InvalidArgumentError(
                                   absl::StrCat("unknown tool '", w[0], "'")));
    if (!r.ok()) {
      return absl::DataLossError(absl::StrCat("state line ", lineno, ": ", r.status().message()));
    }
  }
  if (!header && !text.empty()) return absl::DataLossError("not a meshlb state file (no header)");
  services_ = std::move(s);
  nat_ = std::move(n);
  return absl::OkStatus();
}

absl::Status Commands::useStateFile(const std::string& path) {
  std::ifstream in(path);
  if (in) {
    std::stringstream ss;
    ss << in.rdbuf();
    if (auto st = restoreState(ss.str()); !st.ok()) {
      return absl::Status(st.code(), absl::StrCat(path, ": ", st.message(),
                                                  " (left untouched; fix or remove it)"));
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
