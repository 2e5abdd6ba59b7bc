// The service model: IPVS virtual services and their real servers, the one
// place every front end (ipvsadm parser, -R restore, state file, tests) changes
// configuration through. Control thread only.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "meshlb/sysctls.h"
#include "meshlb/types.h"

namespace meshlb {

enum class ForwardMethod : uint8_t { kMasq, kRoute, kTunnel };

// ipvsadm -i --tun-type (IPVS's IP_VS_CONN_F_TUNNEL_TYPE_*) and its checksum flags
// (IP_VS_TUNNEL_ENCAP_FLAG_*: ipvsadm lists them by these numbers).
enum class TunnelType : uint8_t { kIpip, kGue, kGre };
enum class TunnelCsum : uint8_t { kNone, kCsum, kRemote };

// A real server's health check (meshlbctl healthcheck, control/health.h): a TCP
// connect, or an HTTP GET expecting a status, every interval; `fall` failures in a
// row take the server down (weight 0: no new connection, the open ones go on) and
// `rise` successes bring it back. The defaults are HAProxy's.
struct HealthCheck {
  friend bool operator==(const HealthCheck&, const HealthCheck&) = default;
  bool http = false;
  std::string path = "/";  // HTTP: the path asked for, and the status expected
  uint16_t expect = 200;
  uint16_t port = 0;  // 0: the real server's own port
  uint32_t interval_ms = 2000, timeout_ms = 2000;
  uint32_t rise = 2, fall = 3;
};

struct RealServer {
  friend bool operator==(const RealServer&, const RealServer&) = default;
  IpAddr addr;
  uint16_t port = 0;  // host order; 0 keeps the packet's destination port
  uint32_t weight = 1;
  ForwardMethod fwd = ForwardMethod::kMasq;
  // ipvsadm -x/-y: IPVS's connection thresholds, 0 = none (the server is overloaded,
  // taking no new connection, from u_threshold connections until under l_threshold,
  // or under 3/4 of u_threshold without one).
  uint32_t u_threshold = 0, l_threshold = 0;
  // -i: how packets are encapsulated to it (tun_port: GUE's UDP port, host order).
  TunnelType tun_type = TunnelType::kIpip;
  uint16_t tun_port = 0;
  TunnelCsum tun_csum = TunnelCsum::kNone;
  BackendId id;  // stable while the real server exists: the dataplane's backend id
  std::optional<HealthCheck> check;
  bool down = false;  // its check failed: weight 0 until it rises
  // The weight the dataplane and the listings use (-S keeps the configured one).
  uint32_t liveWeight() const { return down ? 0 : weight; }
};

constexpr uint32_t kMaxRealServers = BackendId::kMaxLive;  // live ones, over all services

// What ipvsadm -A and -E set of a service besides its key.
struct ServiceOptions {
  friend bool operator==(const ServiceOptions&, const ServiceOptions&) = default;
  std::string scheduler;     // a name in the scheduler registry (meshlb/scheduler.h)
  uint32_t sched_flags = 0;  // ipvsadm -b: kSchedFlag1..3 (sh-/mh-fallback, -port)
  // -p: persistence, the template timeout in seconds (0: not persistent); -M: the
  // persistence granularity, an IPv4 mask (host order) or an IPv6 prefix length.
  uint32_t persistent = 0;
  uint32_t netmask = 0xffffffff;
  bool ops = false;  // -o: one-packet scheduling (UDP)
};

struct Service : ServiceOptions {
  friend bool operator==(const Service&, const Service&) = default;
  ServiceKey key;
  uint32_t slot = 0;              // stable while the service exists: workers' scheduler state index
  std::vector<RealServer> dests;  // in insertion order; listings sort
  // Changes whenever anything above does (and only then): the snapshot builder
  // reuses what it built for an unchanged service instead of building it again.
  uint64_t version = 0;
};

struct IpvsTimeouts {
  friend bool operator==(const IpvsTimeouts&, const IpvsTimeouts&) = default;
  uint32_t tcp = 900, tcpfin = 120, udp = 300;  // seconds, ipvsadm --set
};

// One of IPVS's connection sync daemons (ipvsadm --start-daemon master|backup), as
// the kernel keeps its configuration (ipvs_sync_daemon_cfg, its defaults filled in).
struct SyncDaemon {
  friend bool operator==(const SyncDaemon&, const SyncDaemon&) = default;
  bool running = false;
  std::string ifname;   // --mcast-interface
  uint32_t syncid = 0;  // --syncid; a backup with 0 takes every id
  uint32_t maxlen = 0;  // --sync-maxlen: the largest message, UDP payload
  IpAddr group = IpAddr::of(Ipv4Addr{0x510000e0u});  // --mcast-group, 224.0.0.81
  uint32_t port = 8848, ttl = 1;                     // --mcast-port, --mcast-ttl
};
enum SyncRole : int { kSyncMaster = 0, kSyncBackup = 1 };

class ServiceModel {
 public:
  static bool schedulerSupported(const std::string& name);

  // All or nothing, at the cost of the change: while a Transaction lives, the model
  // records how to undo each change it takes (a touched service is copied once, an
  // allocator entry as it changes), and undoes them all unless commit() is called.
  // Nothing is ever copied whole, so a change costs what it touches, not the size
  // of the configuration. One level: a Transaction begun inside another joins it
  // (the outer one decides).
  class Transaction {
   public:
    explicit Transaction(ServiceModel& m);
    ~Transaction();
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    void commit();
    // The services added, changed or deleted so far (a key may be listed once).
    std::vector<ServiceKey> touched() const;
    // Whether the configuration differs from when the transaction began.
    bool changed() const;
    // Each touched service as it was (nullopt: it did not exist), by key.
    const std::map<ServiceKey, std::optional<Service>>& before() const;

