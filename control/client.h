// A client of meshlbd's control socket (docs/control-protocol.md): one request, one
// reply. Used by meshlbctl and by meshlb-swarm.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "protocol.h"

namespace meshlb {

// Sends `req` to the daemon at `path` and returns its reply (which may be a
// rejection: Reply::ok false). An error status means the daemon could not be
// reached or answered malformed data.
absl::StatusOr<Reply> callDaemon(const std::string& path, const Request& req);

}  // namespace meshlb
