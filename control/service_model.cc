#include "service_model.h"

#include <arpa/inet.h>

#include <algorithm>
#include <atomic>

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

uint64_t ServiceModel::InstanceId::next() {
  static std::atomic<uint64_t> n{0};
  return ++n;
}

ServiceModel::Transaction::Transaction(ServiceModel& m) : m_(m), owner_(!m.undo_) {
  if (!owner_) return;
  m_.undo_.emplace();
  Undo& u = *m_.undo_;
  u.timeouts = m_.timeouts_;
  u.sysctls = m_.sysctls_;
  u.sync = m_.sync_;
  u.next_slot_hint = m_.next_slot_hint_;
  u.next_slot = m_.next_slot_;
  u.log_size = m_.log_.size();
  u.log_floor = m_.log_floor_;
}

ServiceModel::Transaction::~Transaction() {
  if (owner_ && !done_) m_.rollback();
}

void ServiceModel::Transaction::commit() {
  if (!owner_ || done_) return;
  done_ = true;
  m_.undo_.reset();
  // What could not be undone cheaply waits for the commit: dropping trash entries
  // that can never be revived, and the oldest changes of the log.
  if (m_.trash_.size() > kMaxRealServers) {
    std::erase_if(m_.trash_, [&](const auto& e) {
      const BackendId id = e.second;
      return !m_.revivable(id);
    });
  }
  m_.trimLog();
}

std::vector<ServiceKey> ServiceModel::Transaction::touched() const {
  std::vector<ServiceKey> out;
  if (m_.undo_) {
    for (const auto& [key, old] : m_.undo_->before) out.push_back(key);
  }
  return out;
}

const std::map<ServiceKey, std::optional<Service>>& ServiceModel::Transaction::before() const {
  static const std::map<ServiceKey, std::optional<Service>> kNone;
  return m_.undo_ ? m_.undo_->before : kNone;
}

bool ServiceModel::Transaction::changed() const {
  if (!m_.undo_) return false;
  if (!(m_.undo_->timeouts == m_.timeouts_) || !(m_.undo_->sysctls == m_.sysctls_) ||
      m_.undo_->sync != m_.sync_) {
    return true;
  }
  for (const auto& [key, old] : m_.undo_->before) {
    auto it = m_.services_.find(key);
    if (it == m_.services_.end() || !old) {
      if ((it == m_.services_.end()) != !old) return true;
      continue;
    }
    // The configuration, not the bookkeeping: versions move on any change, even one
    // undone later in the same transaction.
    Service now = it->second;
    now.version = old->version;
    if (!(now == *old)) return true;
  }
  return false;
}

void ServiceModel::rollback() {
  Undo u = std::move(*undo_);
  undo_.reset();
  // Services: the slots of what is there now are given back, then what was there
  // before is put back with its slots.
  for (const auto& [key, old] : u.before) {
    if (auto it = services_.find(key); it != services_.end()) {
      service_slot_used_[it->second.slot] = false;
      services_.erase(it);
    }
  }
  for (auto& [key, old] : u.before) {
    if (!old) continue;
    service_slot_used_[old->slot] = true;
    services_.emplace(key, std::move(*old));
  }
  for (auto it = u.dest_slots.rbegin(); it != u.dest_slots.rend(); ++it) {
    dest_slots_[it->first] = it->second;
  }
  for (auto it = u.trash.rbegin(); it != u.trash.rend(); ++it) {
    if (it->second) {
      trash_[it->first] = *it->second;
    } else {
      trash_.erase(it->first);
    }
  }
  timeouts_ = u.timeouts;
  sysctls_ = u.sysctls;
  sync_ = u.sync;
  next_slot_hint_ = u.next_slot_hint;
  next_slot_ = u.next_slot;
  // The versions handed out stay used (they only ever grow); the changes logged go.
  log_.resize(u.log_size);
  log_floor_ = u.log_floor;
}

