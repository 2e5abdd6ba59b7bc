#include "health.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ipvsadm.h"
#include "usage.h"

namespace meshlb {
namespace {

absl::Status bad(const std::string& msg) { return absl::InvalidArgumentError(msg); }

// "2", "0.5": seconds, kept as milliseconds (100 ms .. 1 hour).
absl::StatusOr<uint32_t> seconds(const std::string& flag, const std::string& v) {
  double s = 0;
  if (!absl::SimpleAtod(v, &s) || !(s >= 0.1 && s <= 3600)) {
    return bad(absl::StrCat(flag, " '", v, "': seconds from 0.1 to 3600"));
  }
  return static_cast<uint32_t>(s * 1000 + 0.5);
}
std::string secondsText(uint32_t ms) { return absl::StrCat(ms / 1000.0); }

std::string describe(const HealthCheck& c) {
  std::string s = c.http ? absl::StrCat("http GET ", c.path, " expect ", c.expect) : "tcp connect";
  if (c.port) absl::StrAppend(&s, " port ", c.port);
  absl::StrAppend(&s, ", every ", secondsText(c.interval_ms), "s, timeout ",
                  secondsText(c.timeout_ms), "s, rise ", c.rise, ", fall ", c.fall);
  return s;
}

std::string rule(const ServiceKey& k, const RealServer& d) {
  const HealthCheck& c = *d.check;
  std::string s = absl::StrCat("-a ", serviceRuleName(k), " -r ", addrPortName(d.addr, d.port));
  if (c.http) {
    absl::StrAppend(&s, " --http ", c.path, " --expect ", c.expect);
  } else {
    absl::StrAppend(&s, " --tcp");
  }
  if (c.port) absl::StrAppend(&s, " --check-port ", c.port);
  absl::StrAppend(&s, " --interval ", secondsText(c.interval_ms), " --timeout ",
                  secondsText(c.timeout_ms), " --rise ", c.rise, " --fall ", c.fall);
  return s;
}

const RealServer* findDest(const ServiceModel& m, const ServiceKey& k, const IpAddr& a,
                           uint16_t port) {
  auto it = m.services().find(k);
  if (it == m.services().end()) return nullptr;
  for (const RealServer& d : it->second.dests) {
    if (d.addr == a && d.port == port) return &d;
  }
  return nullptr;
}

std::string listing(const ServiceModel& m, const std::optional<ServiceKey>& only,
                    const HealthStatusFn& status) {
  std::string out =
      "Service / Real server          State  Last (in a row)           Checks     Failures   "
      "Check\n";
  for (const auto& [key, svc] : m.services()) {
    if (only && key != *only) continue;
    bool header = false;
    for (const RealServer& d : svc.dests) {
      if (!d.check) continue;
      if (!header) absl::StrAppend(&out, serviceListName(key), "\n");
      header = true;
      const std::optional<HealthStatus> st = status ? status(d.id) : std::nullopt;
      const std::string last =
          st && st->checks ? absl::StrCat(st->last, " (", st->in_row, ")") : "not checked yet";
      absl::StrAppend(
          &out, absl::StrFormat("  -> %-26s %-6s %-25s %-10u %-10u %s\n",
                                addrPortName(d.addr, d.port), d.down ? "DOWN" : "UP", last,
                                st ? st->checks : 0, st ? st->failures : 0, describe(*d.check)));
    }
  }
  return out;
}

}  // namespace

bool healthcheckReadsOnly(const std::vector<std::string>& args) {
  for (const std::string& a : args) {
    if (a == "-L" || a == "--list" || a == "-S" || a == "--save" || a == "-h" || a == "--help") {
      return true;
    }
  }
  return args.empty();
}

std::vector<std::string> healthcheckRules(const ServiceModel& model) {
  std::vector<std::string> out, down;
  for (const auto& [key, svc] : model.services()) {
    for (const RealServer& d : svc.dests) {
      if (!d.check) continue;
      out.push_back(rule(key, d));
      if (d.down) {
        down.push_back(absl::StrCat("--state ", serviceRuleName(key), " -r ",
                                    addrPortName(d.addr, d.port), " down"));
      }
    }
  }
  out.insert(out.end(), down.begin(), down.end());
  return out;
}

absl::StatusOr<std::string> runHealthcheck(ServiceModel& m, const std::vector<std::string>& args,
                                           const HealthStatusFn& status) {
  enum class Cmd { kNone, kAdd, kEdit, kDel, kState, kList, kSave } cmd = Cmd::kNone;
  std::optional<ServiceKey> svc;
  std::string server;
  std::optional<bool> down;
  // The options given, applied over the default check (-a) or the present one (-e).
  std::vector<std::function<absl::Status(HealthCheck&)>> sets;
  bool options = false;
  auto setCmd = [&](Cmd c, const std::string& a) -> absl::Status {
    if (cmd != Cmd::kNone) return bad(absl::StrCat("'", a, "': one command at a time"));
    cmd = c;
    return absl::OkStatus();
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> absl::StatusOr<std::string> {
      if (i + 1 >= args.size()) return bad(absl::StrCat("option ", a, " needs a value"));
      return args[++i];
    };
    absl::Status st;
    if (a == "-h" || a == "--help") return std::string(kHealthcheckUsage);
    if (a == "-a" || a == "--add") {
      st = setCmd(Cmd::kAdd, a);
    } else if (a == "-e" || a == "--edit") {
      st = setCmd(Cmd::kEdit, a);
    } else if (a == "-d" || a == "--delete") {
      st = setCmd(Cmd::kDel, a);
    } else if (a == "-L" || a == "--list") {
      st = setCmd(Cmd::kList, a);
    } else if (a == "-S" || a == "--save") {
      st = setCmd(Cmd::kSave, a);
    } else if (a == "-n" || a == "--numeric") {
      // Listings are numeric.
    } else if (a == "--state") {
      st = setCmd(Cmd::kState, a);
    } else if (a == "up" || a == "down") {
      if (cmd != Cmd::kState || down)
        return bad(absl::StrCat("'", a, "' goes once, after --state"));
      down = a == "down";
    } else if (a == "-t" || a == "--tcp-service" || a == "-u" || a == "--udp-service" ||
               a == "-f" || a == "--fwmark-service") {
      if (svc) return bad("one service at a time");
      auto v = value();
      if (!v.ok()) return v.status();
      auto k = parseServiceOption(a, *v);
      if (!k.ok()) return k.status();
      svc = *k;
    } else if (a == "-6" || a == "--ipv6") {
      st = applyIpv6Option(svc ? &*svc : nullptr);
    } else if (a == "-r" || a == "--real-server") {
      auto v = value();
      if (!v.ok()) return v.status();
      server = *v;
    } else if (a == "--tcp") {
      options = true;
      sets.push_back([](HealthCheck& c) {
        c.http = false;
        return absl::OkStatus();
      });
    } else if (a == "--http") {
      auto v = value();
      if (!v.ok()) return v.status();
      const std::string path = *v;
      if (path.empty() || path[0] != '/' ||
          std::any_of(
              path.begin(), path.end(),
              [](char ch) { return static_cast<unsigned char>(ch) <= 0x20 || ch == 0x7f; }) ||
          path.size() > 1024) {
        return bad(absl::StrCat("--http '", path, "': a path from /, without blanks"));
      }
      options = true;
      sets.push_back([path](HealthCheck& c) {
        c.http = true;
        c.path = path;
        return absl::OkStatus();
      });
    } else if (a == "--expect" || a == "--check-port" || a == "--rise" || a == "--fall") {
      auto v = value();
      if (!v.ok()) return v.status();
      uint32_t n = 0;
      const bool port = a == "--check-port", expect = a == "--expect";
      const uint32_t lo = expect ? 100 : 1, hi = expect ? 599 : port ? 65535 : 100;
      if (!absl::SimpleAtoi(*v, &n) || n < lo || n > hi) {
        return bad(absl::StrCat(a, " '", *v, "': a number from ", lo, " to ", hi));
      }
      options = true;
      sets.push_back([a, n](HealthCheck& c) {
        if (a == "--expect") c.expect = static_cast<uint16_t>(n);
        if (a == "--check-port") c.port = static_cast<uint16_t>(n);
        if (a == "--rise") c.rise = n;
        if (a == "--fall") c.fall = n;
        return absl::OkStatus();
      });
    } else if (a == "--interval" || a == "--timeout") {
      auto v = value();
      if (!v.ok()) return v.status();
      auto ms = seconds(a, *v);
      if (!ms.ok()) return ms.status();
      options = true;
      sets.push_back([a, ms = *ms](HealthCheck& c) {
        (a == "--interval" ? c.interval_ms : c.timeout_ms) = ms;
        return absl::OkStatus();
      });
    } else {
      return bad(absl::StrCat("unknown option '", a, "'\n", kHealthcheckUsage));
    }
    if (!st.ok()) return st;
  }
  switch (cmd) {
    case Cmd::kNone:
      return bad(absl::StrCat("no command (-a, -e, -d, --state, -L, -S)\n", kHealthcheckUsage));
    case Cmd::kList:
      return listing(m, svc, status);
    case Cmd::kSave: {
      std::string out;
      for (const std::string& r : healthcheckRules(m)) absl::StrAppend(&out, r, "\n");
      return out;
    }
    default:
      break;
  }
  if (!svc) return bad("a service is required (-t, -u or -f)");
  if (server.empty()) return bad("a real server is required (-r)");
  auto real = parseRealServerOption(*svc, server);
  if (!real.ok()) return real.status();
  if (m.services().find(*svc) == m.services().end()) {
    return absl::NotFoundError("Service not defined");
  }
  const RealServer* d = findDest(m, *svc, real->first, real->second);
  if (!d) return absl::NotFoundError("No such destination");
  if ((cmd == Cmd::kDel || cmd == Cmd::kState) && options) {
    return bad("check options go with -a or -e only");
  }
  if (cmd == Cmd::kState) {
    if (!down) return bad("--state needs up or down");
    if (auto st = m.setDown(*svc, real->first, real->second, *down); !st.ok()) return st;
    return std::string();
  }
  if (down) return bad("up/down go with --state only");
  if (cmd == Cmd::kDel) {
    if (!d->check) return absl::NotFoundError("the real server has no health check");
    if (auto st = m.setCheck(*svc, real->first, real->second, std::nullopt); !st.ok()) return st;
    return std::string();
  }
  if (cmd == Cmd::kAdd && d->check) {
    return absl::AlreadyExistsError("the real server has a health check already (-e changes it)");
  }
  if (cmd == Cmd::kEdit && !d->check) {
    return absl::NotFoundError("the real server has no health check (-a adds one)");
  }
  HealthCheck c = cmd == Cmd::kEdit ? *d->check : HealthCheck{};
  for (auto& set : sets) {
    if (auto st = set(c); !st.ok()) return st;
  }
  if (c.port == 0 && real->second == 0) {
    return bad(absl::StrCat("real server ", addrPortName(real->first, 0),
                            " keeps each packet's port: give the port to check (--check-port)"));
  }
  if (c.timeout_ms > c.interval_ms) {
    return bad(absl::StrCat("--timeout ", secondsText(c.timeout_ms), " is longer than --interval ",
                            secondsText(c.interval_ms)));
  }
  if (auto st = m.setCheck(*svc, real->first, real->second, c); !st.ok()) return st;
  return std::string();
}

// The checker thread.

HealthChecker::~HealthChecker() {
  run_.store(false);
  if (thread_.joinable()) thread_.join();
  for (Entry& e : entries_) {
    if (e.fd >= 0) ::close(e.fd);
  }
}

void HealthChecker::start() {
  run_.store(true);
  thread_ = std::thread([this] { loop(); });
}

void HealthChecker::set(const ServiceModel& model) {
  std::vector<Target> wanted;
  for (const auto& [key, svc] : model.services()) {
    for (const RealServer& d : svc.dests) {
      if (d.check) wanted.push_back({d.id, key, d.addr, d.port, *d.check, d.down});
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  wanted_ = std::move(wanted);
  ++wanted_gen_;
}

std::vector<HealthChecker::Transition> HealthChecker::transitions() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::exchange(out_, {});
}

std::optional<HealthStatus> HealthChecker::status(BackendId id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = statuses_.find(id.raw());
  if (it == statuses_.end()) return std::nullopt;
  return it->second;
}

namespace {
// At most this many checks in flight at once; the others wait their turn.
constexpr size_t kMaxInFlight = 512;
}  // namespace

void HealthChecker::begin(Entry& e, std::chrono::steady_clock::time_point now) {
  const Target& t = e.target;
  const uint16_t port = t.check.port ? t.check.port : t.port;
  sockaddr_storage sa{};
  socklen_t len;
  if (t.addr.isV4()) {
    auto* s4 = reinterpret_cast<sockaddr_in*>(&sa);
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    std::memcpy(&s4->sin_addr, t.addr.b, 4);
    len = sizeof(sockaddr_in);
  } else {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&sa);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    std::memcpy(&s6->sin6_addr, t.addr.b, 16);
    len = sizeof(sockaddr_in6);
  }
  e.connected = e.sent = false;
  e.reply.clear();
  e.deadline = now + std::chrono::milliseconds(t.check.timeout_ms);
  e.fd = ::socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (e.fd < 0) return finish(e, false, absl::StrCat("socket: ", std::strerror(errno)), now);
  if (::connect(e.fd, reinterpret_cast<sockaddr*>(&sa), len) == 0) {
    advance(e, POLLOUT);
  } else if (errno != EINPROGRESS) {
    finish(e, false, std::strerror(errno), now);
  }
}

void HealthChecker::advance(Entry& e, short revents) {
  const auto now = std::chrono::steady_clock::now();
  if (!e.connected) {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(e.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err) return finish(e, false, std::strerror(err), now);
    if (!(revents & POLLOUT)) return;
    e.connected = true;
    if (!e.target.check.http) return finish(e, true, "ok", now);
  }
  if (!e.sent) {
    const std::string req =
        absl::StrCat("GET ", e.target.check.path,
                     " HTTP/1.0\r\nHost: ", addrPortName(e.target.addr, e.target.port),
                     "\r\nUser-Agent: meshlb-healthcheck\r\nConnection: "
                     "close\r\n\r\n");
    if (::send(e.fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
      return finish(e, false, absl::StrCat("send: ", std::strerror(errno)), now);
    }
    e.sent = true;
    return;
  }
  if (!(revents & (POLLIN | POLLHUP | POLLERR))) return;
  char buf[512];
  const ssize_t n = ::recv(e.fd, buf, sizeof buf, 0);
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return;
    return finish(e, false, std::strerror(errno), now);
  }
  e.reply.append(buf, static_cast<size_t>(n));
  const size_t eol = e.reply.find("\r\n");
  if (eol == std::string::npos && n > 0 && e.reply.size() < 1024) return;
  // "HTTP/1.x NNN reason"
  const std::string line = e.reply.substr(0, std::min(eol, e.reply.size()));
  uint32_t code = 0;
  if (line.size() < 12 || line.compare(0, 5, "HTTP/") != 0 ||
      !absl::SimpleAtoi(line.substr(9, 3), &code)) {
    return finish(e, false, "no HTTP status line", now);
  }
  if (code != e.target.check.expect) return finish(e, false, absl::StrCat("status ", code), now);
  finish(e, true, "ok", now);
}

void HealthChecker::finish(Entry& e, bool ok, std::string what,
                           std::chrono::steady_clock::time_point now) {
  if (e.fd >= 0) ::close(e.fd);
  e.fd = -1;
  e.next = now + std::chrono::milliseconds(e.target.check.interval_ms);
  HealthStatus& s = e.status;
  ++s.checks;
  if (!ok) ++s.failures;
  s.in_row = ok == e.last_ok ? s.in_row + 1 : 1;
  e.last_ok = ok;
  s.last = std::move(what);
  std::lock_guard<std::mutex> lock(mu_);
  statuses_[e.target.id.raw()] = s;
  Target& t = e.target;
  if ((!t.down && !ok && s.in_row >= t.check.fall) || (t.down && ok && s.in_row >= t.check.rise)) {
    t.down = !t.down;
    out_.push_back({t, t.down, absl::StrCat(s.last, ", ", s.in_row, " in a row")});
  }
}

void HealthChecker::loop() {
  std::vector<pollfd> fds;
  std::vector<Entry*> polled;
  while (run_.load(std::memory_order_relaxed)) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (wanted_gen_ != have_gen_) {
        have_gen_ = wanted_gen_;
        absl::flat_hash_map<uint32_t, Entry> old;
        for (Entry& e : entries_) old.emplace(e.target.id.raw(), std::move(e));
        entries_.clear();
        absl::flat_hash_map<uint32_t, HealthStatus> statuses;
        for (const Target& t : wanted_) {
          Entry e;
          auto it = old.find(t.id.raw());
          if (it != old.end() && it->second.target.check == t.check &&
              it->second.target.down == t.down) {
            e = std::move(it->second);
            old.erase(it);
          } else {
            e.last_ok = !t.down;
            e.next = std::chrono::steady_clock::now();
          }
          e.target = t;
          if (e.status.checks) statuses[t.id.raw()] = e.status;
          entries_.push_back(std::move(e));
        }
        for (auto& [id, e] : old) {
          if (e.fd >= 0) ::close(e.fd);
        }
        statuses_ = std::move(statuses);
      }
    }
    auto now = std::chrono::steady_clock::now();
    size_t in_flight = 0;
    for (const Entry& e : entries_) in_flight += e.fd >= 0;
    for (Entry& e : entries_) {
      if (e.fd < 0 && now >= e.next && in_flight < kMaxInFlight) {
        begin(e, now);
        in_flight += e.fd >= 0;
      }
    }
    fds.clear();
    polled.clear();
    auto wake = now + std::chrono::milliseconds(100);
    for (Entry& e : entries_) {
      if (e.fd < 0) {
        wake = std::min(wake, e.next);
        continue;
      }
      wake = std::min(wake, e.deadline);
      const short events = !e.connected || (e.target.check.http && !e.sent) ? POLLOUT : POLLIN;
      fds.push_back({e.fd, events, 0});
      polled.push_back(&e);
    }
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(wake - now).count();
    const int r = ::poll(fds.data(), fds.size(), static_cast<int>(std::clamp<int64_t>(ms, 1, 100)));
    if (r > 0) {
      for (size_t i = 0; i < fds.size(); ++i) {
        if (fds[i].revents) advance(*polled[i], fds[i].revents);
      }
    }
    now = std::chrono::steady_clock::now();
    for (Entry& e : entries_) {
      if (e.fd >= 0 && now >= e.deadline) finish(e, false, "timeout", now);
    }
  }
}

}  // namespace meshlb
