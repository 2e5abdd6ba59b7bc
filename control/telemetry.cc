#include "telemetry.h"

#include <rte_telemetry.h>

#include <cerrno>
#include <chrono>

#include "absl/strings/str_cat.h"

namespace meshlb {
namespace {
std::atomic<Telemetry*> g_telemetry{nullptr};
// How long a query waits for the control thread (a loop round is at most 10 ms).
constexpr auto kQueryDeadline = std::chrono::seconds(2);
}  // namespace

Telemetry::~Telemetry() {
  Telemetry* self = this;
  g_telemetry.compare_exchange_strong(self, nullptr);
}

absl::Status Telemetry::start() {
  Telemetry* none = nullptr;
  if (!g_telemetry.compare_exchange_strong(none, this)) {
    return absl::FailedPreconditionError("telemetry: already started");
  }
  for (const auto& [cmd, help] : kCommands) {
    if (int rc = rte_telemetry_register_cmd(cmd, &Telemetry::onCommand, help); rc != 0) {
      return absl::InternalError(absl::StrCat("telemetry: registering ", cmd, ": ", rc));
    }
  }
  return absl::OkStatus();
}

int Telemetry::onCommand(const char* cmd, const char* params, rte_tel_data* d) {
  Telemetry* self = g_telemetry.load();
  return self ? self->ask(cmd, params, d) : -ENODEV;
}

// The telemetry thread: hands the query to the control thread and waits for it.
int Telemetry::ask(const char* cmd, const char* params, rte_tel_data* d) {
  std::lock_guard<std::mutex> one(mu_);
  std::unique_lock<std::mutex> lock(state_mu_);
  cmd_ = cmd;
  params_ = params;
  d_ = d;
  done_ = false;
  pending_.store(true, std::memory_order_release);
  if (!cv_.wait_for(lock, kQueryDeadline, [this] { return done_; })) {
    // The control thread is stuck: withdraw the query (it must not write into d
    // once this returns) and say so.
    pending_.store(false, std::memory_order_relaxed);
    d_ = nullptr;
    return -EBUSY;
  }
  queries_.fetch_add(1, std::memory_order_relaxed);
  return rc_;
}

void Telemetry::serve(const Builder& build) {
  if (!pending_.load(std::memory_order_acquire)) return;
  std::lock_guard<std::mutex> lock(state_mu_);
  if (!pending_.load(std::memory_order_relaxed) || !d_) return;
  rc_ = build(cmd_, params_ ? params_ : "", d_);
  pending_.store(false, std::memory_order_relaxed);
  done_ = true;
  cv_.notify_one();
}

}  // namespace meshlb
