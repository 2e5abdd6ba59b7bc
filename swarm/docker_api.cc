#include "docker_api.h"

#include <curl/curl.h>

#include <cstdlib>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace meshlb::swarm {

namespace {
constexpr char kApi[] = "/v1.41";
const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}
}  // namespace

absl::StatusOr<DockerEndpoint> DockerEndpoint::resolve(const std::string& host_flag) {
  std::string host = host_flag;
  if (host.empty()) host = env("DOCKER_HOST") ? env("DOCKER_HOST") : "unix:///var/run/docker.sock";
  DockerEndpoint ep;
  if (const char* c = env("DOCKER_CERT_PATH")) ep.cert_dir = c;
  ep.verify = env("DOCKER_TLS_VERIFY") != nullptr;
  if (absl::StartsWith(host, "unix://")) {
    ep.unix_path = host.substr(7);
    if (ep.unix_path.empty()) return absl::InvalidArgumentError("docker host: empty socket path");
    ep.url = "http://docker";
    ep.cert_dir.clear();
    ep.verify = false;
    return ep;
  }
  if (absl::StartsWith(host, "tcp://")) {
    const std::string hostport = host.substr(6);
    if (hostport.empty()) return absl::InvalidArgumentError("docker host: empty address");
    // As the docker CLI: TLS when a certificate directory or verification is asked for.
    if (ep.verify && ep.cert_dir.empty()) {
      const char* home = env("HOME");
      ep.cert_dir = absl::StrCat(home ? home : "", "/.docker");
    }
    ep.url = absl::StrCat(ep.cert_dir.empty() ? "http://" : "https://", hostport);
    return ep;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("docker host '", host, "': expected unix:///PATH or tcp://HOST:PORT"));
}

std::string DockerEndpoint::str() const {
  return unix_path.empty() ? url : absl::StrCat("unix://", unix_path);
}

DockerApi::DockerApi(DockerEndpoint ep) : ep_(std::move(ep)) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
}

DockerApi::~DockerApi() {
  closeEvents();
  if (get_) curl_easy_cleanup(get_);
  if (multi_) curl_multi_cleanup(multi_);
}

size_t DockerApi::onData(char* p, size_t size, size_t n, void* out) {
  auto* s = static_cast<std::string*>(out);
  // A runaway answer (a hostile or broken engine) is cut off rather than buffered.
  if (s->size() + size * n > (64u << 20)) return 0;
  s->append(p, size * n);
  return size * n;
}

CURL* DockerApi::handle(const std::string& path) {
  CURL* h = curl_easy_init();
  if (!h) return nullptr;
  const std::string url = absl::StrCat(ep_.url, kApi, path);
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  if (!ep_.unix_path.empty()) curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, ep_.unix_path.c_str());
  if (!ep_.cert_dir.empty()) {
    const std::string ca = ep_.cert_dir + "/ca.pem", cert = ep_.cert_dir + "/cert.pem",
                      key = ep_.cert_dir + "/key.pem";
    curl_easy_setopt(h, CURLOPT_CAINFO, ca.c_str());
    curl_easy_setopt(h, CURLOPT_SSLCERT, cert.c_str());
    curl_easy_setopt(h, CURLOPT_SSLKEY, key.c_str());
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, ep_.verify ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, ep_.verify ? 2L : 0L);
  }
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error_);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &DockerApi::onData);
  return h;
}

absl::StatusOr<std::string> DockerApi::get(const std::string& path, long timeout_ms) {
  if (get_) curl_easy_cleanup(get_);
  get_ = handle(path);
  if (!get_) return absl::InternalError("curl_easy_init failed");
  body_.clear();
  error_[0] = 0;
  curl_easy_setopt(get_, CURLOPT_WRITEDATA, &body_);
  curl_easy_setopt(get_, CURLOPT_TIMEOUT_MS, timeout_ms);
  const CURLcode rc = curl_easy_perform(get_);
  if (rc != CURLE_OK) {
    return absl::UnavailableError(absl::StrCat("docker ", ep_.str(), " GET ", path, ": ",
                                               *error_ ? error_ : curl_easy_strerror(rc)));
  }
  long status = 0;
  curl_easy_getinfo(get_, CURLINFO_RESPONSE_CODE, &status);
  if (status / 100 != 2) {
    std::string msg = body_;
    const auto j = nlohmann::json::parse(body_, nullptr, false);
    if (j.is_object() && j.contains("message") && j["message"].is_string()) msg = j["message"];
    const auto err = absl::StrCat("docker GET ", path, ": HTTP ", status, ": ", msg);
    return status == 404 ? absl::NotFoundError(err) : absl::FailedPreconditionError(err);
  }
  return body_;
}

absl::Status DockerApi::openEvents(const std::string& filters_json) {
  closeEvents();
  if (!multi_) multi_ = curl_multi_init();
  char* q = curl_easy_escape(nullptr, filters_json.data(), static_cast<int>(filters_json.size()));
  events_ = handle(absl::StrCat("/events?filters=", q ? q : ""));
  curl_free(q);
  if (!multi_ || !events_) return absl::InternalError("curl init failed");
  events_buf_.clear();
  curl_easy_setopt(events_, CURLOPT_WRITEDATA, &events_buf_);
  curl_multi_add_handle(multi_, events_);
  return absl::OkStatus();
}

void DockerApi::closeEvents() {
  if (!events_) return;
  curl_multi_remove_handle(multi_, events_);
  curl_easy_cleanup(events_);
  events_ = nullptr;
}

absl::StatusOr<std::vector<std::string>> DockerApi::waitEvents(int timeout_ms) {
  if (!events_) return absl::FailedPreconditionError("events stream not open");
  int running = 0;
  curl_multi_perform(multi_, &running);
  if (running) {
    curl_multi_poll(multi_, nullptr, 0, timeout_ms, nullptr);
    curl_multi_perform(multi_, &running);
  }
  std::vector<std::string> lines;
  for (size_t nl; (nl = events_buf_.find('\n')) != std::string::npos;) {
    if (nl > 0) lines.push_back(events_buf_.substr(0, nl));
    events_buf_.erase(0, nl + 1);
  }
  if (!running) {
    long status = 0;
    curl_easy_getinfo(events_, CURLINFO_RESPONSE_CODE, &status);
    closeEvents();
    if (lines.empty()) {
      return absl::UnavailableError(
          absl::StrCat("docker events stream from ", ep_.str(), " ended (HTTP ", status, ")"));
    }
  }
  return lines;
}

}  // namespace meshlb::swarm
