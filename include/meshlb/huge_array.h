// A fixed-size array backed by anonymous memory with transparent huge pages
// requested: big per-worker tables are touched at random, and with 4 KiB pages
// every lookup would also pay a TLB miss. (Inside meshlbd, hugetlbfs-backed DPDK
// memory does the same job for mbufs.) Allocated once at start; never on the
// packet path.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <new>
#include <type_traits>

namespace meshlb {

// How a HugeArray is backed: huge pages for tables touched at random (the flow
// table), or ordinary pages that cost nothing until written, for arrays indexed
// by an id of which few are in use (per-real-server counters: 1M slots, a few
// thousand servers).
enum class Backing { kHuge, kLazy };

template <class T>
class HugeArray {
  static_assert(std::is_trivially_destructible_v<T>);

 public:
  HugeArray() = default;
  explicit HugeArray(size_t n, Backing backing = Backing::kHuge)
      : n_(n), bytes_(roundUp(n * sizeof(T))) {
    if (n == 0) return;
    if (backing == Backing::kLazy) {
      void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      p_ = static_cast<T*>(p);  // zero-filled by the kernel as each page is first touched
      return;
    }
    // Reserved 2 MiB pages first (scripts/setup reserves them); else ordinary
    // memory with transparent huge pages requested, which the kernel may ignore.
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
    if (p == MAP_FAILED) {
      p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      madvise(p, bytes_, MADV_HUGEPAGE);
    } else {
      huge_ = true;
    }
    p_ = static_cast<T*>(p);  // zero-filled by the kernel
  }
  ~HugeArray() {
    if (p_) munmap(p_, bytes_);
  }
  HugeArray(const HugeArray&) = delete;
  HugeArray& operator=(const HugeArray&) = delete;
  HugeArray(HugeArray&& o) noexcept { swap(o); }
  HugeArray& operator=(HugeArray&& o) noexcept {
    swap(o);
    return *this;
  }

  // Pointer semantics, like unique_ptr<T[]>: constness of the handle is not of the data.
  T& operator[](size_t i) const { return p_[i]; }
  T* get() const { return p_; }
  size_t size() const { return n_; }
  bool onHugePages() const { return huge_; }

 private:
  static constexpr size_t kHugePage = 2u << 20;
  static size_t roundUp(size_t b) { return (b + kHugePage - 1) / kHugePage * kHugePage; }
  void swap(HugeArray& o) {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    std::swap(bytes_, o.bytes_);
    std::swap(huge_, o.huge_);
  }
  T* p_ = nullptr;
  size_t n_ = 0;
  size_t bytes_ = 0;
  bool huge_ = false;
};

}  // namespace meshlb
