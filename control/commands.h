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

// Everything an operator configures through the control socket; what the state
// file keeps.
struct Config {
  ServiceModel services;
  IptablesModel nat;
  bool sameAs(const Config& o) const { return services.sameConfig(o.services) && nat == o.nat; }
};

// The state file (docs/operations.md, "State file"): a version header, then one
// line per setting, each "SECTION ARGS..." where SECTION names who reads it. A
// section is one entry in kStateSections (commands.cc): what it saves of a Config
// and how a line of it is applied. Since version 3 a trailer ends the file: the
// number of setting lines and a checksum of all before it, so that a file cut or
// altered is refused rather than loaded as a smaller configuration. Versions 1 and
// 2 (no trailer, written by older meshlbds) load as they are, and are rewritten.
constexpr int kStateVersion = 3;

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

  // The configuration as a state file's text.
  std::string saveState() const;
  // Replays saved state into an empty configuration; on error nothing is applied.
  absl::Status restoreState(const std::string& text);
  // Loads `path` if it exists; from then on every change is saved there.
  absl::Status useStateFile(const std::string& path);

  const ServiceModel& services() const { return config_.services; }
  const IptablesModel& nat() const { return config_.nat; }

 private:
  absl::Status persist();
  // What a configuration must satisfy beyond each command's own checks.
  absl::Status validate(const Config& c) const;
  Config config_;
  std::string state_file_;
  std::function<std::string(bool)> stats_;
  IpvsDataplane ipvs_;
  bool ipv4_only_ = false;
};

}  // namespace meshlb
