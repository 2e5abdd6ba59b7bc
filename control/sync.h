// IPVS connection synchronisation (ipvsadm --start-daemon master|backup), protocol
// version 1 as net/netfilter/ipvs/ip_vs_sync.c speaks it: UDP multicast (224.0.0.81:8848
// by default) on one interface, messages of whole connections. A master sends each
// connection its workers queue (SyncRecord); a backup installs what it receives in
// the worker that owns each connection, keyed by its own real servers.
//
// Full NAT: IPVS has no SNAT, so a connection's SNAT address and port travel in an
// optional parameter of meshlb's own (kSyncOptSnat), which the kernel skips (its
// IPVS_OPT_F_PARAM bit). Appliances never share an SNAT address: each SNATs to its
// own, so their ports cannot collide, and a backup installs the master's as they are.
#pragma once

#include <netinet/in.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "meshlb/packet_core.h"
#include "meshlb/persist.h"
#include "service_model.h"

namespace meshlb {

// IP_VS_CONN_F_* (include/uapi/linux/ip_vs.h).
constexpr uint32_t kConnFMasq = 0x0000, kConnFTunnel = 0x0002, kConnFDroute = 0x0003,
                   kConnFFwdMask = 0x0007, kConnFNoOutput = 0x0080, kConnFInactive = 0x0100,
                   kConnFTemplate = 0x1000, kConnFOnePacket = 0x2000;
// meshlb's optional parameter: IPVS_OPT_F_PARAM (skipped by a kernel) | 8; its data the
// SNAT address and port (6 bytes for an IPv4 connection, 18 for IPv6; network order).
constexpr uint8_t kSyncOptSnat = 0x40 | 8;

// One connection of a message: addresses and ports in network order, all four
// addresses of one family (struct ip_vs_sync_v4, or ip_vs_sync_v6 when IPv6).
struct SyncConn {
  friend bool operator==(const SyncConn&, const SyncConn&) = default;
  bool v6() const { return caddr.isV6(); }
  uint8_t protocol = 0;
  uint32_t flags = 0;  // IP_VS_CONN_F_*
  uint16_t state = 0;  // IP_VS_TCP_S_* (ConnState's order), 0 for UDP
  IpAddr caddr, vaddr, daddr;
  uint16_t cport = 0, vport = 0, dport = 0;
  uint32_t fwmark = 0, timeout_s = 0;
  bool has_snat = false;
  IpAddr snat;
  uint16_t snat_port = 0;
};

// Version 1 messages of at most `maxlen` bytes holding `conns` (at most 255 each).
std::vector<std::string> encodeSyncMessages(uint8_t syncid, const std::vector<SyncConn>& conns,
                                            uint32_t maxlen);

// What a message held, decoded as ip_vs_process_message() does.
struct SyncMessage {
  std::vector<SyncConn> conns;
  uint32_t skipped = 0;  // connections with unknown mandatory parameters
};
enum class SyncDecode { kOk, kOtherSyncId, kBad };
// `syncid`: the backup's; 0 takes every master's.
SyncDecode decodeSyncMessage(const uint8_t* data, size_t len, uint8_t syncid, SyncMessage* out,
                             std::string* why);

// The daemons' counters (meshlbctl stats, control group).
struct SyncCounters {
  uint64_t tx_messages = 0, tx_conns = 0, tx_errors = 0;
  uint64_t rx_messages = 0, rx_conns = 0, rx_bad = 0, rx_other_syncid = 0;
  uint64_t rx_no_service = 0, rx_no_server = 0, rx_unsupported = 0, rx_ring_full = 0;
  uint64_t rx_templates = 0, rx_templates_refused = 0;
  uint64_t tx_hellos = 0, rx_hellos = 0;
  uint64_t socket_errors = 0;
};

// The daemons at work, on the control thread (no thread of their own): poll() the
// backup's fd, then receive(); flush() each loop. Neither ever blocks.
class SyncDaemons {
 public:
  struct Hooks {
    uint16_t workers = 1;
    // Up to `max` of worker w's queued connections (master).
    std::function<size_t(uint16_t w, SyncRecord* out, size_t max)> take;
    // A connection for worker w to install (backup); false when its ring is full.
    std::function<bool(uint16_t w, const SyncRecord& r)> give;
    // A persistence template to install (backup): service slot, masked client address,
    // real server id, time left. False when it cannot be (its bucket full).
    std::function<bool(uint32_t slot, const IpAddr& net, uint32_t backend, uint32_t timeout_ms)>
        give_template;
    // A peer's master daemon started (its hello): this appliance's master sends it every
    // live connection once more, idle ones included.
    std::function<void()> peer_started;
  };
  explicit SyncDaemons(Hooks hooks) : hooks_(std::move(hooks)) {}
  ~SyncDaemons();
  SyncDaemons(const SyncDaemons&) = delete;
  SyncDaemons& operator=(const SyncDaemons&) = delete;

