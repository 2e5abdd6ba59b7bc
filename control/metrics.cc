#include "metrics.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace meshlb {

namespace {

// Metric families in the order first written, each with its samples together (the
// exposition format wants a family's samples in one block).
class Exposition {
 public:
  void add(const std::string& name, const char* type, const std::string& help,
           const std::string& labels, const std::string& value) {
    auto [it, fresh] = index_.try_emplace(name, families_.size());
    if (fresh) families_.push_back({name, type, help, {}});
    families_[it->second].samples.push_back(
        absl::StrCat(name, labels.empty() ? "" : "{" + labels + "}", " ", value));
  }
  void add(const std::string& name, const char* type, const std::string& help,
           const std::string& labels, uint64_t value) {
    add(name, type, help, labels, absl::StrCat(value));
  }
  std::string text() const {
    std::string out;
    for (const Family& f : families_) {
      absl::StrAppend(&out, "# HELP ", f.name, " ", f.help, "\n# TYPE ", f.name, " ", f.type, "\n");
      for (const std::string& s : f.samples) absl::StrAppend(&out, s, "\n");
    }
    return out;
  }

 private:
  struct Family {
    std::string name;
    const char* type;
    std::string help;
    std::vector<std::string> samples;
  };
  std::vector<Family> families_;
  std::map<std::string, size_t> index_;
};

std::string escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string labelsOf(const std::vector<std::pair<std::string, std::string>>& kv) {
  std::vector<std::string> parts;
  for (const auto& [k, v] : kv) parts.push_back(absl::StrCat(k, "=\"", escape(v), "\""));
  return absl::StrJoin(parts, ",");
}

// node_exporter's labels of a service, as its ipvs collector reads /proc/net/ip_vs:
// a firewall mark's service has no address, port 0, protocol FWM and its mark as the
// kernel prints it (%08X).
std::vector<std::pair<std::string, std::string>> serviceLabels(const ServiceKey& k) {
  if (k.fwmark) {
    return {{"local_address", ""},
            {"local_port", "0"},
            {"local_mark", absl::StrFormat("%08X", k.fwmark)},
            {"proto", "FWM"}};
  }
  return {{"local_address", k.addr.str()},
          {"local_port", absl::StrCat(k.port)},
          {"local_mark", ""},
          {"proto", k.protocol == kProtoUdp ? "UDP" : "TCP"}};
}

void addIpvs(Exposition& x, const IpvsMetricsInput& in) {
  if (!in.model) return;
  DestCounters total = in.retired;
  const char* kCounts[] = {"connections", "incoming_packets", "outgoing_packets", "incoming_bytes",
                           "outgoing_bytes"};
  const char* kCountHelp[] = {"connections", "packets from clients", "packets to clients",
                              "bytes from clients", "bytes to clients"};
  auto values = [](const DestCounters& c) {
    return std::array<uint64_t, 5>{c.conns, c.inpkts, c.outpkts, c.inbytes, c.outbytes};
  };
  for (const auto& [key, svc] : in.model->services()) {
    const auto svc_labels = serviceLabels(key);
    const DestCounters own = in.service ? in.service(svc) : DestCounters{};
    total.conns += own.conns, total.inpkts += own.inpkts, total.outpkts += own.outpkts;
    total.inbytes += own.inbytes, total.outbytes += own.outbytes;
    const auto sv = values(own);
    for (size_t i = 0; i < 5; ++i) {
      x.add(absl::StrCat("meshlb_ipvs_service_", kCounts[i], "_total"), "counter",
            absl::StrCat("The virtual service's ", kCountHelp[i],
                         ", its deleted real servers' included (ipvsadm --stats)."),
            labelsOf(svc_labels), sv[i]);
    }
    for (const RealServer& d : svc.dests) {
      auto l = svc_labels;
      l.insert(l.begin() + 2, {"remote_address", d.addr.str()});
      l.insert(l.begin() + 3, {"remote_port", absl::StrCat(d.port)});
      const std::string labels = labelsOf(l);
      const DestCounters c = in.backend ? in.backend(d.id) : DestCounters{};
      x.add("node_ipvs_backend_connections_active", "gauge",
            "The current active connections by local and remote address.", labels, c.active);
      x.add("node_ipvs_backend_connections_inactive", "gauge",
            "The current inactive connections by local and remote address.", labels, c.inactive);
      x.add("node_ipvs_backend_weight", "gauge", "The current backend weight.", labels,
            d.liveWeight());
      if (d.check) {
        x.add("meshlb_ipvs_backend_up", "gauge",
              "1 while the real server passes its health check, 0 while it is down (weight 0).",
              labels, uint64_t{d.down ? 0u : 1u});
      }
      const auto bv = values(c);
      for (size_t i = 0; i < 5; ++i) {
        x.add(absl::StrCat("meshlb_ipvs_backend_", kCounts[i], "_total"), "counter",
              absl::StrCat("The real server's ", kCountHelp[i], " (ipvsadm --stats)."), labels,
              bv[i]);
      }
    }
  }
  const auto tv = values(total);
  const char* kGlobalHelp[] = {
      "The total number of connections made.", "The total number of incoming packets.",
      "The total number of outgoing packets.", "The total amount of incoming data.",
      "The total amount of outgoing data."};
  for (size_t i = 0; i < 5; ++i) {
    x.add(absl::StrCat("node_ipvs_", kCounts[i], "_total"), "counter", kGlobalHelp[i], "", tv[i]);
  }
}

// meshlb's own counters, from the groups `meshlbctl stats` shows.
void addOwn(Exposition& x, const std::vector<StatsGroup>& groups) {
  for (const StatsGroup& g : groups) {
    const std::string labels = labelsOf(g.labels);
    for (const auto& [name, value] : g.values) {
      absl::string_view n = name;
      if (g.kind == "worker") {
        if (absl::ConsumePrefix(&n, "drop_")) {
          x.add("meshlb_worker_drops_total", "counter",
                "Packets dropped, by reason (meshlbctl stats: drop_REASON).", labelsOf([&] {
                  auto l = g.labels;
                  l.emplace_back("reason", std::string(n));
                  return l;
                }()),
                value);
        } else if (absl::ConsumePrefix(&n, "parse_")) {
          x.add("meshlb_worker_parse_errors_total", "counter",
                "Packets the parser refused, by reason (meshlbctl stats: parse_REASON).",
                labelsOf([&] {
                  auto l = g.labels;
                  l.emplace_back("reason", std::string(n));
                  return l;
                }()),
                value);
        } else if (n == "flows") {
          x.add("meshlb_worker_flows", "gauge", "Connections the worker tracks.", labels, value);
        } else {
          x.add(absl::StrCat("meshlb_worker_", n, "_total"), "counter",
                absl::StrCat("meshlbctl stats: ", n, "."), labels, value);
        }
      } else if (g.kind == "control" && absl::EndsWith(n, "_seconds")) {
        x.add(absl::StrCat("meshlb_", n), "gauge", absl::StrCat("meshlbctl stats: ", n, "."),
              labels, value);
      } else if (g.kind == "control" && n == "snapshot_generation") {
        x.add("meshlb_snapshot_generation", "gauge",
              "The generation of the configuration snapshot the workers read.", labels, value);
      } else {
        x.add(absl::StrCat("meshlb_", g.kind, "_", n, "_total"), "counter",
              absl::StrCat("meshlbctl stats: ", n, "."), labels, value);
      }
    }
  }
}

}  // namespace