void ServiceModel::touch(std::map<ServiceKey, Service>::iterator it, bool erase) {
  if (!undo_) return;
  auto [b, first] = undo_->before.try_emplace(it->first);
  if (!first) return;
  if (erase) {
    b->second = std::move(it->second);
  } else {
    b->second = it->second;
  }
}

void ServiceModel::changed(const ServiceKey& key) { log_.emplace_back(++next_version_, key); }

void ServiceModel::trimLog() {
  if (log_.size() <= 2 * services_.size() + 4096) return;
  // The older half goes: a snapshot built before it is rebuilt whole.
  const size_t drop = log_.size() / 2;
  log_floor_ = log_[drop - 1].first;
  log_.erase(log_.begin(), log_.begin() + static_cast<ptrdiff_t>(drop));
}

std::optional<std::vector<ServiceKey>> ServiceModel::changedSince(uint64_t v) const {
  if (v < log_floor_) return std::nullopt;
  auto from = std::upper_bound(log_.begin(), log_.end(), v,
                               [](uint64_t x, const auto& e) { return x < e.first; });
  std::vector<ServiceKey> out;
  for (auto it = from; it != log_.end(); ++it) out.push_back(it->second);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

void ServiceModel::setDestSlot(uint32_t slot, bool used, uint8_t generation) {
  if (undo_) {
    undo_->dest_slots.emplace_back(slot, dest_slots_[slot]);
  }
  dest_slots_[slot] = static_cast<uint8_t>((used ? BackendId::kLiveBit : 0) | generation);
}

void ServiceModel::setTrash(const std::tuple<ServiceKey, IpAddr, uint16_t>& k,
                            std::optional<BackendId> id) {
  auto it = trash_.find(k);
  if (undo_) {
    undo_->trash.emplace_back(
        k, it == trash_.end() ? std::nullopt : std::optional<BackendId>(it->second));
  }
  if (id) {
    trash_[k] = *id;
  } else if (it != trash_.end()) {
    trash_.erase(it);
  }
}

absl::Status ServiceModel::addService(const ServiceKey& key, const ServiceOptions& options) {
  if (auto s = checkScheduler(options.scheduler); !s.ok()) return s;
  if (services_.count(key)) return absl::AlreadyExistsError("Service already exists");
  if (services_.size() >= kMaxServices) {
    return absl::ResourceExhaustedError(absl::StrCat("at most ", kMaxServices, " services"));
  }
  // Slots rotate, so a re-created service rarely inherits another's scheduler position.
  while (service_slot_used_[next_slot_]) next_slot_ = (next_slot_ + 1) % kMaxServices;
  if (undo_) undo_->before.try_emplace(key);  // did not exist
  service_slot_used_[next_slot_] = true;
  changed(key);
  Service svc;
  static_cast<ServiceOptions&>(svc) = options;
  svc.key = key;
  svc.slot = next_slot_;
  svc.version = next_version_;
  services_[key] = std::move(svc);
  next_slot_ = (next_slot_ + 1) % kMaxServices;
  return absl::OkStatus();
}

absl::Status ServiceModel::editService(const ServiceKey& key, const ServiceOptions& options) {
  if (auto s = checkScheduler(options.scheduler); !s.ok()) return s;
  auto it = services_.find(key);
  if (it == services_.end()) return absl::NotFoundError("No such service");
  if (!(static_cast<const ServiceOptions&>(it->second) == options)) {
    touch(it);
    static_cast<ServiceOptions&>(it->second) = options;
    changed(key);
    it->second.version = next_version_;
  }
  return absl::OkStatus();
}

absl::Status ServiceModel::deleteService(const ServiceKey& key) {
  auto it = services_.find(key);
  if (it == services_.end()) return absl::NotFoundError("No such service");
  for (const RealServer& d : it->second.dests) retireDest(key, d);
  service_slot_used_[it->second.slot] = false;
  touch(it, true);
  services_.erase(it);
  changed(key);
  return absl::OkStatus();
}

void ServiceModel::clear() {
  for (auto it = services_.begin(); it != services_.end(); ++it) {
    for (const RealServer& d : it->second.dests) retireDest(it->first, d);
    service_slot_used_[it->second.slot] = false;
    changed(it->first);
    touch(it, true);
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
  touch(it);
  dests.push_back(dest);
  changed(key);
  it->second.version = next_version_;
  return absl::OkStatus();
}

// Slots rotate and each reuse bumps the slot's generation, so a deleted server's id
// is not handed to a new one for a long while: connections still pointing at the
// old id are not taken for the new server's (expire_nodest_conn).
BackendId ServiceModel::reviveDestId(const ServiceKey& key, const RealServer& d) {
  auto it = trash_.find({key, d.addr, d.port});
  if (it == trash_.end()) return {};
  const BackendId id = it->second;
  setTrash(it->first, std::nullopt);
  // Only while its slot has not gone to another server meanwhile.
  if (!revivable(id)) return {};
  setDestSlot(id.slot(), true, id.generation());
  return id;
}

void ServiceModel::retireDest(const ServiceKey& key, const RealServer& d) {
  setDestSlot(d.id.slot(), false, d.id.generation());
  setTrash({key, d.addr, d.port}, d.id);
}

BackendId ServiceModel::allocDestId() {
  for (uint32_t n = 0; n < kMaxRealServers; ++n) {
    const uint32_t slot = next_slot_hint_;
    next_slot_hint_ = slot == kMaxRealServers ? 1 : slot + 1;
    if (!(dest_slots_[slot] & BackendId::kLiveBit)) {
      // Kept to the id's generation bits, so that it compares equal to an id's.
      const auto generation =
          static_cast<uint8_t>((dest_slots_[slot] + 1) & ((1u << BackendId::kGenerationBits) - 1));
      setDestSlot(slot, true, generation);
      return BackendId::make(generation, slot);
    }
  }
  return {};
}

absl::Status ServiceModel::editDest(const ServiceKey& key, const RealServer& dest) {
  auto it = services_.find(key);
  if (it == services_.end()) return absl::NotFoundError("Service not defined");
  for (RealServer& d : it->second.dests) {
    if (d.addr == dest.addr && d.port == dest.port) {
      RealServer edited = dest;
      edited.id = d.id;
      edited.check = d.check;  // -e changes what ipvsadm sets, not the health check
      edited.down = d.down;
      if (!(edited == d)) {
        touch(it);  // copies the service: `d` still points into it
        d = edited;
        changed(key);
        it->second.version = next_version_;
      }
      return absl::OkStatus();
    }
  }
  return absl::NotFoundError("No such destination");
}

absl::Status ServiceModel::setCheck(const ServiceKey& key, const IpAddr& addr, uint16_t port,
                                    std::optional<HealthCheck> check) {
  auto it = services_.find(key);
  if (it == services_.end()) return absl::NotFoundError("Service not defined");
  for (RealServer& d : it->second.dests) {
    if (d.addr == addr && d.port == port) {
      const bool down = check ? d.down : false;
      if (d.check != check || d.down != down) {
        touch(it);  // copies the service: `d` still points into it
        d.check = std::move(check);
        d.down = down;
        changed(key);
        it->second.version = next_version_;
      }
      return absl::OkStatus();
    }
  }
  return absl::NotFoundError("No such destination");
}

absl::Status ServiceModel::setDown(const ServiceKey& key, const IpAddr& addr, uint16_t port,
                                   bool down) {
  auto it = services_.find(key);
  if (it == services_.end()) return absl::NotFoundError("Service not defined");
  for (RealServer& d : it->second.dests) {
    if (d.addr == addr && d.port == port) {
      if (!d.check) return absl::FailedPreconditionError("the real server has no health check");
      if (d.down != down) {
        touch(it);
        d.down = down;
        changed(key);
        it->second.version = next_version_;
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
  touch(it);
  dests.erase(d);
  changed(key);
  it->second.version = next_version_;
  return absl::OkStatus();
}

}  // namespace meshlb
