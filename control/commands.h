// Command dispatch: the one entry point for the control socket and for state
// restore, so both go through the same model operations. Also the state file:
// every accepted change is saved atomically and replayed at start.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "announce.h"
#include "health.h"
#include "iptables.h"
#include "ipvsadm.h"
#include "service_model.h"

namespace meshlb {

// Everything an operator configures through the control socket; what the state
// file keeps.
struct Config {
  ServiceModel services;
  IptablesModel nat;
  IptablesModel nat6{Family::kIpv6};  // ip6tables'
  AnnounceModel announce;
};

// The state file (docs/operations.md, "State file"): a version line, a journal
// line, then the base: one line per setting, each "SECTION ARGS..." where SECTION
// names who reads it, ended by a trailer (the number of setting lines, a checksum).
// A section is one entry in kStateSections (commands.cc): what it saves of a Config
// and how a line of it is applied. Each accepted change is then appended as a
// record (its header, then the command as setting lines), its checksum chained
// from the one before, and the journal line, rewritten in place, counts the records
// and holds the last checksum: a change costs what it changed, and a file cut
// anywhere, at a record's boundary too, or altered is refused rather than loaded as
// a smaller configuration. When the records outgrow the base, the file is written
// again whole (atomically). Versions 1 to 3 (written by older meshlbds) load as
// they are and are rewritten.
constexpr int kStateVersion = 4;

class Commands {
 public:
  // `stats` renders `meshlbctl stats [--json]`; supplied by the daemon.
  explicit Commands(std::function<std::string(bool json)> stats = {}, IpvsDataplane ipvs = {})
      : stats_(std::move(stats)), ipvs_(std::move(ipvs)) {}

  // What the daemon's dataplane cannot carry (an IPv6 real server through a tunnel) is
  // refused rather than accepted as configuration that would not be applied.
  void setDataplaneLimits(bool v) { dataplane_limits_ = v; }

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
  // What the last load noticed and passed over (a change being written when the
  // daemon stopped, never acknowledged); empty if nothing.
  const std::string& loadNote() const { return load_note_; }

  const ServiceModel& services() const { return config_.services; }
  // What `healthcheck -L` shows of each check (the daemon's checker).
  void setHealthStatus(HealthStatusFn f) { health_status_ = std::move(f); }
  // Changes whenever the health checks may have (added, edited, deleted, their real
  // servers changed, a state restored): the checker then takes the model's again.
  uint64_t checksVersion() const { return checks_version_; }
  const IptablesModel& nat() const { return config_.nat; }
  const IptablesModel& nat6() const { return config_.nat6; }
  const AnnounceModel& announce() const { return config_.announce; }
  // What `announce -L` and `--drain` say of the routes and connections (the daemon's).
  void setAnnounceRuntime(AnnounceRuntimeFn f) { announce_runtime_ = std::move(f); }

 private:
  // Writes the whole state file again (write, fsync, rename, fsync the directory).
  absl::Status persistAll();
  // Appends one accepted change (the setting lines that replay it) to the state
  // file; nullopt, or a journal grown past the base, writes the whole file instead.
  absl::Status persistChange(const std::optional<std::vector<std::string>>& lines);
  // What the services must satisfy beyond each command's own checks: `keys` are the
  // ones to check (those a command touched), all of them when null.
  absl::Status validate(const ServiceModel& m, const std::vector<ServiceKey>* keys) const;
  void tellStatistics(const std::map<ServiceKey, std::optional<Service>>& before);
  bool touchesChecks(const std::map<ServiceKey, std::optional<Service>>& before) const;
  HealthStatusFn health_status_;
  AnnounceRuntimeFn announce_runtime_;
  uint64_t checks_version_ = 0;
  Config config_;
  std::string state_file_;
  std::string load_note_;
  // The state file's journal: records appended since the base, the last checksum,
  // the file's size, the base's size and the journal line's place. `broken`: the
  // file may not be what these say (a failed write); the next change rewrites it.
  struct Journal {
    uint64_t changes = 0, checksum = 0, size = 0, base = 0, line_at = 0;
    bool broken = true;
  } journal_;
  std::function<std::string(bool)> stats_;
  IpvsDataplane ipvs_;
  bool dataplane_limits_ = false;
};

}  // namespace meshlb
