// The Unix control socket. Non-blocking and driven by the control thread's poll
// loop: a slow, silent or hostile client costs a buffer and a file descriptor,
// never a stall of the other clients or of the workers.
#pragma once

#include <poll.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "protocol.h"

namespace meshlb {

class ControlServer {
 public:
  // A reply now, or nullopt to answer later with complete(ticket, reply) (a
  // command that waits for the workers must not hold up the control thread).
  using Handler = std::function<std::optional<Reply>(const Request&, uint64_t ticket)>;
  static constexpr size_t kMaxClients = 64;
  static constexpr std::chrono::milliseconds kClientTimeout{30000};

  // A client that has not finished its request, or not read its reply, within
  // `client_timeout` of connecting is cut off.
  explicit ControlServer(Handler h, std::chrono::milliseconds client_timeout = kClientTimeout)
      : handler_(std::move(h)), client_timeout_(client_timeout) {}
  ~ControlServer();

  // Creates the socket (mode 0660; its directory is created if missing).
  absl::Status listen(const std::string& path);
  // Fails when a running meshlbd answers on `path` (checked before touching ports).
  static absl::Status checkNotInUse(const std::string& path);
  void appendPollFds(std::vector<pollfd>& fds) const;
  // Serves whatever the poll reported; `fds` as filled by appendPollFds and poll().
  void service(const std::vector<pollfd>& fds);
  // Cuts off clients past their time; call on every turn of the loop, events or not.
  void expire();
  void close();
  // Answers a request whose handler deferred it; a client gone meanwhile is ignored.
  void complete(uint64_t ticket, const Reply& reply);

 private:
  struct Client {
    std::string in, out;
    size_t sent = 0;  // bytes of `out` written
    std::chrono::steady_clock::time_point since;
    bool authorised = false;
    uint64_t ticket = 0;  // non-zero while its reply is deferred
  };
  void accept();
  void onReadable(int fd, Client& c);
  void drop(int fd);
  bool peerAllowed(int fd) const;

  Handler handler_;
  int listen_fd_ = -1;
  std::chrono::milliseconds client_timeout_;
  std::string path_;
  std::map<int, Client> clients_;
  uint64_t next_ticket_ = 0;
};

}  // namespace meshlb