   private:
    ServiceModel& m_;
    bool owner_;
    bool done_ = false;
  };

  absl::Status addService(const ServiceKey& key, const ServiceOptions& options);
  absl::Status editService(const ServiceKey& key, const ServiceOptions& options);
  absl::Status deleteService(const ServiceKey& key);
  void clear();
  absl::Status addDest(const ServiceKey& key, RealServer dest);
  absl::Status editDest(const ServiceKey& key, const RealServer& dest);
  absl::Status deleteDest(const ServiceKey& key, const IpAddr& addr, uint16_t port);
  // A real server's health check (nullopt: none, and the server is up) and its state.
  absl::Status setCheck(const ServiceKey& key, const IpAddr& addr, uint16_t port,
                        std::optional<HealthCheck> check);
  absl::Status setDown(const ServiceKey& key, const IpAddr& addr, uint16_t port, bool down);
  void setTimeouts(const IpvsTimeouts& t) { timeouts_ = t; }
  void setSyncDaemon(SyncRole role, const SyncDaemon& d) { sync_[role] = d; }
  const std::array<SyncDaemon, 2>& syncDaemons() const { return sync_; }
  // net.ipv4.vs.* (meshlbctl sysctl), undone with a failed transaction as --set is.
  void setSysctls(const IpvsSysctls& s) { sysctls_ = s; }
  const IpvsSysctls& sysctls() const { return sysctls_; }

  const std::map<ServiceKey, Service>& services() const { return services_; }
  const IpvsTimeouts& timeouts() const { return timeouts_; }

  // Every change bumps the model's version; the services changed since version `v`
  // (added, changed or deleted, each key once), or nullopt when `v` is older than
  // the log of changes still kept (then everything must be taken as changed). The
  // snapshot builder rebuilds just these.
  uint64_t version() const { return next_version_; }
  // Which model the versions are of: every model, a copy too, has its own id.
  uint64_t id() const { return id_.v; }
  // By real-server id slot: BackendId::kLiveBit | the live id's generation, or the
  // slot's last generation alone when no server has it (what the snapshot's
  // live_backend copies).
  const std::vector<uint8_t>& liveBackends() const { return dest_slots_; }
  std::optional<std::vector<ServiceKey>> changedSince(uint64_t v) const;

 private:
  struct Undo {
    std::map<ServiceKey, std::optional<Service>> before;  // first touch: as it was
    IpvsTimeouts timeouts;
    IpvsSysctls sysctls;
    std::array<SyncDaemon, 2> sync;
    uint32_t next_slot_hint, next_slot;  // all set by Transaction
    size_t log_size;
    uint64_t log_floor;
    // Allocator entries as they were, undone last to first.
    std::vector<std::pair<uint32_t, uint8_t>> dest_slots;  // slot, its dest_slots_ byte
    std::vector<std::pair<std::tuple<ServiceKey, IpAddr, uint16_t>, std::optional<BackendId>>>
        trash;
  };
  // Before any change to a service; `erase`: it is about to go, so it is moved, not
  // copied, into the undo record.
  void touch(std::map<ServiceKey, Service>::iterator it, bool erase = false);
  void changed(const ServiceKey& key);  // logs the change under a new model version
  void setDestSlot(uint32_t slot, bool used, uint8_t generation);
  void setTrash(const std::tuple<ServiceKey, IpAddr, uint16_t>& k, std::optional<BackendId> id);
  void rollback();
  void trimLog();

  struct InstanceId {
    static uint64_t next();
    uint64_t v = next();
    InstanceId() = default;
    InstanceId(const InstanceId&) : v(next()) {}
    InstanceId& operator=(const InstanceId&) {
      v = next();
      return *this;
    }
  };
  InstanceId id_;
  std::map<ServiceKey, Service> services_;
  IpvsTimeouts timeouts_;
  IpvsSysctls sysctls_;
  std::array<SyncDaemon, 2> sync_;
  std::optional<Undo> undo_;
  // (version, key) of each change, oldest first; versions up to log_floor_ are gone.
  std::vector<std::pair<uint64_t, ServiceKey>> log_;
  uint64_t log_floor_ = 0;
  BackendId allocDestId();
  BackendId reviveDestId(const ServiceKey& key, const RealServer& d);
  void retireDest(const ServiceKey& key, const RealServer& d);
  // Deleted real servers by (service, address, port), as IPVS keeps them in its
  // trash: re-adding one soon revives its id, so its connections (and their
  // ActiveConn/InActConn) are its own again, and -C then -R lists identically.
  std::map<std::tuple<ServiceKey, IpAddr, uint16_t>, BackendId> trash_;
  // Real-server id slots: kLiveBit while a server has the slot, and the generation
  // last given out in it.
  std::vector<uint8_t> dest_slots_ = std::vector<uint8_t>(BackendId::kSlots, 0);
  // Whether a retired id may be given back to its server: its slot free, and not
  // given to another server meanwhile.
  bool revivable(BackendId id) const { return dest_slots_[id.slot()] == id.generation(); }
  uint32_t next_slot_hint_ = 1;
  uint32_t next_slot_ = 0;
  uint64_t next_version_ = 0;
  // Which service slots are taken: a new service's slot is found without walking
  // the services (that walk made -R of N services take N^2).
  std::vector<bool> service_slot_used_ = std::vector<bool>(kMaxServices, false);
};

}  // namespace meshlb
