#include "control_server.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace meshlb {

ControlServer::~ControlServer() { close(); }

// A socket someone answers on belongs to a running meshlbd: never take it over.
// One nobody answers on is left over from a crash and may be replaced.
absl::Status ControlServer::checkNotInUse(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("control socket path too long: ", path));
  }
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path.c_str());
  int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0) return absl::OkStatus();
  const bool alive = ::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(probe);
  if (alive) {
    return absl::AlreadyExistsError(
        absl::StrCat("control socket ", path, " is in use by a running meshlbd"));
  }
  return absl::OkStatus();
}

absl::Status ControlServer::listen(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("control socket path too long: ", path));
  }
  if (auto slash = path.find_last_of('/'); slash != std::string::npos && slash > 0) {
    ::mkdir(path.substr(0, slash).c_str(), 0750);
  }
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path.c_str());
  if (auto st = checkNotInUse(path); !st.ok()) return st;
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  ::unlink(path.c_str());
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::chmod(path.c_str(), 0660) != 0 || ::listen(listen_fd_, 16) != 0) {
    return absl::InternalError(absl::StrCat("control socket ", path, ": ", std::strerror(errno)));
  }
  path_ = path;
  return absl::OkStatus();
}

void ControlServer::close() {
  for (auto& [fd, c] : clients_) ::close(fd);
  clients_.clear();
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    ::unlink(path_.c_str());
    listen_fd_ = -1;
  }
}

void ControlServer::appendPollFds(std::vector<pollfd>& fds) const {
  if (listen_fd_ >= 0) fds.push_back({listen_fd_, POLLIN, 0});
  for (const auto& [fd, c] : clients_) {
    fds.push_back({fd, static_cast<short>(c.out.empty() ? POLLIN : POLLOUT), 0});
  }
}

// Root, the daemon's own user, or a member (primary or supplementary) of the socket
// file's group as it is now (an operator's chgrp takes effect at once). Mode 0660
// lets the file system enforce the same; the check also covers relaxed modes.
bool ControlServer::peerAllowed(int fd) const {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
  if (cred.uid == 0 || cred.uid == ::geteuid()) return true;
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) return false;
  if (cred.gid == st.st_gid) return true;
  std::vector<gid_t> groups(32);
  for (int attempt = 0; attempt < 2; ++attempt) {
    socklen_t glen = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &glen) == 0) {
      groups.resize(glen / sizeof(gid_t));
      return std::find(groups.begin(), groups.end(), st.st_gid) != groups.end();
    }
    if (errno != ERANGE) return false;
    groups.resize(glen / sizeof(gid_t) + 1);  // the kernel said how many
  }
  return false;
}

void ControlServer::accept() {
  for (;;) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    if (clients_.size() >= kMaxClients) {
      std::string msg = encodeReply({false, "too many control clients; try again"});
      (void)!::write(fd, msg.data(), msg.size());
      ::close(fd);
      continue;
    }
    Client c;
    c.since = std::chrono::steady_clock::now();
    c.authorised = peerAllowed(fd);
    if (!c.authorised) c.out = encodeReply({false, "permission denied (SO_PEERCRED)"});
    clients_[fd] = std::move(c);
  }
}

void ControlServer::drop(int fd) {
  ::close(fd);
  clients_.erase(fd);
}

void ControlServer::onReadable(int fd, Client& c) {
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n > 0) {
      c.in.append(buf, static_cast<size_t>(n));
      if (c.in.size() > kMaxRequest + 4) break;
      continue;
    }
    if (n == 0) return drop(fd);  // peer closed before a whole request
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    return drop(fd);
  }
  auto len = frameLength(c.in, kMaxRequest);
  if (!len.ok()) {
    c.out = encodeReply({false, std::string(len.status().message())});
    c.in.clear();
    return;
  }
  if (!len->has_value()) return;
  auto req = decodeRequest(c.in.substr(4, **len - 4));
  c.in.clear();
  if (!req.ok()) {
    c.out = encodeReply({false, std::string(req.status().message())});
    return;
  }
  const uint64_t ticket = ++next_ticket_;
  std::optional<Reply> reply = handler_(*req, ticket);
  if (reply) {
    c.out = encodeReply(*reply);
  } else {
    c.ticket = ticket;
  }
}

void ControlServer::complete(uint64_t ticket, const Reply& reply) {
  for (auto& [fd, c] : clients_) {
    if (c.ticket == ticket) {
      c.ticket = 0;
      c.out = encodeReply(reply);
      return;
    }
  }
}

void ControlServer::service(const std::vector<pollfd>& fds) {
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
        ssize_t n = ::write(p.fd, c.out.data() + c.sent, c.out.size() - c.sent);
        if (n < 0 && errno != EAGAIN) {
          drop(p.fd);
          continue;
        }
        if (n > 0) c.sent += static_cast<size_t>(n);  // no erase: a reply may be many MiB
        if (c.sent == c.out.size()) drop(p.fd);       // one request per connection
      }
    } else if (p.revents & POLLIN) {
      if (c.ticket) {
        // Waiting for its deferred reply: a request was whole, so anything more is
        // the peer closing (or misbehaving): drop it either way.
        char b;
        if (::read(p.fd, &b, 1) != -1 || (errno != EAGAIN && errno != EWOULDBLOCK)) drop(p.fd);
        continue;
      }
      onReadable(p.fd, c);
    }
  }
}

void ControlServer::expire() {
  // Clients that never finish a request (or never read the reply) are cut off.
  const auto now = std::chrono::steady_clock::now();
  for (auto it = clients_.begin(); it != clients_.end();) {
    if (now - it->second.since > client_timeout_) {
      ::close(it->first);
      it = clients_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace meshlb
