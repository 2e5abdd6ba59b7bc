// `meshlbctl ipvsadm ...`: ipvsadm 1.31's command line over the service model,
// with its listing formats reproduced byte for byte (-L -n, -S -n, --timeout).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "service_model.h"

namespace meshlb {

// Runs one ipvsadm command. `input` is standard input (read by -R). Returns the
// text ipvsadm would print, or an error naming the offending option; on error
// the model is unchanged (a -R batch is applied all or nothing).
// ActiveConn and InActConn of a real server, by its id (summed over workers).
using ConnCountsFn = std::function<std::pair<uint32_t, uint32_t>(uint32_t real_server_id)>;

absl::StatusOr<std::string> runIpvsadm(ServiceModel& model, const std::vector<std::string>& args,
                                       const std::string& input = "",
                                       const ConnCountsFn& counts = {});

}  // namespace meshlb
