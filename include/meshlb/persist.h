// IPVS persistence templates (ip_vs_sched_persist in ip_vs_core.c), shared by every
// worker. A persistent service (ipvsadm -p) sends a client's new connections to the
// real server its template names, scheduling only when the client has none. A
// client's connections arrive on any worker (the flow owner is a hash of its address
// AND port), so the templates cannot be per worker: one table, read and written by
// all of them, each bucket behind its own spin lock, held for one lookup and its
// update (a new connection's; established packets never touch it).
//
// As the kernel's, a template lives for the persistence timeout from the last
// connection it gave a server, and never while a connection it gave is open (its
// n_control): each connection holds a Ref, released when the flow table frees the
// connection. The kernel re-arms a busy template for 60 s at a time and lets it die
// at the first firing after its last connection ended; here it dies with its last
// connection once the timeout has run out.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>

#include "meshlb/hash.h"
#include "meshlb/huge_array.h"

namespace meshlb {

class PersistTable {
 public:
  static constexpr uint32_t kWays = 4;
  // A connection's hold on its template: (entry index + 1) << 8 | its generation; 0: none.
  using Ref = uint32_t;

  struct Key {
    uint32_t service = 0;  // ServiceSched::slot
    uint8_t net[16] = {};  // the client address, masked (-M); IPv4 in the first 4 bytes
    bool operator==(const Key& o) const {
      return service == o.service && std::memcmp(net, o.net, 16) == 0;
    }
  };
  struct Entry {
    Key key;
    uint32_t backend = 0;  // BackendId::raw() of its real server (0: unused)
    uint32_t expires_ms = 0;
    uint32_t controls = 0;  // open connections it gave (the kernel's n_control)
    uint8_t generation = 0;
  };
  struct Counters {
    std::atomic<uint64_t> created{0}, reused{0}, evicted{0}, full{0};
  };

  // `buckets` * kWays templates at most (lazily backed: memory follows use).
  explicit PersistTable(uint32_t buckets = 1u << 16)
      : num_buckets_(buckets), buckets_(buckets, Backing::kLazy) {}

  // A new connection of `key` at now_ms. `usable(backend)`: whether a template's
  // real server may still take it (ip_vs_check_template); `pick()`: the scheduler's
  // choice when there is no usable template (BackendId::raw(), 0: none). Returns the
  // real server (0: none) and sets *ref to the connection's hold (0 when it holds
  // none: `hold` false, as for one-packet scheduling, or a full bucket).
  template <class Usable, class Pick>
  uint32_t bind(const Key& key, uint32_t now_ms, uint32_t timeout_ms, bool hold, Usable&& usable,
                Pick&& pick, Ref* ref) {
    *ref = 0;
    const uint32_t b = bucketOf(key);
    Bucket& bk = buckets_[b];
    Lock lock(bk);
    Entry* found = nullptr;
    for (Entry& e : bk.e) {
      if (e.backend && e.key == key && alive(e, now_ms)) found = &e;
    }
    if (found && usable(found->backend)) {
      found->expires_ms = now_ms + timeout_ms;
      counters_.reused.fetch_add(1, std::memory_order_relaxed);
      return take(b, *found, hold, ref);
    }
    const uint32_t backend = pick();
    if (!backend) return 0;
    Entry* slot = found;  // an unusable template is replaced in place
    for (Entry& e : bk.e) {
      if (!slot && (!e.backend || !alive(e, now_ms))) slot = &e;
    }
    if (!slot) {  // the idle template that expires first gives way
      for (Entry& e : bk.e) {
        if (!e.controls && (!slot || before(e.expires_ms, slot->expires_ms))) slot = &e;
      }
      if (!slot) {
        counters_.full.fetch_add(1, std::memory_order_relaxed);
        return backend;  // every template here has open connections: none for this one
      }
      counters_.evicted.fetch_add(1, std::memory_order_relaxed);
    }
    slot->key = key;
    slot->backend = backend;
    slot->expires_ms = now_ms + timeout_ms;
    slot->controls = 0;
    ++slot->generation;  // connections of what was here no longer count on it
    counters_.created.fetch_add(1, std::memory_order_relaxed);
    return take(b, *slot, hold, ref);
  }

