#include "client.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"

namespace meshlb {

absl::StatusOr<Reply> callDaemon(const std::string& path, const Request& req) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path))
    return absl::InvalidArgumentError("control socket path too long");
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(std::string("socket: ") + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return absl::UnavailableError("cannot reach meshlbd at " + path + ": " + std::strerror(errno));
  }
  const std::string out = encodeRequest(req);
  for (size_t off = 0; off < out.size();) {
    // MSG_NOSIGNAL: a daemon that refuses early (not authorised, too many clients, a
    // frame too large) answers and closes before reading it all; its answer is what
    // the operator must see, not a SIGPIPE.
    const ssize_t n = ::send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) break;  // read its answer
    if (n <= 0) return absl::UnavailableError(std::string("write: ") + std::strerror(errno));
    off += static_cast<size_t>(n);
  }
  std::string in;
  Reply whole{true, "", false};
  char buf[65536];
  for (;;) {
    auto len = frameLength(in);
    if (!len.ok()) return len.status();
    if (len->has_value()) {
      auto part = decodeReply(in.substr(4, **len - 4));
      if (!part.ok()) return part.status();
      in.erase(0, **len);
      whole.text += part->text;
      if (!part->more) {
        whole.ok = part->ok;
        whole.exit_status = part->exit_status;
        return whole;
      }
      continue;
    }
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return absl::UnavailableError("meshlbd closed the connection without a reply");
    in.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace meshlb
