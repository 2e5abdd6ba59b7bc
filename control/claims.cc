#include "claims.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace meshlb {

namespace {

// "\0meshlb/iface/NAME": the leading NUL makes it abstract (no file).
socklen_t addressOf(const std::string& ifname, sockaddr_un* addr) {
  *addr = {};
  addr->sun_family = AF_UNIX;
  const std::string name = absl::StrCat("meshlb/iface/", ifname);
  std::memcpy(addr->sun_path + 1, name.data(), name.size());
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
}

// The pid listening on the claim, 0 when it cannot be told.
pid_t holderOf(const sockaddr_un& addr, socklen_t len) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return 0;
  pid_t pid = 0;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), len) == 0) {
    ucred cred{};
    socklen_t clen = sizeof(cred);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0) pid = cred.pid;
  }
  ::close(fd);
  return pid;
}

}  // namespace

InterfaceClaims::~InterfaceClaims() {
  for (int fd : fds_) ::close(fd);
}

absl::Status InterfaceClaims::claim(const std::string& ifname, const std::string& role) {
  sockaddr_un addr;
  if (ifname.empty() || ifname.size() > 64) {
    return absl::InvalidArgumentError(absl::StrCat("bad interface name '", ifname, "'"));
  }
  const socklen_t len = addressOf(ifname, &addr);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    const int err = errno;
    ::close(fd);
    if (err != EADDRINUSE) {
      return absl::InternalError(absl::StrCat("claiming ", ifname, ": ", std::strerror(err)));
    }
    const pid_t pid = holderOf(addr, len);
    return absl::AlreadyExistsError(absl::StrCat(
        role, " ", ifname, " is in use by another meshlbd in this network namespace",
        pid ? absl::StrCat(" (pid ", pid, ")") : std::string(), "; nothing was touched"));
  }
  // Listening lets a refused instance learn the holder's pid (SO_PEERCRED).
  ::listen(fd, 1);
  fds_.push_back(fd);
  return absl::OkStatus();
}

std::vector<VdevInterface> vdevInterfaces(int argc, char** argv) {
  std::vector<VdevInterface> out;
  for (int i = 1; i < argc; ++i) {
    absl::string_view a = argv[i];
    if (a == "--") break;
    absl::string_view spec;
    if (a == "--vdev" && i + 1 < argc) {
      spec = argv[++i];
    } else if (absl::StartsWith(a, "--vdev=")) {
      spec = a.substr(7);
    } else {
      continue;
    }
    const absl::string_view vdev = spec.substr(0, spec.find(','));
    for (absl::string_view kv : absl::StrSplit(spec, ',')) {
      if (absl::StartsWith(kv, "iface=")) {
        out.push_back({std::string(vdev), std::string(kv.substr(6))});
      }
    }
  }
  return out;
}

}  // namespace meshlb
