// What handing a packet to its owning worker costs: one thread enqueues packet
// pointers on an rte_ring in bursts of 32 (as a worker does with a packet whose
// connection another worker owns), another dequeues them and touches each packet,
// on two cores. Beside it, the baseline: one thread touching the same packets
// with no ring. No EAL: the ring lives in ordinary aligned memory.
#include <pthread.h>
#include <rte_ring.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

constexpr unsigned kBurst = 32;
constexpr size_t kPackets = 1 << 14;  // distinct 64-byte packets, reused round robin
constexpr uint64_t kTotal = 20'000'000;

void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu % std::thread::hardware_concurrency(), &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

volatile uint64_t g_sink;  // keeps the touches observable

double nsPerPacket(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::nano>(d).count() / kTotal;
}

}  // namespace

int main() {
  std::vector<uint8_t> pkts(kPackets * 64);
  uint64_t sink = 0;

  auto t0 = std::chrono::steady_clock::now();
  for (uint64_t i = 0; i < kTotal; ++i) {
    uint8_t* p = &pkts[(i % kPackets) * 64];
    p[22] ^= 1;
    sink += p[12];
  }
  const double base = nsPerPacket(std::chrono::steady_clock::now() - t0);

  const unsigned count = 4096;
  auto* ring = static_cast<rte_ring*>(std::aligned_alloc(64, rte_ring_get_memsize(count)));
  if (rte_ring_init(ring, "handoff", count, RING_F_SC_DEQ) != 0) {
    std::fprintf(stderr, "rte_ring_init failed\n");
    return 1;
  }
  std::atomic<uint64_t> consumed{0};
  t0 = std::chrono::steady_clock::now();
  std::thread consumer([&] {
    pin(1);
    void* burst[kBurst];
    uint64_t got = 0, s = 0;
    while (got < kTotal) {
      unsigned n = rte_ring_dequeue_burst(ring, burst, kBurst, nullptr);
      for (unsigned i = 0; i < n; ++i) s += static_cast<uint8_t*>(burst[i])[12];
      got += n;
    }
    consumed = s + got;
  });
  pin(0);
  void* burst[kBurst];
  uint64_t full = 0;
  for (uint64_t i = 0; i < kTotal;) {
    for (unsigned k = 0; k < kBurst; ++k) {
      uint8_t* p = &pkts[((i + k) % kPackets) * 64];
      p[22] ^= 1;
      burst[k] = p;
    }
    unsigned n = rte_ring_enqueue_burst(ring, burst, kBurst, nullptr);
    if (n < kBurst) ++full;
    i += n;
  }
  consumer.join();
  const double handoff = nsPerPacket(std::chrono::steady_clock::now() - t0);
  std::printf("handoff over rte_ring (MP enqueue, SC dequeue, bursts of %u, 2 cores):\n", kBurst);
  std::printf("  baseline, one core touching the packets: %6.2f ns/pkt  %7.1f Mpps\n", base,
              1e3 / base);
  std::printf(
      "  handed to a second core through a ring:  %6.2f ns/pkt  %7.1f Mpps"
      "  (ring full %llu times)\n",
      handoff, 1e3 / handoff, static_cast<unsigned long long>(full));
  std::printf("  added per handed-off packet:             %6.2f ns\n", handoff - base);
  std::free(ring);
  g_sink = sink + consumed;
  return 0;
}
