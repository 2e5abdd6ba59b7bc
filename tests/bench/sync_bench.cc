// IPVS connection sync's rates (issue 15, docs/scale-out.md): connections per second a
// master's control thread encodes into messages, a backup's control thread decodes, and
// a backup's worker installs, against the baseline measured in the same run: the rate at
// which one worker opens connections itself (a SYN each, full NAT, through PacketCore).
// A backup keeps up with a master while it installs faster than the master's workers
// open connections.
//   sync_bench [--conns N]   (at most 60000: one task's SNAT ports)
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "commands.h"
#include "packets.h"
#include "snapshot_builder.h"
#include "sync.h"

namespace meshlb {
namespace {

double secondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// An appliance's configuration and kernel view: VIP 198.18.0.100:8080 on lb0, three
// tasks in 198.19.1.0/24 on lb1 (resolved), full NAT to 198.19.0.1.
struct Config {
  Commands commands;
  KernelView kernel;
  Config() {
    bool changed;
    for (const char* line :
         {"ipvsadm -A -t 198.18.0.100:8080 -s mh",
          "ipvsadm -a -t 198.18.0.100:8080 -r 198.19.1.1:80 -m",
          "ipvsadm -a -t 198.18.0.100:8080 -r 198.19.1.2:80 -m",
          "ipvsadm -a -t 198.18.0.100:8080 -r 198.19.1.3:80 -m",
          "iptables -t nat -A POSTROUTING -m ipvs --ipvs -j SNAT --to-source 198.19.0.1"}) {
      if (!commands.run(absl::StrSplit(line, ' '), "", &changed).ok()) std::abort();
    }
    auto ip = [](const char* s) { return IpAddr::parse(s).value(); };
    kernel.addrs = {
        {10, ip("198.18.0.1"), 24}, {10, ip("198.18.0.100"), 32}, {11, ip("198.19.0.1"), 16}};
    kernel.routes = {{ip("198.18.0.0"), 24, {}, 10}, {ip("198.19.0.0"), 16, {}, 11}};
    for (uint8_t t = 1; t <= 3; ++t) {
      kernel.neighs.push_back(
          {11, ip(("198.19.1." + std::to_string(t)).c_str()), {2, 0, 0, 0, 1, t}});
    }
  }
  std::unique_ptr<Snapshot> snapshot() const {
    return buildSnapshot(commands.services(), commands.nat(), commands.nat6(), kernel,
                         {{10, {2, 0, 0, 0, 0, 2}}, {11, {2, 0, 0, 0, 1, 2}}}, 1, nullptr);
  }
};

int run(uint32_t conns) {
  Config cfg;
  auto snap = cfg.snapshot();
  CoreConfig cc;
  cc.flow_capacity = conns * 2;
  WorkerCounters wc;
  // Baseline: a worker opening `conns` connections from as many client ports.
  PacketCore opener(wc, cc);
  opener.setSnapshot(snap.get());
  opener.setNow(1000);
  std::vector<uint8_t> frames(size_t{conns} * kPktSize);
  const uint32_t vip = IpAddr::parse("198.18.0.100").value().v4().v;
  for (uint32_t i = 0; i < conns; ++i) {
    const uint32_t client =
        IpAddr::parse("198.18.0.10").value().v4().v + __builtin_bswap32(i >> 14);
    buildTcp(&frames[size_t{i} * kPktSize], client, vip, hton16(1024 + (i & 16383)), hton16(8080),
             kTcpSyn);
  }
  auto t = std::chrono::steady_clock::now();
  uint32_t opened = 0;
  for (uint32_t i = 0; i < conns; ++i) {
    opened +=
        opener.process(&frames[size_t{i} * kPktSize], kPktSize, 0).action == Verdict::kTransmit;
  }
  const double open_s = secondsSince(t);
  // What a master sends: each of those connections, established.
  std::vector<SyncConn> sc;
  opener.table().forEach([&](const Flow<Ipv4Addr>& f) {
    SyncConn c;
    c.protocol = kProtoTcp;
    c.state = static_cast<uint16_t>(ConnState::kEstablished);
    c.caddr = IpAddr::of(f.client), c.cport = f.cport;
    c.vaddr = IpAddr::of(f.vip), c.vport = f.vport;
    c.daddr = IpAddr::of(f.backend), c.dport = f.bport, c.timeout_s = 900;
    c.has_snat = true, c.snat = IpAddr::of(f.local), c.snat_port = f.lport;
    sc.push_back(c);
  });
  t = std::chrono::steady_clock::now();
  const auto msgs = encodeSyncMessages(1, sc, 1472);
  const double encode_s = secondsSince(t);
  size_t bytes = 0;
  for (const auto& m : msgs) bytes += m.size();
  t = std::chrono::steady_clock::now();
  std::vector<SyncConn> got;
  got.reserve(sc.size());
  SyncMessage m;
  std::string why;
  for (const auto& msg : msgs) {
    if (decodeSyncMessage(reinterpret_cast<const uint8_t*>(msg.data()), msg.size(), 1, &m, &why) !=
        SyncDecode::kOk) {
      std::fprintf(stderr, "decode: %s\n", why.c_str());
      return 1;
    }
    got.insert(got.end(), m.conns.begin(), m.conns.end());
  }
  const double decode_s = secondsSince(t);
  // The backup's control thread: each connection's real server found by address and
  // the record queued for its worker (here a vector, in meshlbd the worker's ring).
  std::vector<SyncRecord> recs;
  recs.reserve(got.size());
  SyncDaemons::Hooks hooks;
  hooks.take = [](uint16_t, SyncRecord*, size_t) -> size_t { return 0; };
  hooks.give = [&](uint16_t, const SyncRecord& r) {
    recs.push_back(r);
    return true;
  };
  SyncDaemons daemons(hooks);
  daemons.apply(cfg.commands.services(), {});
  t = std::chrono::steady_clock::now();
  for (const SyncConn& c : got) daemons.install(c);
  const double map_s = secondsSince(t);
  WorkerCounters bc;
  PacketCore backup(bc, cc);
  backup.setSnapshot(snap.get());
  backup.setNow(1000);
  t = std::chrono::steady_clock::now();
  uint32_t installed = 0;
  for (const SyncRecord& r : recs) installed += backup.installSynced(r);
  const double install_s = secondsSince(t);
  if (opened != conns || got.size() != opened || recs.size() != opened || installed != opened) {
    std::fprintf(stderr, "opened %u, decoded %zu, mapped %zu, installed %u of %u\n", opened,
                 got.size(), recs.size(), installed, conns);
    return 1;
  }
  std::printf("connections: %u; messages: %zu (%.1f connections, %.0f bytes each)\n", conns,
              msgs.size(), double(conns) / msgs.size(), double(bytes) / msgs.size());
  std::printf("%-40s %12.0f /s   (baseline)\n", "worker opens (SYN, full NAT)", conns / open_s);
  std::printf("%-40s %12.0f /s   %5.1fx\n", "master control thread encodes", conns / encode_s,
              open_s / encode_s);
  std::printf("%-40s %12.0f /s   %5.1fx\n", "backup control thread decodes", conns / decode_s,
              open_s / decode_s);
  std::printf("%-40s %12.0f /s   %5.1fx\n", "backup control thread finds real servers",
              conns / map_s, open_s / map_s);
  std::printf("%-40s %12.0f /s   %5.1fx\n", "backup worker installs", conns / install_s,
              open_s / install_s);
  return 0;
}

}  // namespace
}  // namespace meshlb

int main(int argc, char** argv) {
  uint32_t conns = 60'000;  // within one task's SNAT ports whatever mh picks
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--conns") == 0 && i + 1 < argc &&
        absl::SimpleAtoi(argv[i + 1], &conns) && conns >= 1000 && conns <= 60'000) {
      ++i;
    } else {
      std::fprintf(stderr, "usage: sync_bench [--conns N] (1000..60000)\n");
      return 2;
    }
  }
  return meshlb::run(conns);
}
