#include "service_model.h"

#include <arpa/inet.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace meshlb {

absl::StatusOr<IpAddress> IpAddress::parse(const std::string& text) {
  IpAddress a;
  if (inet_pton(AF_INET, text.c_str(), a.b) == 1) {
    a.af = AF_INET;
    return a;
  }
  if (inet_pton(AF_INET6, text.c_str(), a.b) == 1) {
    a.af = AF_INET6;
    return a;
  }
  return absl::InvalidArgumentError(absl::StrCat("invalid IP address '", text, "'"));
}

std::string IpAddress::str() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(af, b, buf, sizeof(buf));
  return buf;
}

bool ServiceModel::schedulerSupported(const std::string& name) {
  return name == "rr" || name == "wrr" || name == "mh";
}

namespace {
absl::Status checkScheduler(const std::string& s) {
  if (ServiceModel::schedulerSupported(s)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("scheduler '", s, "' is not supported by meshlb (supported: rr, wrr, mh)"));
}
}  // namespace

absl::Status ServiceModel::addService(const ServiceKey& key, const std::string& scheduler) {
  if (auto s = checkScheduler(scheduler); !s.ok()) return s;
  if (services_.count(key)) return absl::AlreadyExistsError("Service already exists");
  if (services_.size() >= kMaxServices) {
    return absl::ResourceExhaustedError(absl::StrCat("at most ", kMaxServices, " services"));
  }
  // Slots rotate, so a re-created service rarely inherits another's scheduler position.
  auto taken = [&](uint32_t slot) {
    for (const auto& [k, s] : services_) {
      if (s.slot == slot) return true;
    }
    return false;
  };
  while (taken(next_slot_)) next_slot_ = (next_slot_ + 1) % kMaxServices;
  services_[key] = Service{key, next_slot_, scheduler, {}};
  next_slot_ = (next_slot_ + 1) % kMaxServices;
  return absl::OkStatus();
}

absl::Status ServiceModel::editService(const ServiceKey& key, const std::string& scheduler) {
  if (auto s = checkScheduler(scheduler); !s.ok()) return s;
  auto it = services_.find(key);
  if (it == services_.end()) return absl::NotFoundError("No such service");
  it->second.scheduler = scheduler;
  return absl::OkStatus();
}

absl::Status ServiceModel::deleteService(const ServiceKey& key) {
  if (!services_.erase(key)) return absl::NotFoundError("No such service");
  return absl::OkStatus();
}

void ServiceModel::clear() { services_.clear(); }

absl::Status ServiceModel::addDest(const ServiceKey& key, RealServer dest) {
  auto it = services_.find(key);
  if (it == services_.end()) return absl::NotFoundError("Service not defined");
  auto& dests = it->second.dests;
  for (const RealServer& d : dests) {
    if (d.addr == dest.addr && d.port == dest.port) {
      return absl::AlreadyExistsError("Destination already exists");
    }
  }
  dest.id = next_dest_id_++;
  dests.push_back(dest);
  return absl::OkStatus();
}

absl::Status ServiceModel::editDest(const ServiceKey& key, const RealServer& dest) {
  auto it = services_.find(key);
  if (it == services_.end()) return absl::NotFoundError("Service not defined");
  for (RealServer& d : it->second.dests) {
    if (d.addr == dest.addr && d.port == dest.port) {
      d.weight = dest.weight;
      d.fwd = dest.fwd;
      return absl::OkStatus();
    }
  }
  return absl::NotFoundError("No such destination");
}

absl::Status ServiceModel::deleteDest(const ServiceKey& key, const IpAddress& addr,
                                      uint16_t port) {
  auto it = services_.find(key);
  if (it == services_.end()) return absl::NotFoundError("Service not defined");
  auto& dests = it->second.dests;
  auto d = std::find_if(dests.begin(), dests.end(), [&](const RealServer& r) {
    return r.addr == addr && r.port == port;
  });
  if (d == dests.end()) return absl::NotFoundError("No such destination");
  dests.erase(d);
  return absl::OkStatus();
}

}  // namespace meshlb
