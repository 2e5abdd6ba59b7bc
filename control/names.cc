#include "names.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cstring>

namespace meshlb {

NameResolver::NameResolver() : thread_([this] { run(); }) {}

NameResolver::~NameResolver() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::optional<std::string> NameResolver::lookup(const IpAddr& a) {
  const std::string key = a.str();
  std::lock_guard<std::mutex> l(mu_);
  const auto now = std::chrono::steady_clock::now();
  auto it = cache_.find(key);
  if (it != cache_.end() && (it->second.name.empty() || now < it->second.expires)) {
    if (it->second.name.empty()) return std::nullopt;  // being looked up
    return it->second.name;
  }
  if (queue_.size() >= kMaxQueued) return key;
  if (cache_.size() >= kMaxNames) {
    absl::erase_if(
        cache_, [&](const auto& e) { return !e.second.name.empty() && e.second.expires <= now; });
    if (cache_.size() >= kMaxNames) return key;
  }
  cache_[key] = Entry{"", now + kTtl};
  queue_.push_back(a);
  cv_.notify_one();
  return std::nullopt;
}

bool NameResolver::pending() {
  std::lock_guard<std::mutex> l(mu_);
  return !queue_.empty() || running_ > 0;
}

void NameResolver::run() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    cv_.wait(l, [this] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    const IpAddr a = queue_.front();
    queue_.pop_front();
    ++running_;
    l.unlock();
    // getnameinfo with NI_NAMEREQD: the name, or failure (then the number), as
    // ipvsadm's gethostbyaddr; the resolver's own timeouts bound it (resolv.conf).
    sockaddr_storage ss{};
    socklen_t len;
    if (a.isV4()) {
      auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
      sin->sin_family = AF_INET;
      std::memcpy(&sin->sin_addr, a.b, 4);
      len = sizeof(sockaddr_in);
    } else {
      auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
      sin6->sin6_family = AF_INET6;
      std::memcpy(&sin6->sin6_addr, a.b, 16);
      len = sizeof(sockaddr_in6);
    }
    char host[NI_MAXHOST];
    const bool named = getnameinfo(reinterpret_cast<sockaddr*>(&ss), len, host, sizeof(host),
                                   nullptr, 0, NI_NAMEREQD) == 0;
    l.lock();
    --running_;
    cache_[a.str()] =
        Entry{named ? std::string(host) : a.str(), std::chrono::steady_clock::now() + kTtl};
  }
}

}  // namespace meshlb
