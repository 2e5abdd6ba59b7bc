// The Docker Engine API over HTTP (libcurl): a Unix socket, plain TCP, or TCP with
// TLS, chosen as the docker CLI chooses (DOCKER_HOST, DOCKER_CERT_PATH,
// DOCKER_TLS_VERIFY). Requests are versioned (/v1.41, Docker 20.10's API) so the
// JSON shapes do not move under the agent with newer engines.
#pragma once

#include <string>

#include "absl/status/statusor.h"

typedef void CURL;
typedef void CURLM;

namespace meshlb::swarm {

struct DockerEndpoint {
  std::string url;        // http(s)://host:port or http://docker (Unix socket)
  std::string unix_path;  // set for unix://
  std::string cert_dir;   // TLS: ca.pem, cert.pem, key.pem
  bool verify = false;    // TLS: check the server against ca.pem

  // `host` as DOCKER_HOST spells it ("" takes DOCKER_HOST, then the default socket).
  static absl::StatusOr<DockerEndpoint> resolve(const std::string& host);
  std::string str() const;
};

class DockerApi {
 public:
  explicit DockerApi(DockerEndpoint ep);
  ~DockerApi();
  DockerApi(const DockerApi&) = delete;
  DockerApi& operator=(const DockerApi&) = delete;

  // GET /v1.41PATH: the body of a 2xx answer, else an error with the engine's message.
  absl::StatusOr<std::string> get(const std::string& path, long timeout_ms = 5000);

  // The events stream (GET /events?filters=...), read without blocking: openEvents
  // starts it; waitEvents waits up to timeout_ms and returns the events (JSON lines)
  // received; an error means the stream ended and must be opened again.
  absl::Status openEvents(const std::string& filters_json);
  absl::StatusOr<std::vector<std::string>> waitEvents(int timeout_ms);
  void closeEvents();

 private:
  CURL* handle(const std::string& path);
  static size_t onData(char* p, size_t size, size_t n, void* self);

  DockerEndpoint ep_;
  CURL* get_ = nullptr;
  CURLM* multi_ = nullptr;
  CURL* events_ = nullptr;
  std::string body_;
  std::string events_buf_;
  char error_[256] = {};
};

}  // namespace meshlb::swarm
