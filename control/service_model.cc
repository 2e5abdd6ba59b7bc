#include "service_model.h"

#include <arpa/inet.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "meshlb/scheduler.h"

namespace meshlb {

bool ServiceModel::schedulerSupported(const std::string& name) {
  return findScheduler(name) != nullptr;
}

namespace {
absl::Status checkScheduler(const std::string& s) {
  if (ServiceModel::schedulerSupported(s)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "scheduler '", s, "' is not supported by meshlb (supported: ", schedulerNames(), ")"));
}
}  // namespace

absl::Status ServiceModel::addService(const ServiceKey& key, const std::string& scheduler) {
  if (auto s = checkScheduler(scheduler); !s.ok()) return s;
  if (services_.count(key)) return absl::AlreadyExistsError("Service already exists");
  if (services_.size() >= kMaxServices) {
    return absl::ResourceExhaustedError(absl::StrCat("at most ", kMaxServices, " services"));
  }
  // Slots rotate, so a re-created service rarely inherits another's scheduler position.
  while (service_slot_used_[next_slot_]) next_slot_ = (next_slot_ + 1) % kMaxServices;
  service_slot_used_[next_slot_] = true;
  services_[key] = Service{key, next_slot_, scheduler, {}, ++next_version_};
  next_slot_ = (next_slot_ + 1) % kMaxServices;
  return absl::OkStatus();
}

absl::Status ServiceModel::editService(const ServiceKey& key, const std::string& scheduler) {
  if (auto s = checkScheduler(scheduler); !s.ok()) return s;
  auto it = services_.find(key);
  if (it == services_.end()) return absl::NotFoundError("No such service");
  if (it->second.scheduler != scheduler) {
    it->second.scheduler = scheduler;
    it->second.version = ++next_version_;
  }
  return absl::OkStatus();
}

absl::Status ServiceModel::deleteService(const ServiceKey& key) {
  auto it = services_.find(key);
  if (it == services_.end()) return absl::NotFoundError("No such service");
  for (const RealServer& d : it->second.dests) retireDest(key, d);
  service_slot_used_[it->second.slot] = false;
  services_.erase(it);
  return absl::OkStatus();
}

void ServiceModel::clear() {
  for (const auto& [k, s] : services_) {
    for (const RealServer& d : s.dests) retireDest(k, d);
    service_slot_used_[s.slot] = false;
  }
  services_.clear();
}

absl::Status ServiceModel::addDest(const ServiceKey& key, RealServer dest) {
  auto it = services_.find(key);
  if (it == services_.end()) return absl::NotFoundError("Service not defined");
  auto& dests = it->second.dests;
  for (const RealServer& d : dests) {
    if (d.addr == dest.addr && d.port == dest.port) {
      return absl::AlreadyExistsError("Destination already exists");
    }
  }
  dest.id = reviveDestId(key, dest);
  if (!dest.id) dest.id = allocDestId();
  if (!dest.id) {
    return absl::ResourceExhaustedError(
        absl::StrCat("at most ", kMaxRealServers, " real servers over all services"));
  }
  dests.push_back(dest);
  it->second.version = ++next_version_;
  return absl::OkStatus();
}

// Slots rotate and each reuse bumps the slot's generation, so a deleted server's id
// is not handed to a new one for a long while: connections still pointing at the
// old id are not taken for the new server's (expire_nodest_conn).
BackendId ServiceModel::reviveDestId(const ServiceKey& key, const RealServer& d) {
  auto it = trash_.find({key, d.addr, d.port});
  if (it == trash_.end()) return {};
  const BackendId id = it->second;
  trash_.erase(it);
  // Only while its slot has not gone to another server meanwhile.
  if (slot_used_[id.slot()] || slot_generation_[id.slot()] != id.generation()) return {};
  slot_used_[id.slot()] = true;
  return id;
}

void ServiceModel::retireDest(const ServiceKey& key, const RealServer& d) {
  slot_used_[d.id.slot()] = false;
  trash_[{key, d.addr, d.port}] = d.id;
  if (trash_.size() > kMaxRealServers) {
    // Entries whose slot has since gone to another server can never be revived.
    std::erase_if(trash_, [&](const auto& e) {
      const BackendId id = e.second;
      return slot_used_[id.slot()] || slot_generation_[id.slot()] != id.generation();
    });
  }
}

BackendId ServiceModel::allocDestId() {
  for (uint32_t n = 0; n < kMaxRealServers; ++n) {
    const uint32_t slot = next_slot_hint_;
    next_slot_hint_ = slot == kMaxRealServers ? 1 : slot + 1;
    if (!slot_used_[slot]) {
      slot_used_[slot] = true;
      // Kept to the id's generation bits, so that it compares equal to an id's.
      slot_generation_[slot] = static_cast<uint8_t>((slot_generation_[slot] + 1) &
                                                    ((1u << BackendId::kGenerationBits) - 1));
      return BackendId::make(slot_generation_[slot], slot);
    }
  }
  return {};
}

absl::Status ServiceModel::editDest(const ServiceKey& key, const RealServer& dest) {
  auto it = services_.find(key);
  if (it == services_.end()) return absl::NotFoundError("Service not defined");
  for (RealServer& d : it->second.dests) {
    if (d.addr == dest.addr && d.port == dest.port) {
      if (d.weight != dest.weight || d.fwd != dest.fwd) {
        d.weight = dest.weight;
        d.fwd = dest.fwd;
        it->second.version = ++next_version_;
      }
      return absl::OkStatus();
    }
  }
  return absl::NotFoundError("No such destination");
}

absl::Status ServiceModel::deleteDest(const ServiceKey& key, const IpAddr& addr, uint16_t port) {
  auto it = services_.find(key);
  if (it == services_.end()) return absl::NotFoundError("Service not defined");
  auto& dests = it->second.dests;
  auto d = std::find_if(dests.begin(), dests.end(),
                        [&](const RealServer& r) { return r.addr == addr && r.port == port; });
  if (d == dests.end()) return absl::NotFoundError("No such destination");
  retireDest(key, *d);
  dests.erase(d);
  it->second.version = ++next_version_;
  return absl::OkStatus();
}

}  // namespace meshlb
