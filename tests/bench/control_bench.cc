// The control plane's cost against the size of the configuration (issue 13, defect
// 7): for each size, what a whole `ipvsadm -R` costs, and what one more change costs
// at that size (the command with its state file write, then the snapshot), with the
// same single change on a near-empty configuration measured in the same run as the
// baseline; plus the `-S -n` listing and the memory per service.
//   control_bench [--services N,N,...] [--servers-per-service K] [--scheduler S]
// O(change) means the "one change" column stays near the baseline as N grows.
#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "commands.h"
#include "snapshot_builder.h"

namespace meshlb {
namespace {

double secondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

size_t heapBytes() { return mallinfo2().uordblks + mallinfo2().hblkhd; }

// Service i: TCP in 198.18.0.0/16 (port 80, then 81 past 60,000 services), K servers
// in 198.19.0.0/16 (server j of service i: an address and port of its own for i*K+j).
std::string addrOf(uint32_t base, uint32_t n) {
  const uint32_t a = base + n;
  return absl::StrCat(a >> 24, ".", (a >> 16) & 255, ".", (a >> 8) & 255, ".", a & 255);
}
std::string restoreText(uint32_t services, uint32_t k, const std::string& sched) {
  std::string out;
  for (uint32_t i = 0; i < services; ++i) {
    const std::string vip = absl::StrCat(addrOf(0xc6120100u, i % 60000), ":", 80 + i / 60000);
    absl::StrAppend(&out, "-A -t ", vip, " -s ", sched, "\n");
    for (uint32_t j = 0; j < k; ++j) {
      absl::StrAppend(&out, "-a -t ", vip, " -r ", addrOf(0xc6130000u, (i * k + j) % 65000), ":",
                      8000 + (i * k + j) / 65000, " -m -w 1\n");
    }
  }
  return out;
}

struct Row {
  double restore_s = 0, change_ms = 0, snapshot_ms = 0, listing_ms = 0;
  size_t listing_bytes = 0, heap_per_service = 0, state_bytes = 0;
};

Row measure(uint32_t services, uint32_t k, const std::string& sched, const std::string& state) {
  Row r;
  std::remove(state.c_str());
  const size_t heap0 = heapBytes();
  Commands c;
  if (!c.useStateFile(state).ok()) std::exit(1);
  bool changed;
  const std::string text = restoreText(services, k, sched);
  auto t = std::chrono::steady_clock::now();
  auto out = c.run({"ipvsadm", "-R"}, text, &changed);
  if (!out.ok()) {
    std::fprintf(stderr, "control_bench: -R: %s\n", std::string(out.status().message()).c_str());
    std::exit(1);
  }
  KernelView kv;
  std::vector<TwinPort> twins(2);
  auto snap = buildSnapshot(c.services(), c.nat(), c.nat6(), kv, twins, 1, nullptr);
  r.restore_s = secondsSince(t);
  r.heap_per_service = services ? (heapBytes() - heap0) / services : 0;
  // One more change, five times (each a new server on the first service), each with
  // its snapshot built from the previous one, as meshlbd publishes.
  constexpr int kChanges = 5;
  for (int i = 0; i < kChanges; ++i) {
    const std::string line =
        absl::StrCat("-a -t ", addrOf(0xc6120100u, 0), ":80 -r 198.19.255.", 10 + i, ":80 -m");
    t = std::chrono::steady_clock::now();
    auto o = c.run(absl::StrSplit(absl::StrCat("ipvsadm ", line), ' '), "", &changed);
    if (!o.ok() || !changed) std::exit(1);
    r.change_ms += secondsSince(t) * 1e3 / kChanges;
    t = std::chrono::steady_clock::now();
    snap = buildSnapshot(c.services(), c.nat(), c.nat6(), kv, twins, 2 + i, snap.get());
    r.snapshot_ms += secondsSince(t) * 1e3 / kChanges;
  }
  t = std::chrono::steady_clock::now();
  auto listing = c.run({"ipvsadm", "-S", "-n"}, "", &changed);
  r.listing_ms = secondsSince(t) * 1e3;
  r.listing_bytes = listing.ok() ? listing->size() : 0;
  FILE* f = std::fopen(state.c_str(), "r");
  if (f) {
    std::fseek(f, 0, SEEK_END);
    r.state_bytes = static_cast<size_t>(std::ftell(f));
    std::fclose(f);
  }
  return r;
}

}  // namespace
}  // namespace meshlb

int main(int argc, char** argv) {
  using namespace meshlb;
  std::vector<uint32_t> sizes = {1000, 10000, 30000, 60000};
  uint32_t k = 2;
  std::string sched = "mh";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--services") == 0) {
      sizes.clear();
      for (absl::string_view s : absl::StrSplit(argv[i + 1], ',')) {
        uint32_t v;
        if (!absl::SimpleAtoi(s, &v)) return 2;
        sizes.push_back(v);
      }
    } else if (std::strcmp(argv[i], "--servers-per-service") == 0) {
      k = static_cast<uint32_t>(std::atoi(argv[i + 1]));
    } else if (std::strcmp(argv[i], "--scheduler") == 0) {
      sched = argv[i + 1];
    } else {
      std::fprintf(stderr,
                   "usage: control_bench [--services N,...] [--servers-per-service K] "
                   "[--scheduler S]\n");
      return 2;
    }
  }
  const std::string state = absl::StrCat("/tmp/meshlb-control-bench-", getpid());
  const Row base = measure(10, k, sched, state);
  std::printf(
      "scheduler %s, %u servers per service; baseline (10 services): one change %.3f ms "
      "+ snapshot %.3f ms\n",
      sched.c_str(), k, base.change_ms, base.snapshot_ms);
  std::printf("%9s %10s %12s %12s %12s %12s %12s %14s\n", "services", "-R (s)", "change (ms)",
              "snapshot(ms)", "x baseline", "-S (ms)", "-S bytes", "heap/service");
  for (uint32_t n : sizes) {
    const Row r = measure(n, k, sched, state);
    std::printf("%9u %10.2f %12.3f %12.3f %12.1f %12.1f %12zu %14zu\n", n, r.restore_s, r.change_ms,
                r.snapshot_ms, (r.change_ms + r.snapshot_ms) / (base.change_ms + base.snapshot_ms),
                r.listing_ms, r.listing_bytes, r.heap_per_service);
  }
  std::remove(state.c_str());
  std::remove((state + ".tmp").c_str());
  return 0;
}