  // Opens and closes sockets as the configuration says; the model gives the
  // fwmarks a master sends and the real servers a backup installs on. Errors are
  // logged once and retried at the next call after kRetry.
  void apply(const ServiceModel& model, const absl::flat_hash_set<IpAddr>& snat_addrs);
  void setWorkers(uint16_t n) { hooks_.workers = n; }
  bool master() const { return send_fd_ >= 0; }
  int receiveFd() const { return recv_fd_; }
  void receive();
  void flush();
  // What receive() does with each connection of a message: the backup's own real
  // server found by address, the record given to the worker(s) that own it.
  void install(const SyncConn& s);
  void installTemplate(const SyncConn& s);
  void maps();
  const SyncCounters& counters() const { return c_; }

 private:
  void close(int* fd);
  void log(const std::string& what);

  Hooks hooks_;
  std::array<SyncDaemon, 2> cfg_;
  int send_fd_ = -1, recv_fd_ = -1;
  // A master's first seconds: an empty message (a hello) each second, so that peers send
  // it their connections, idle ones too. Kernel backups take it as a message of none.
  static constexpr int kHellos = 5;
  int hellos_left_ = 0;
  std::chrono::steady_clock::time_point next_hello_;
  sockaddr_storage group_{};  // the master's destination, IPv4 or IPv6
  socklen_t group_len_ = 0;
  std::string last_error_;
  const ServiceModel* model_ = nullptr;  // apply()'s: the daemon's, living as long
  uint64_t model_id_ = 0, model_version_ = ~uint64_t{0};
  // By real-server id: its service's fwmark (master); by (service, server) address:
  // the backup's real servers.
  absl::flat_hash_map<uint32_t, uint32_t> fwmark_of_;
  // A service by fwmark, or by protocol, address and port (host order); a real server
  // of it by address and port.
  struct SvcKey {
    friend bool operator==(const SvcKey&, const SvcKey&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const SvcKey& k) {
      return H::combine(std::move(h), k.fwmark, k.proto, k.vaddr, k.vport);
    }
    uint32_t fwmark = 0;
    uint8_t proto = 0;
    IpAddr vaddr;  // for a fwmark service, only its family
    uint16_t vport = 0;
  };
  struct DestKey {
    friend bool operator==(const DestKey&, const DestKey&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const DestKey& k) {
      return H::combine(std::move(h), k.svc, k.daddr, k.dport);
    }
    SvcKey svc;
    IpAddr daddr;
    uint16_t dport = 0;
  };
  struct Dest {
    uint32_t id;
    ForwardMethod fwd;
  };
  static SvcKey keyOf(const SyncConn& s);
  // A record of a worker's, as the connection a message carries (master).
  template <class Addr>
  void queue(const SyncRecord& r);
  template <class Addr>
  void install(const SyncConn& s, const Dest& dest);
  absl::flat_hash_map<DestKey, Dest> dests_;
  absl::flat_hash_map<SvcKey, uint32_t> services_;  // its slot
  absl::flat_hash_set<IpAddr> snat_addrs_;
  std::vector<SyncConn> pending_;
  SyncCounters c_;
};

}  // namespace meshlb
