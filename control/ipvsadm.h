// `meshlbctl ipvsadm ...`: ipvsadm 1.31's command line over the service model,
// with its listing formats reproduced byte for byte (-L -n, -S -n, --timeout).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "service_model.h"

namespace meshlb {

// Runs one ipvsadm command. `input` is standard input (read by -R). Returns the
// text ipvsadm would print, or an error naming the offending option; on error
// the model is unchanged (a -R batch is applied all or nothing).
// What the dataplane knows of one real server (summed over workers): the
// connection counts of -L, the counters of --stats and the rates of --rate
// (per second, IPVS's 2-second estimator).
struct DestCounters {
  uint32_t active = 0, inactive = 0;
  uint32_t persistconns = 0;  // persistence templates naming it (--persistent-conn)
  uint64_t conns = 0, inpkts = 0, outpkts = 0, inbytes = 0, outbytes = 0;
  uint64_t cps = 0, inpps = 0, outpps = 0, inbps = 0, outbps = 0;
};

// One tracked connection, or a persistence template (protocol 0 for a firewall
// mark's, client port 0), for -L -c.
struct ConnEntry {
  uint8_t protocol = 0;
  IpAddr client, virt, dest;
  uint16_t cport = 0, vport = 0, dport = 0;  // host order
  std::string state;
  uint32_t expires_s = 0;
};

// The daemon's side of ipvsadm: counters by real-server id, -Z, and -L -c.
struct IpvsDataplane {
  std::function<DestCounters(BackendId real_server)> counters;
  // A service's own --stats (IPVS keeps them apart from its servers'); unset: the sum
  // of its real servers'.
  std::function<DestCounters(const Service& service)> service_counters;
  // -Z: a service (by slot) and its real servers; called for each service zeroed.
  std::function<void(uint32_t service, const std::vector<BackendId>& real_servers)> zero;
  // After a change, before it is published: the real servers a service lost (what
  // they counted until now stays the service's), and the services new in their slot.
  std::function<void(uint32_t service, const std::vector<BackendId>& real_servers)> removed;
  std::function<void(uint32_t service)> added;
  // A service gone (deleted, or its slot taken by another): what it counted is kept
  // for the metrics' totals, which never go back. After removed().
  std::function<void(uint32_t service)> retired;
  // Every tracked connection. The daemon's workers copy theirs between bursts, so
  // the first call starts that copy and answers kUnavailable; the daemon then
  // runs the command again once the copy is in, without blocking its thread.
  std::function<absl::StatusOr<std::vector<ConnEntry>>()> connections;
  // The UDP port the dataplane takes for VXLAN now (the first overlay's, as a Swarm
  // --data-path-port sets it; 4789 without one): no UDP service may use it.
  std::function<uint16_t()> vxlan_port;
  // Around a listing of real servers: true before (what counters() reads may be
  // gathered once), false after.
  std::function<void(bool begins)> listing;
  // An address's host name for a listing without -n (its number when it has none), or
  // nullopt while it is being resolved: the listing is then answered kUnavailable and
  // run again once the resolver has answered.
  std::function<std::optional<std::string>(const IpAddr&)> host_name;
  // --start-daemon: the MTU of the multicast interface, nullopt when there is no such
  // interface (unset: any name is taken, with a 1500 MTU, as a state file's is).
  std::function<std::optional<uint32_t>(const std::string& ifname)> interface_mtu;
};
// The --start-daemon line that starts a sync daemon as it is configured (state file).
std::string syncDaemonRule(SyncRole role, const SyncDaemon& d);

absl::StatusOr<std::string> runIpvsadm(ServiceModel& model, const std::vector<std::string>& args,
                                       const std::string& input = "",
                                       const IpvsDataplane& dataplane = {});

// True for the commands that change no configuration (listings, -S, -Z): they run
// on the live model, outside any transaction.
bool ipvsadmReadsOnly(const std::vector<std::string>& args);
// ipvsadm -S leaves out the real servers' thresholds, as ipvsadm does: these -e
// lines, after it, put them back (what the state file saves).
std::vector<std::string> ipvsadmThresholdRules(const ServiceModel& model);
// Whether `args` is a -R (its input then holds the commands).
bool ipvsadmRestores(const std::vector<std::string>& args);

// For the commands beside ipvsadm's that name its services and real servers: a
// service option (-t/-u ADDR:PORT, -f MARK: the flag and its value), a real server
// -r ADDR[:PORT] of `service` (without a port: the service's, 0 for a firewall
// mark's), and the names ipvsadm gives them ("-t 1.2.3.4:80", "TCP  1.2.3.4:80",
// "1.2.3.4:80" or "[2001:db8::1]:80").
absl::StatusOr<ServiceKey> parseServiceOption(const std::string& flag, const std::string& value);
// -6 after -f MARK: the firewall-mark service is IPv6's (ipvsadm's "-6 used before -f"
// otherwise; null `k`: no service yet).
absl::Status applyIpv6Option(ServiceKey* k);
absl::StatusOr<std::pair<IpAddr, uint16_t>> parseRealServerOption(const ServiceKey& service,
                                                                  const std::string& value);
std::string serviceRuleName(const ServiceKey& k);
std::string serviceListName(const ServiceKey& k);
std::string addrPortName(const IpAddr& a, uint16_t port);
// A command for which ipvsadmReadsOnly() holds, on a model it cannot change.
absl::StatusOr<std::string> listIpvsadm(const ServiceModel& model,
                                        const std::vector<std::string>& args,
                                        const IpvsDataplane& dp = {});

}  // namespace meshlb
