#include "sync.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "meshlb/bytes.h"

namespace meshlb {

namespace {

constexpr size_t kHeaderLen = 8;   // struct ip_vs_sync_mesg
constexpr size_t kConnV4Len = 36;  // struct ip_vs_sync_v4
constexpr size_t kConnV6Len = 72;  // struct ip_vs_sync_v6
constexpr uint8_t kTypeInet6 = 1;  // STYPE_F_INET6
constexpr uint8_t kOptFParam = 0x40;
constexpr uint8_t kOptSeqData = 1, kOptPeData = 2, kOptPeName = 3;

void put16(std::string& b, uint16_t host) {
  b.push_back(static_cast<char>(host >> 8));
  b.push_back(static_cast<char>(host));
}
void put32(std::string& b, uint32_t host) {
  put16(b, static_cast<uint16_t>(host >> 16));
  put16(b, static_cast<uint16_t>(host));
}
void putRaw(std::string& b, const void* p, size_t n) { b.append(static_cast<const char*>(p), n); }

size_t addrLen(const SyncConn& c) { return c.v6() ? 16 : 4; }
size_t connLen(const SyncConn& c) {
  return (c.v6() ? kConnV6Len : kConnV4Len) + (c.has_snat ? 2 + addrLen(c) + 2 : 0);
}
IpAddr addrAt(const uint8_t* p, bool v6) {
  IpAddr a;
  a.family = v6 ? Family::kIpv6 : Family::kIpv4;
  std::memcpy(a.b, p, v6 ? 16 : 4);
  return a;
}

}  // namespace

std::vector<std::string> encodeSyncMessages(uint8_t syncid, const std::vector<SyncConn>& conns,
                                            uint32_t maxlen) {
  std::vector<std::string> out;
  std::string m;
  uint8_t n = 0;
  auto finish = [&] {
    if (n == 0) return;
    m[4] = static_cast<char>(n);
    m[2] = static_cast<char>(m.size() >> 8);
    m[3] = static_cast<char>(m.size());
    out.push_back(std::move(m));
    m.clear();
    n = 0;
  };
  for (const SyncConn& c : conns) {
    const size_t len = connLen(c);
    const size_t pad = (4 - m.size() % 4) % 4;
    if (!m.empty() && (m.size() + pad + len > maxlen || n == 255)) finish();
    if (m.empty()) {
      // reserved 0 (a version 0 receiver drops it), syncid, size, count, version 1, spare.
      m.assign({0, static_cast<char>(syncid), 0, 0, 0, 1, 0, 0});
    }
    m.append((4 - m.size() % 4) % 4, '\0');  // the previous connection's padding
    const size_t alen = addrLen(c);
    m.push_back(c.v6() ? kTypeInet6 : 0);  // type
    m.push_back(static_cast<char>(c.protocol));
    put16(m, static_cast<uint16_t>(len & 0x0fff));  // version 0, size
    put32(m, c.flags);
    put16(m, c.state);
    putRaw(m, &c.cport, 2);
    putRaw(m, &c.vport, 2);
    putRaw(m, &c.dport, 2);
    put32(m, c.fwmark);
    put32(m, c.timeout_s);
    putRaw(m, c.caddr.b, alen);
    putRaw(m, c.vaddr.b, alen);
    putRaw(m, c.daddr.b, alen);
    if (c.has_snat) {
      m.push_back(static_cast<char>(kSyncOptSnat));
      m.push_back(static_cast<char>(alen + 2));
      putRaw(m, c.snat.b, alen);
      putRaw(m, &c.snat_port, 2);
    }
    ++n;
  }
  finish();
  return out;
}

SyncDecode decodeSyncMessage(const uint8_t* data, size_t len, uint8_t syncid, SyncMessage* out,
                             std::string* why) {
  out->conns.clear();
  out->skipped = 0;
  auto bad = [&](const char* w) {
    *why = w;
    return SyncDecode::kBad;
  };
  if (len < 4) return bad("message header too short");
  if (loadBe16(data + 2) != len) return bad("bogus message size");
  if (syncid != 0 && data[1] != syncid) return SyncDecode::kOtherSyncId;
  if (len < kHeaderLen || data[0] != 0 || data[5] != 1 || loadBe16(data + 6) != 0) {
    return bad("not a version 1 message (meshlb does not take version 0)");
  }
  const uint8_t* end = data + len;
  const uint8_t* next = data + kHeaderLen;
  for (unsigned i = 0; i < data[4]; ++i) {
    const uint8_t* p = next;
    if (p + kConnV4Len > end) return bad("too small for its connections");
    const uint16_t ver_size = loadBe16(p + 2);
    const size_t size = ver_size & 0x0fff;
    const uint8_t* conn_end = p + size;
    if (conn_end > end) return bad("a connection beyond the message");
    if (ver_size >> 12) return bad("unknown connection version");
    next = p + ((size + 3) & ~size_t{3});
    const bool v6 = p[0] & kTypeInet6;
    if (p[0] & ~kTypeInet6) return bad("unknown connection type");
    const uint8_t* opt = p + (v6 ? kConnV6Len : kConnV4Len);
    if (opt > conn_end) return bad("a connection shorter than its addresses");
    SyncConn c;
    bool mandatory_unknown = false;
    while (opt < conn_end) {
      if (opt + 2 > conn_end) return bad("a parameter header cut short");
      const uint8_t type = opt[0], plen = opt[1];
      opt += 2;
      if (plen == 0 || opt + plen > conn_end) return bad("a parameter beyond its connection");
      if (type == kSyncOptSnat && plen == (v6 ? 18 : 6)) {
        c.has_snat = true;
        c.snat = addrAt(opt, v6);
        std::memcpy(&c.snat_port, opt + plen - 2, 2);
      } else {
        const uint8_t base = type & ~kOptFParam;
        // Sequence data (IPVS's FTP helper) and persistence-engine data are the
        // kernel's own; meshlb has neither and skips them.
        if (base != kOptSeqData && base != kOptPeData && base != kOptPeName &&
            !(type & kOptFParam)) {
          mandatory_unknown = true;
        }
      }
      opt += plen;
    }
    if (mandatory_unknown) {
      ++out->skipped;
      continue;
    }
    c.protocol = p[1];
    c.flags = loadBe32(p + 4);
    c.state = loadBe16(p + 8);
    std::memcpy(&c.cport, p + 10, 2);
    std::memcpy(&c.vport, p + 12, 2);
    std::memcpy(&c.dport, p + 14, 2);
    c.fwmark = loadBe32(p + 16);
    c.timeout_s = loadBe32(p + 20);
    const size_t alen = v6 ? 16 : 4;
    c.caddr = addrAt(p + 24, v6);
    c.vaddr = addrAt(p + 24 + alen, v6);
    c.daddr = addrAt(p + 24 + 2 * alen, v6);
    out->conns.push_back(c);
  }
  return SyncDecode::kOk;
}

SyncDaemons::~SyncDaemons() {
  close(&send_fd_);
  close(&recv_fd_);
}

void SyncDaemons::close(int* fd) {
  if (*fd >= 0) ::close(*fd);
  *fd = -1;
}

void SyncDaemons::log(const std::string& what) {
  if (what == last_error_) return;  // once, until something else happens
  last_error_ = what;
  std::printf("meshlbd: sync: %s\n", what.c_str());
  std::fflush(stdout);
}

// The maps from the model, when it has changed since: on use (a record to send, a
// connection received), so that a change costs nothing here while no daemon works.
void SyncDaemons::maps() {
  if (!model_ || (model_->id() == model_id_ && model_->version() == model_version_)) return;
  model_id_ = model_->id();
  model_version_ = model_->version();
  fwmark_of_.clear();
  dests_.clear();
  services_.clear();
  for (const auto& [key, svc] : model_->services()) {
    // A fwmark service is keyed by its mark and family (-f MARK -6 is another service).
    IpAddr vaddr = key.addr;
    if (key.fwmark)
      vaddr = IpAddr{.family = key.addr.family == Family::kIpv6 ? Family::kIpv6 : Family::kIpv4};
    const SvcKey sk{key.fwmark, key.fwmark ? uint8_t{0} : key.protocol, vaddr,
                    key.fwmark ? uint16_t{0} : key.port};
    services_[sk] = svc.slot;
    for (const RealServer& d : svc.dests) {
      if (key.fwmark) fwmark_of_[d.id.raw()] = key.fwmark;
      dests_[{sk, d.addr, d.port}] = {d.id.raw(), d.fwd};
    }
  }
}

void SyncDaemons::apply(const ServiceModel& model, const absl::flat_hash_set<IpAddr>& snat_addrs) {
  model_ = &model;
  const auto& want = model.syncDaemons();
  snat_addrs_ = snat_addrs;  // a backup's replies to them go by SNAT port
  for (SyncRole role : {kSyncMaster, kSyncBackup}) {
    const bool master = role == kSyncMaster;
    int* fd = master ? &send_fd_ : &recv_fd_;
    if (want[role] == cfg_[role] && (*fd >= 0 || !want[role].running)) continue;
    close(fd);
    cfg_[role] = want[role];
    const SyncDaemon& d = want[role];
    if (!d.running) {
      std::printf("meshlbd: sync: %s daemon stopped\n", master ? "master" : "backup");
      continue;
    }
    const unsigned ifindex = if_nametoindex(d.ifname.c_str());
    auto fail = [&](const char* step) {
      ++c_.socket_errors;
      log(absl::StrCat(master ? "master" : "backup", " daemon on ", d.ifname, ": ", step, ": ",
                       std::strerror(errno), " (tried again at the next change)"));
      close(fd);
    };
    if (ifindex == 0) {
      fail("no such interface");
      continue;
    }
    // The group's family is the sockets' (an IPv6 group: IPv6 sockets, as the kernel's).
    const bool v6 = d.group.isV6();
    *fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (*fd < 0) {
      fail("socket");
      continue;
    }
    sockaddr_storage group{};
    socklen_t group_len;
    if (v6) {
      auto* g = reinterpret_cast<sockaddr_in6*>(&group);
      g->sin6_family = AF_INET6;
      g->sin6_port = htons(static_cast<uint16_t>(d.port));
      std::memcpy(&g->sin6_addr, d.group.b, 16);
      g->sin6_scope_id = ifindex;  // a link-local group (ff02::) needs its link
      group_len = sizeof(sockaddr_in6);
    } else {
      auto* g = reinterpret_cast<sockaddr_in*>(&group);
      g->sin_family = AF_INET;
      g->sin_port = htons(static_cast<uint16_t>(d.port));
      std::memcpy(&g->sin_addr, d.group.b, 4);
      group_len = sizeof(sockaddr_in);
    }
    ip_mreqn mreq{};
    std::memcpy(&mreq.imr_multiaddr, d.group.b, 4);
    mreq.imr_ifindex = static_cast<int>(ifindex);
    ipv6_mreq mreq6{};
    std::memcpy(&mreq6.ipv6mr_multiaddr, d.group.b, 16);
    mreq6.ipv6mr_interface = ifindex;
    if (master) {
      // make_send_sock(): out of the interface, not looped back, the daemon's TTL,
      // fragmented rather than refused if the path's MTU shrinks.
      const int ttl = static_cast<int>(d.ttl), loop = 0;
      const int ifi = static_cast<int>(ifindex);
      const int pmtu = v6 ? IPV6_PMTUDISC_DONT : IP_PMTUDISC_DONT;
      const bool set =
          v6 ? setsockopt(*fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifi, sizeof ifi) == 0 &&
                   setsockopt(*fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &loop, sizeof loop) == 0 &&
                   setsockopt(*fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &ttl, sizeof ttl) == 0 &&
                   setsockopt(*fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &pmtu, sizeof pmtu) == 0
             : setsockopt(*fd, IPPROTO_IP, IP_MULTICAST_IF, &mreq, sizeof mreq) == 0 &&
                   setsockopt(*fd, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof loop) == 0 &&
                   setsockopt(*fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl) == 0 &&
                   setsockopt(*fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu) == 0;
      if (!set) {
        fail("socket options");
        continue;
      }
      // Not connected: the source is chosen at each send, so a master started before
      // its interface has an address (a state file's, at start) sends from it once it has.
      group_ = group;
      group_len_ = group_len;
      hellos_left_ = kHellos;
      next_hello_ = std::chrono::steady_clock::now();
    } else {
      // make_receive_sock(): bound to the group's port on the interface, joined.
      const int one = 1;
      if (setsockopt(*fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
          setsockopt(*fd, SOL_SOCKET, SO_BINDTODEVICE, d.ifname.c_str(),
                     static_cast<socklen_t>(d.ifname.size())) != 0) {
        fail("socket options");
        continue;
      }
      if (bind(*fd, reinterpret_cast<sockaddr*>(&group), group_len) != 0) {
        fail("bind to the group's port");
        continue;
      }
      if ((v6 ? setsockopt(*fd, IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP, &mreq6, sizeof mreq6)
              : setsockopt(*fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof mreq)) != 0) {
        fail("join the group");
        continue;
      }
    }
    last_error_.clear();
    std::printf("meshlbd: sync: %s daemon on %s, syncid %u, group %s:%u, maxlen %u\n",
                master ? "master" : "backup", d.ifname.c_str(), d.syncid, d.group.str().c_str(),
                d.port, d.maxlen);
  }
  std::fflush(stdout);
}

template <class Addr>
void SyncDaemons::queue(const SyncRecord& r) {
  const Flow<Addr>& f = r.flowOf<Addr>();
  SyncConn c;
  c.protocol = f.proto();
  c.caddr = IpAddr::of(f.client), c.cport = f.cport;
  c.vaddr = IpAddr::of(f.vip), c.vport = f.vport;
  c.daddr = IpAddr::of(f.backend), c.dport = f.bport;
  if (auto it = fwmark_of_.find(f.backend_id); it != fwmark_of_.end()) c.fwmark = it->second;
  if (r.is_template) {
    // A persistence template: the masked client, no client port, no state.
    c.flags = kConnFTemplate | (f.flags & kFlowTunnel   ? kConnFTunnel
                                : f.flags & kFlowDirect ? kConnFDroute
                                                        : kConnFMasq);
    c.cport = 0;
    c.timeout_s = (r.timeout_ms + 999) / 1000;
    pending_.push_back(c);
    return;
  }
  c.flags = f.flags & kFlowTunnel   ? kConnFTunnel | kConnFNoOutput
            : f.flags & kFlowDirect ? kConnFDroute | kConnFNoOutput
                                    : kConnFMasq;
  const ConnState s = f.connState();
  if (f.udp || !(s == ConnState::kEstablished || s == ConnState::kSynSent ||
                 s == ConnState::kSynRecv || s == ConnState::kSynAck)) {
    c.flags |= kConnFInactive;
  }
  c.state = f.udp ? 0 : static_cast<uint16_t>(s);
  c.timeout_s = (r.timeout_ms + 999) / 1000;  // 0 would mean the state's own
  if (!(f.local == f.client) || f.lport != f.cport) {
    c.has_snat = true;
    c.snat = IpAddr::of(f.local);
    c.snat_port = f.lport;
  }
  pending_.push_back(c);
}

void SyncDaemons::flush() {
  constexpr size_t kBatch = 256, kMaxPerFlush = 65536;
  SyncRecord recs[kBatch];
  size_t total = 0;
  for (uint16_t w = 0; w < hooks_.workers; ++w) {
    size_t n;
    while (total < kMaxPerFlush && (n = hooks_.take(w, recs, kBatch)) > 0) {
      total += n;
      if (send_fd_ < 0) continue;  // stopped meanwhile: what was queued goes nowhere
      maps();
      for (size_t i = 0; i < n; ++i) {
        if (recs[i].family == Family::kIpv6) {
          queue<Ipv6Addr>(recs[i]);
        } else {
          queue<Ipv4Addr>(recs[i]);
        }
      }
    }
  }
  const SyncDaemon& d = cfg_[kSyncMaster];
  if (send_fd_ >= 0 && hellos_left_ > 0 && std::chrono::steady_clock::now() >= next_hello_) {
    // Reserved 0, syncid, size 8, no connection, version 1, spare.
    const char hello[8] = {0, static_cast<char>(d.syncid), 0, 8, 0, 1, 0, 0};
    if (sendto(send_fd_, hello, sizeof hello, MSG_DONTWAIT | MSG_NOSIGNAL,
               reinterpret_cast<const sockaddr*>(&group_), group_len_) == sizeof hello) {
      ++c_.tx_hellos;
    }
    --hellos_left_;
    next_hello_ = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  }
  if (pending_.empty() || send_fd_ < 0) {
    pending_.clear();
    return;
  }
  for (const std::string& m :
       encodeSyncMessages(static_cast<uint8_t>(d.syncid), pending_, d.maxlen)) {
    if (sendto(send_fd_, m.data(), m.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
               reinterpret_cast<const sockaddr*>(&group_), group_len_) < 0) {
      ++c_.tx_errors;  // a full socket buffer: IPVS drops the message too
    } else {
      ++c_.tx_messages;
      c_.tx_conns += m[4] & 0xff;
    }
  }
  pending_.clear();
}

void SyncDaemons::receive() {
  if (recv_fd_ < 0) return;
  uint8_t buf[65536];
  SyncMessage msg;
  std::string why;
  for (int i = 0; i < 256; ++i) {  // bounded: the control loop has other work
    const ssize_t n = recv(recv_fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0) break;
    ++c_.rx_messages;
    switch (decodeSyncMessage(buf, static_cast<size_t>(n),
                              static_cast<uint8_t>(cfg_[kSyncBackup].syncid), &msg, &why)) {
      case SyncDecode::kOtherSyncId:
        ++c_.rx_other_syncid;
        continue;
      case SyncDecode::kBad:
        ++c_.rx_bad;
        log("backup: a message dropped: " + why);
        continue;
      case SyncDecode::kOk:
        break;
    }
    c_.rx_unsupported += msg.skipped;
    if (buf[4] == 0) {  // a master's hello: it has just started
      ++c_.rx_hellos;
      if (hooks_.peer_started) hooks_.peer_started();
    }
    for (const SyncConn& s : msg.conns) install(s);
  }
}

SyncDaemons::SvcKey SyncDaemons::keyOf(const SyncConn& s) {
  if (s.fwmark) return {s.fwmark, 0, IpAddr{.family = s.caddr.family}, 0};
  return {0, s.protocol, s.vaddr, hton16(s.vport)};
}

// ip_vs_proc_conn(), for a connection this backup can carry on: its service and real
// server found by address (the master's ids are not this appliance's).
void SyncDaemons::install(const SyncConn& s) {
  ++c_.rx_conns;
  maps();
  const bool udp = s.protocol == kProtoUdp;
  if (s.flags & kConnFTemplate && (s.protocol == kProtoTcp || udp)) {
    installTemplate(s);
    return;
  }
  if ((s.protocol != kProtoTcp && !udp) || s.flags & (kConnFTemplate | kConnFOnePacket) ||
      (!udp && s.state >= static_cast<uint16_t>(ConnState::kUdp))) {
    ++c_.rx_unsupported;  // persistence templates, other protocols, unknown states
    return;
  }
  const SvcKey sk = keyOf(s);
  auto it = dests_.find(DestKey{sk, s.daddr, hton16(s.dport)});
  if (it == dests_.end()) it = dests_.find(DestKey{sk, s.daddr, 0});  // a port-0 server
  if (it == dests_.end()) {
    ++(services_.contains(sk) ? c_.rx_no_server : c_.rx_no_service);
    return;
  }
  if (s.v6()) {
    install<Ipv6Addr>(s, it->second);
  } else {
    install<Ipv4Addr>(s, it->second);
  }
}

// ip_vs_proc_conn() of a connection. (A template: installTemplate.)
template <class Addr>
void SyncDaemons::install(const SyncConn& s, const Dest& dest) {
  constexpr bool kV4 = std::is_same_v<Addr, Ipv4Addr>;
  auto addr = [](const IpAddr& a) {
    if constexpr (kV4) {
      return a.v4();
    } else {
      return a.v6();
    }
  };
  const bool udp = s.protocol == kProtoUdp;
  SyncRecord r;
  r.family = kV4 ? Family::kIpv4 : Family::kIpv6;
  Flow<Addr>& f = r.flowOf<Addr>();
  f = {};
  f.client = addr(s.caddr), f.cport = s.cport;
  f.vip = addr(s.vaddr), f.vport = s.vport;
  f.backend = addr(s.daddr), f.bport = s.dport;
  f.backend_id = dest.id;
  f.flags = dest.fwd == ForwardMethod::kRoute    ? kFlowDirect
            : dest.fwd == ForwardMethod::kTunnel ? kFlowDirect | kFlowTunnel
                                                 : 0;
  f.udp = udp;
  f.state = static_cast<uint32_t>(udp ? ConnState::kUdp : static_cast<ConnState>(s.state));
  f.local = s.has_snat ? addr(s.snat) : f.client;
  f.lport = s.has_snat ? s.snat_port : s.cport;
  // The kernel's bound: INT_MAX jiffies; 0 takes the state's own timeout.
  const uint32_t secs = std::min<uint32_t>(s.timeout_s, 2147483);
  r.timeout_ms = secs ? secs * 1000 : (udp ? 300'000 : 900'000);
  // Where each direction's packets go (PacketCore::ownedElsewhere): the client's
  // endpoint, and for the reply an SNAT port of this appliance's or the endpoint.
  const uint16_t n = hooks_.workers;
  const uint16_t orig = ownerOf(Endpoint<Addr>{f.client, f.cport}, n);
  const uint16_t reply = !s.has_snat ? orig
                         : snat_addrs_.contains(s.snat)
                             ? ownerOfSnatPort(f.lport, n)
                             : ownerOf(Endpoint<Addr>{f.local, f.lport}, n);
  if (!hooks_.give(orig, r)) ++c_.rx_ring_full;
  if (reply != orig && !hooks_.give(reply, r)) ++c_.rx_ring_full;
}

// A persistence template (IP_VS_CONN_F_TEMPLATE): the client's network keeps its real
// server on this appliance too, for the persistence time the master had left.
void SyncDaemons::installTemplate(const SyncConn& s) {
  const SvcKey sk = keyOf(s);
  auto svc = services_.find(sk);
  if (svc == services_.end()) {
    ++c_.rx_no_service;
    return;
  }
  auto it = dests_.find(DestKey{sk, s.daddr, hton16(s.dport)});
  if (it == dests_.end()) it = dests_.find(DestKey{sk, s.daddr, 0});
  if (it == dests_.end()) {
    ++c_.rx_no_server;
    return;
  }
  const uint32_t secs = std::min<uint32_t>(s.timeout_s, 2147483);
  if (hooks_.give_template &&
      hooks_.give_template(svc->second, s.caddr, it->second.id, (secs ? secs : 300) * 1000)) {
    ++c_.rx_templates;
  } else {
    ++c_.rx_templates_refused;
  }
}

}  // namespace meshlb