  // A template a backup's sync daemon received: `key` gives `backend` until now +
  // timeout (an existing one of the key is overwritten: the master's word is the
  // newer). False when every template of its bucket has open connections.
  bool install(const Key& key, uint32_t backend, uint32_t now_ms, uint32_t timeout_ms) {
    Bucket& bk = buckets_[bucketOf(key)];
    Lock lock(bk);
    Entry* slot = nullptr;
    for (Entry& e : bk.e) {
      if (e.backend && e.key == key && alive(e, now_ms)) slot = &e;
    }
    if (slot && slot->backend != backend) {
      ++slot->generation;  // its connections no longer count on it
      slot->controls = 0;
    }
    for (Entry& e : bk.e) {
      if (!slot && (!e.backend || !alive(e, now_ms))) slot = &e;
    }
    for (Entry& e : bk.e) {
      if (!slot && !e.controls) slot = &e;
    }
    if (!slot) return false;
    if (!(slot->backend && slot->key == key)) {
      slot->controls = 0;
      ++slot->generation;
    }
    slot->key = key;
    slot->backend = backend;
    slot->expires_ms = now_ms + timeout_ms;
    return true;
  }
  // The template a connection holds, copied; false when it is gone.
  bool entryOf(Ref ref, Entry* out) {
    if (!ref) return false;
    const uint32_t i = (ref >> 8) - 1;
    Bucket& bk = buckets_[i / kWays];
    Lock lock(bk);
    const Entry& e = bk.e[i % kWays];
    if (e.generation != static_cast<uint8_t>(ref) || !e.backend) return false;
    *out = e;
    return true;
  }

  // A connection holding `ref` has ended.
  void release(Ref ref, uint32_t now_ms) {
    if (!ref) return;
    const uint32_t i = (ref >> 8) - 1;
    Bucket& bk = buckets_[i / kWays];
    Lock lock(bk);
    Entry& e = bk.e[i % kWays];
    if (e.generation != static_cast<uint8_t>(ref) || !e.controls) return;
    if (--e.controls == 0 && before(e.expires_ms, now_ms)) e.expires_ms = now_ms;
  }

  // Every live template (control thread: ipvsadm -L -c, --persistent-conn), copied
  // under its bucket's lock.
  template <class F>
  void forEach(uint32_t now_ms, F&& f) const {
    for (uint32_t b = 0; b < num_buckets_; ++b) {
      Bucket& bk = const_cast<Bucket&>(buckets_[b]);
      if (!bk.used.load(std::memory_order_relaxed)) continue;  // never touched: not backed
      Entry copy[kWays];
      {
        Lock lock(bk);
        std::memcpy(copy, bk.e, sizeof(copy));
      }
      for (const Entry& e : copy) {
        if (e.backend && alive(e, now_ms)) f(e);
      }
    }
  }
  // Seconds left, as /proc/net/ip_vs_conn shows a template's timer: a busy template
  // whose timeout has run out is re-armed every 60 s.
  static uint32_t secondsLeft(const Entry& e, uint32_t now_ms) {
    if (!before(e.expires_ms, now_ms)) return (e.expires_ms - now_ms + 999) / 1000;
    return 60 - ((now_ms - e.expires_ms) / 1000) % 60;
  }
  // Forgets every template (ipvsadm -C, tests).
  void clear() {
    for (uint32_t b = 0; b < num_buckets_; ++b) {
      Bucket& bk = buckets_[b];
      if (!bk.used.load(std::memory_order_relaxed)) continue;
      Lock lock(bk);
      for (Entry& e : bk.e) {
        e.backend = 0;
        ++e.generation;
      }
    }
  }
  const Counters& counters() const { return counters_; }

 private:
  struct alignas(64) Bucket {
    std::atomic_flag lock;
    std::atomic<bool> used{false};
    Entry e[kWays];
  };
  struct Lock {
    explicit Lock(Bucket& b) : b_(b) {
      while (b_.lock.test_and_set(std::memory_order_acquire)) {
        while (b_.lock.test(std::memory_order_relaxed)) __builtin_ia32_pause();
      }
      b_.used.store(true, std::memory_order_relaxed);
    }
    ~Lock() { b_.lock.clear(std::memory_order_release); }
    Bucket& b_;
  };
  static bool before(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) < 0; }
  static bool alive(const Entry& e, uint32_t now_ms) {
    return e.controls || before(now_ms, e.expires_ms);
  }
  uint32_t bucketOf(const Key& k) const {
    const uint64_t h = hashBytes(k.net, 16, k.service);
    return static_cast<uint32_t>(((h >> 32) * num_buckets_) >> 32);
  }
  uint32_t take(uint32_t bucket, Entry& e, bool hold, Ref* ref) {
    if (hold) {
      ++e.controls;
      const auto i = static_cast<uint32_t>(bucket * kWays + (&e - buckets_[bucket].e));
      *ref = ((i + 1) << 8) | e.generation;
    }
    return e.backend;
  }

  uint32_t num_buckets_;
  HugeArray<Bucket> buckets_;
  Counters counters_;
};

}  // namespace meshlb