std::string renderMetrics(const IpvsMetricsInput& ipvs, const std::vector<StatsGroup>& groups) {
  Exposition x;
  addIpvs(x, ipvs);
  addOwn(x, groups);
  return x.text();
}

MetricsServer::~MetricsServer() {
  for (const auto& [fd, c] : clients_) ::close(fd);
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

absl::Status MetricsServer::listen(const std::string& where) {
  const size_t colon = where.rfind(':');
  uint32_t port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(where.substr(colon + 1), &port) ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics '", where, "': ADDR:PORT, [ADDR6]:PORT or :PORT"));
  }
  std::string host = where.substr(0, colon);
  sockaddr_storage ss{};
  socklen_t len;
  if (host.empty() || (host.front() == '[' && host.back() == ']')) {
    if (!host.empty()) host = host.substr(1, host.size() - 2);
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    if (!host.empty() && inet_pton(AF_INET6, host.c_str(), &a->sin6_addr) != 1) {
      return absl::InvalidArgumentError(absl::StrCat("--metrics: bad address '", host, "'"));
    }
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1) {
      return absl::InvalidArgumentError(absl::StrCat("--metrics: bad address '", host, "'"));
    }
    len = sizeof(*a);
  }
  const int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("--metrics: socket: ", std::strerror(errno)));
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd, 16) != 0) {
    const int e = errno;
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("--metrics ", where, ": ", std::strerror(e)));
  }
  listen_fd_ = fd;
  return absl::OkStatus();
}

