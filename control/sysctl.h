// `meshlbctl sysctl`: IPVS's net.ipv4.vs.* settings, read and written as sysctl(8)
// does (`NAME`, `NAME=VALUE`, `-w`, `-n`, `-a`), names with dots or slashes. Those
// that mean something for meshlb's dataplane change what it does as the kernel's
// ipvs-sysctl documentation says; every other kernel name is refused with the reason.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "service_model.h"

namespace meshlb {

// Runs one sysctl command on the model's settings; all arguments or none are applied.
absl::StatusOr<std::string> runSysctl(ServiceModel& model, const std::vector<std::string>& args);
// Whether `args` only reads.
bool sysctlReadsOnly(const std::vector<std::string>& args);
// The settings that differ from the kernel's defaults, as "net.ipv4.vs.NAME=VALUE"
// arguments (the state file's lines).
std::vector<std::string> sysctlSettings(const ServiceModel& model);

}  // namespace meshlb
