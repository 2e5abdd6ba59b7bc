// Host names for listings without -n (ipvsadm's addr_to_anyname), resolved on a
// thread of their own so that the control thread never waits on DNS: a listing asks
// for each address's name; one not known yet is queued, the listing is deferred
// (kUnavailable) and run again once the queue is empty. Names (and "no name") are
// kept for kTtl, then asked again.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "meshlb/types.h"

namespace meshlb {

class NameResolver {
 public:
  static constexpr auto kTtl = std::chrono::seconds(60);
  // Bounds: names kept (the expired ones go first when full), and lookups queued (an
  // address beyond them is listed by its number: a -c listing of a million clients
  // without -n must not queue a million lookups).
  static constexpr size_t kMaxNames = 65536, kMaxQueued = 4096;

  NameResolver();
  ~NameResolver();
  NameResolver(const NameResolver&) = delete;
  NameResolver& operator=(const NameResolver&) = delete;

  // The address's host name, its number when it has none, or nullopt while it is
  // being looked up (then queued).
  std::optional<std::string> lookup(const IpAddr& a);
  // Whether lookups are queued or running (a deferred listing waits for none).
  bool pending();

 private:
  void run();
  struct Entry {
    std::string name;  // empty while being looked up
    std::chrono::steady_clock::time_point expires;
  };
  std::mutex mu_;
  std::condition_variable cv_;
  absl::flat_hash_map<std::string, Entry> cache_;  // by the address's text
  std::deque<IpAddr> queue_;
  size_t running_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace meshlb
