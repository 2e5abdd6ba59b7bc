// The control socket's wire format (docs/control-protocol.md). Length-prefixed,
// little-endian, no parsing of text: a request is the argument vector and the
// client's standard input; a reply is a status and the text to print.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace meshlb {

// A reply frame carries at most 1 MiB; a longer reply comes as several frames
// (status kMore on all but the last), so listings of any size can be read.
constexpr uint32_t kMaxFrame = 1u << 20;
// A request (its arguments and standard input: ipvsadm -R of a large dump) may be up
// to 256 MiB; only authorised clients' requests are read at all.
constexpr uint32_t kMaxRequest = 256u << 20;
constexpr uint32_t kMaxArgs = 256;

struct Request {
  std::vector<std::string> args;
  std::string input;
};

struct Reply {
  bool ok = false;
  std::string text;   // stdout when ok, the error message otherwise
  bool more = false;  // decoded from a frame that more frames of the same reply follow
  // A rejected command's exit status for the client: 1, or as ipvsadm exits, 2 for its
  // own refusals of a command line and 255 for the kernel's refusals.
  int exit_status = 1;
};

// The exit status a command's error asks for (kExitPayload; 1 without one), and the
// error with one set.
constexpr char kExitPayload[] = "meshlb.exit";
int exitStatusOf(const absl::Status& st);
absl::Status withExitStatus(absl::Status st, int code);
// The reply to a command that gave `out`.
Reply replyOf(const absl::StatusOr<std::string>& out);

std::string encodeRequest(const Request& r);
// One frame, or several for a text over a frame's room (all but the last "more").
std::string encodeReply(const Reply& r);

// Frame = u32 length of the body, then the body. frameLength tells, from the
// bytes buffered so far, how long the whole frame is (nullopt: need more bytes),
// or an error for a frame over `max`.
absl::StatusOr<std::optional<size_t>> frameLength(const std::string& buf, uint32_t max = kMaxFrame);
absl::StatusOr<Request> decodeRequest(const std::string& body);
absl::StatusOr<Reply> decodeReply(const std::string& body);

}  // namespace meshlb
