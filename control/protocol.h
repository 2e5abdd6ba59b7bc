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

constexpr uint32_t kMaxFrame = 1u << 20;  // requests and replies above 1 MiB are refused
constexpr uint32_t kMaxArgs = 256;

struct Request {
  std::vector<std::string> args;
  std::string input;
};

struct Reply {
  bool ok = false;
  std::string text;  // stdout when ok, the error message otherwise
};

std::string encodeRequest(const Request& r);
std::string encodeReply(const Reply& r);

// Frame = u32 length of the body, then the body. frameLength tells, from the
// bytes buffered so far, how long the whole frame is (nullopt: need more bytes),
// or an error for a frame over kMaxFrame.
absl::StatusOr<std::optional<size_t>> frameLength(const std::string& buf);
absl::StatusOr<Request> decodeRequest(const std::string& body);
absl::StatusOr<Reply> decodeReply(const std::string& body);

}  // namespace meshlb
