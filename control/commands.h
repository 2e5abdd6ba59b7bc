// Command dispatch: the one entry point for the control socket and for state
// restore, so both go through the same model operations. Also the state file:
// every accepted change is saved atomically and replayed at start.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "iptables.h"
#include "ipvsadm.h"
#include "service_model.h"

namespace meshlb {

class Commands {
 public:
  // `stats` renders `meshlbctl stats [--json]`; supplied by the daemon.
  explicit Commands(std::function<std::string(bool json)> stats = {}, IpvsDataplane ipvs = {})
      : stats_(std::move(stats)), ipvs_(std::move(ipvs)) {}

  // The daemon's dataplane serves IPv4 only: refuse IPv6 services and real servers
  // rather than accept configuration that would not be applied.
  void setIpv4Only(bool v) { ipv4_only_ = v; }

  // Runs one command. `changed` is set when the configuration changed (and the
  // state file, if any, has been written).
  absl::StatusOr<std::string> run(const std::vector<std::string>& args, const std::string& input,
                                  bool* changed);

  // The configuration as replayable command lines (also the state file's body).
  std::string saveState() const;
  // Replays saved state into an empty model; on error nothing is applied.
  absl::Status restoreState(const std::string& text);
  // Loads `path` if it exists; from then on every change is saved there.
  absl::Status useStateFile(const std::string& path);

  const ServiceModel& services() const { return services_; }
  const IptablesModel& nat() const { return nat_; }

 private:
  static std::string stateOf(const ServiceModel& services, const IptablesModel& nat);
  absl::Status persist();
  ServiceModel services_;
  IptablesModel nat_;
  std::string state_file_;
  std::function<std::string(bool)> stats_;
  IpvsDataplane ipvs_;
  bool ipv4_only_ = false;
};

}  // namespace meshlb