uint16_t MetricsServer::port() const {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (listen_fd_ < 0 || ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return 0;
  }
  return ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

void MetricsServer::appendPollFds(std::vector<pollfd>& fds) const {
  if (listen_fd_ >= 0) fds.push_back({listen_fd_, POLLIN, 0});
  for (const auto& [fd, c] : clients_) {
    fds.push_back({fd, static_cast<short>(c.out.empty() ? POLLIN : POLLOUT), 0});
  }
}

void MetricsServer::accept() {
  for (;;) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    if (clients_.size() >= kMaxClients) {
      static constexpr char kBusy[] =
          "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      (void)!::write(fd, kBusy, sizeof(kBusy) - 1);
      ::close(fd);
      continue;
    }
    clients_[fd].since = std::chrono::steady_clock::now();
  }
}

void MetricsServer::drop(int fd) {
  ::close(fd);
  clients_.erase(fd);
}

std::string MetricsServer::respond(const std::string& request) {
  auto reply = [](const char* status, const char* type, const std::string& body) {
    return absl::StrCat("HTTP/1.1 ", status, "\r\nContent-Type: ", type,
                        "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n\r\n", body);
  };
  const std::string line = request.substr(0, request.find("\r\n"));
  const std::vector<std::string> parts = absl::StrSplit(line, ' ');
  if (parts.size() != 3 || !absl::StartsWith(parts[2], "HTTP/1.")) {
    return reply("400 Bad Request", "text/plain", "bad request\n");
  }
  const std::string path = parts[1].substr(0, parts[1].find('?'));
  if (path != "/metrics") return reply("404 Not Found", "text/plain", "try /metrics\n");
  if (parts[0] != "GET" && parts[0] != "HEAD") {
    return reply("405 Method Not Allowed", "text/plain", "GET only\n");
  }
  ++scrapes_;
  std::string r = reply("200 OK", "text/plain; version=0.0.4; charset=utf-8", render_());
  if (parts[0] == "HEAD") r.resize(r.find("\r\n\r\n") + 4);
  return r;
}

void MetricsServer::service(const std::vector<pollfd>& fds) {
  for (const pollfd& p : fds) {
    if (p.fd == listen_fd_) {
      if (p.revents & POLLIN) accept();
      continue;
    }
    auto it = clients_.find(p.fd);
    if (it == clients_.end()) continue;
    Client& c = it->second;
    if (p.revents & (POLLERR | POLLHUP | POLLNVAL) && !(p.revents & POLLIN)) {
      drop(p.fd);
      continue;
    }
    if (!c.out.empty()) {
      if (p.revents & POLLOUT) {
        const ssize_t n = ::write(p.fd, c.out.data() + c.sent, c.out.size() - c.sent);
        if (n < 0 && errno != EAGAIN) {
          drop(p.fd);
          continue;
        }
        if (n > 0) c.sent += static_cast<size_t>(n);
        if (c.sent == c.out.size()) drop(p.fd);  // one request per connection
      }
      continue;
    }
    if (!(p.revents & POLLIN)) continue;
    char buf[4096];
    const ssize_t n = ::read(p.fd, buf, sizeof(buf));
    if (n <= 0) {
      if (n == 0 || errno != EAGAIN) drop(p.fd);
      continue;
    }
    c.in.append(buf, static_cast<size_t>(n));
    if (c.in.find("\r\n\r\n") != std::string::npos) {
      c.out = respond(c.in);
    } else if (c.in.size() > kMaxRequest) {
      c.out =
          "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
          "Connection: close\r\n\r\n";
    }
  }
}

void MetricsServer::expire() {
  const auto now = std::chrono::steady_clock::now();
  for (auto it = clients_.begin(); it != clients_.end();) {
    if (now - it->second.since > kTimeout) {
      ::close(it->first);
      it = clients_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace meshlb
