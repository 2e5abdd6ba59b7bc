#include "protocol.h"

#include <cstring>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace meshlb {

namespace {

void putU32(std::string& out, uint32_t v) {
  char b[4] = {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16),
               static_cast<char>(v >> 24)};
  out.append(b, 4);
}

void putStr(std::string& out, const std::string& s) {
  putU32(out, static_cast<uint32_t>(s.size()));
  out += s;
}

std::string frame(const std::string& body) {
  std::string out;
  putU32(out, static_cast<uint32_t>(body.size()));
  return out + body;
}

class Reader {
 public:
  explicit Reader(const std::string& s) : s_(s) {}
  bool u32(uint32_t* v) {
    if (s_.size() - pos_ < 4) return false;
    const auto* p = reinterpret_cast<const unsigned char*>(s_.data() + pos_);
    *v = p[0] | (p[1] << 8) | (p[2] << 16) | (uint32_t{p[3]} << 24);
    pos_ += 4;
    return true;
  }
  bool str(std::string* out) {
    uint32_t n;
    if (!u32(&n) || s_.size() - pos_ < n) return false;
    out->assign(s_, pos_, n);
    pos_ += n;
    return true;
  }
  bool done() const { return pos_ == s_.size(); }

 private:
  const std::string& s_;
  size_t pos_ = 0;
};

}  // namespace

std::string encodeRequest(const Request& r) {
  std::string body;
  putU32(body, static_cast<uint32_t>(r.args.size()));
  for (const auto& a : r.args) putStr(body, a);
  putStr(body, r.input);
  return frame(body);
}

// Reply status bytes: the last frame's says ok or rejected (with exit status 1, 2 or
// 255); kMore says more follow.
constexpr char kOk = '\0', kRejected = '\1', kMore = '\2', kRejected2 = '\3', kRejected255 = '\4';

int exitStatusOf(const absl::Status& st) {
  const auto v = st.GetPayload(kExitPayload);
  return v && *v == "2" ? 2 : v && *v == "255" ? 255 : 1;
}

absl::Status withExitStatus(absl::Status st, int code) {
  st.SetPayload(kExitPayload, absl::Cord(std::to_string(code)));
  return st;
}

Reply replyOf(const absl::StatusOr<std::string>& out) {
  if (out.ok()) return Reply{true, *out};
  Reply r{false, std::string(out.status().message())};
  r.exit_status = exitStatusOf(out.status());
  return r;
}

std::string encodeReply(const Reply& r) {
  constexpr size_t kRoom = kMaxFrame - 1;
  std::string out;
  size_t off = 0;
  for (; r.text.size() - off > kRoom; off += kRoom) {
    out += frame(std::string(1, kMore) + r.text.substr(off, kRoom));
  }
  const char last = r.ok                   ? kOk
                    : r.exit_status == 2   ? kRejected2
                    : r.exit_status == 255 ? kRejected255
                                           : kRejected;
  out += frame(std::string(1, last) + r.text.substr(off));
  return out;
}

absl::StatusOr<std::optional<size_t>> frameLength(const std::string& buf, uint32_t max) {
  if (buf.size() < 4) return std::optional<size_t>();
  const auto* p = reinterpret_cast<const unsigned char*>(buf.data());
  uint32_t n = p[0] | (p[1] << 8) | (p[2] << 16) | (uint32_t{p[3]} << 24);
  if (n > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("frame of ", n, " bytes exceeds the limit of ", max));
  }
  if (buf.size() < 4u + n) return std::optional<size_t>();
  return std::optional<size_t>(4u + n);
}

absl::StatusOr<Request> decodeRequest(const std::string& body) {
  Reader rd(body);
  uint32_t argc;
  if (!rd.u32(&argc)) return absl::InvalidArgumentError("malformed request: no argument count");
  if (argc > kMaxArgs) return absl::InvalidArgumentError("malformed request: too many arguments");
  Request r;
  r.args.resize(argc);
  for (auto& a : r.args) {
    if (!rd.str(&a)) return absl::InvalidArgumentError("malformed request: truncated argument");
  }
  if (!rd.str(&r.input)) return absl::InvalidArgumentError("malformed request: truncated input");
  if (!rd.done()) return absl::InvalidArgumentError("malformed request: trailing bytes");
  return r;
}

absl::StatusOr<Reply> decodeReply(const std::string& body) {
  if (body.empty()) return absl::InvalidArgumentError("malformed reply: empty");
  const char s = body[0];
  if (s != kOk && s != kRejected && s != kMore && s != kRejected2 && s != kRejected255) {
    return absl::InvalidArgumentError("malformed reply");
  }
  Reply r{s == kOk || s == kMore, body.substr(1), s == kMore};
  r.exit_status = s == kRejected2 ? 2 : s == kRejected255 ? 255 : 1;
  return r;
}

}  // namespace meshlb
