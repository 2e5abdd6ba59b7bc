// synflood: spoofed TCP SYNs at a fixed rate, for the SYN flood checks and benchmark.
//   synflood IFACE DST_MAC DST_IP DST_PORT SRC_PREFIX/LEN RATE_PPS SECONDS
// Each SYN has a random source address inside SRC_PREFIX/LEN, a random source port
// and sequence number, valid IPv4 and TCP checksums, an MSS option, and leaves
// through IFACE (AF_PACKET, batches of sendmmsg) from IFACE's MAC to DST_MAC. Prints
// what it sent and the rate it reached; stops by itself after SECONDS.
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "meshlb/bytes.h"
#include "meshlb/checksum.h"

namespace {

using namespace meshlb;

constexpr size_t kFrameLen = 14 + 20 + 24;  // Ethernet, IPv4, TCP with MSS
constexpr unsigned kBatch = 32;

double now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

uint64_t g_rng = 0x9e3779b97f4a7c15ull;
uint32_t rnd() {  // xorshift64*
  g_rng ^= g_rng >> 12;
  g_rng ^= g_rng << 25;
  g_rng ^= g_rng >> 27;
  return static_cast<uint32_t>((g_rng * 0x2545f4914f6cdd1dull) >> 32);
}

bool parseMac(const char* s, uint8_t* mac) {
  unsigned v[6];
  if (std::sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
    return false;
  for (int i = 0; i < 6; ++i) mac[i] = static_cast<uint8_t>(v[i]);
  return true;
}

void buildSyn(uint8_t* f, const uint8_t* dmac, const uint8_t* smac, uint32_t src_be,
              uint32_t dst_be, uint16_t dport) {
  std::memcpy(f, dmac, 6);
  std::memcpy(f + 6, smac, 6);
  storeBe16(f + 12, 0x0800);
  uint8_t* ip = f + 14;
  ip[0] = 0x45;
  ip[1] = 0;
  storeBe16(ip + 2, 20 + 24);
  storeBe16(ip + 4, static_cast<uint16_t>(rnd()));
  storeBe16(ip + 6, 0x4000);  // DF
  ip[8] = 64;
  ip[9] = 6;
  store16(ip + 10, 0);
  store32(ip + 12, src_be);
  store32(ip + 16, dst_be);
  store16(ip + 10, csumFull(ip, 20));
  uint8_t* tcp = ip + 20;
  storeBe16(tcp, static_cast<uint16_t>(1024 + rnd() % 64512));
  storeBe16(tcp + 2, dport);
  storeBe32(tcp + 4, rnd());
  storeBe32(tcp + 8, 0);
  tcp[12] = 6 << 4;  // 24 bytes
  tcp[13] = 0x02;    // SYN
  storeBe16(tcp + 14, 64240);
  store16(tcp + 16, 0);
  store16(tcp + 18, 0);
  tcp[20] = 2;  // MSS 1460
  tcp[21] = 4;
  storeBe16(tcp + 22, 1460);
  // Pseudo-header: addresses, protocol, TCP length.
  uint8_t pseudo[12];
  std::memcpy(pseudo, ip + 12, 8);
  pseudo[8] = 0;
  pseudo[9] = 6;
  storeBe16(pseudo + 10, 24);
  store16(tcp + 16, csumFull(tcp, 24, csumAdd(pseudo, 12)));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 8) {
    std::fprintf(stderr,
                 "usage: synflood IFACE DST_MAC DST_IP DST_PORT SRC_PREFIX/LEN RATE_PPS SECONDS\n");
    return 2;
  }
  uint8_t dmac[6], smac[6];
  in_addr dst{}, prefix{};
  std::string pfx = argv[5];
  const size_t slash = pfx.find('/');
  const int len = slash == std::string::npos ? -1 : std::atoi(pfx.c_str() + slash + 1);
  if (!parseMac(argv[2], dmac) || inet_pton(AF_INET, argv[3], &dst) != 1 || len < 8 || len > 32 ||
      inet_pton(AF_INET, pfx.substr(0, slash).c_str(), &prefix) != 1) {
    std::fprintf(stderr, "synflood: bad MAC, address or prefix\n");
    return 2;
  }
  const uint16_t dport = static_cast<uint16_t>(std::atoi(argv[4]));
  const double rate = std::atof(argv[6]), seconds = std::atof(argv[7]);
  if (rate <= 0 || rate > 1e7 || seconds <= 0 || seconds > 600) {
    std::fprintf(stderr, "synflood: rate 1..10000000 pps, 1..600 seconds\n");
    return 2;
  }
  const int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
  if (fd < 0) {
    std::perror("synflood: socket");
    return 1;
  }
  ifreq ifr{};
  std::snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", argv[1]);
  if (ioctl(fd, SIOCGIFINDEX, &ifr) != 0) {
    std::perror("synflood: interface");
    return 1;
  }
  const int ifindex = ifr.ifr_ifindex;
  if (ioctl(fd, SIOCGIFHWADDR, &ifr) != 0) {
    std::perror("synflood: interface MAC");
    return 1;
  }
  std::memcpy(smac, ifr.ifr_hwaddr.sa_data, 6);
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = ifindex;
  to.sll_halen = 6;
  std::memcpy(to.sll_addr, dmac, 6);
  g_rng ^= static_cast<uint64_t>(getpid()) << 32 ^ static_cast<uint64_t>(now() * 1e6);

  const uint32_t host_mask = len == 32 ? 0 : (0xffffffffu >> len);
  const uint32_t base = ntohl(prefix.s_addr) & ~host_mask;
  std::vector<uint8_t> frames(kBatch * kFrameLen);
  iovec iov[kBatch];
  mmsghdr msgs[kBatch];
  uint64_t sent = 0, failed = 0;
  const double start = now();
  for (;;) {
    const double t = now() - start;
    if (t >= seconds) break;
    const uint64_t due = static_cast<uint64_t>(t * rate);
    if (sent + failed >= due) {
      const timespec pause{0, 50000};
      nanosleep(&pause, nullptr);
      continue;
    }
    const unsigned n = static_cast<unsigned>(std::min<uint64_t>(kBatch, due - sent - failed));
    for (unsigned i = 0; i < n; ++i) {
      uint8_t* f = frames.data() + i * kFrameLen;
      buildSyn(f, dmac, smac, htonl(base | (rnd() & host_mask)), dst.s_addr, dport);
      iov[i] = {f, kFrameLen};
      msgs[i] = {};
      msgs[i].msg_hdr.msg_name = &to;
      msgs[i].msg_hdr.msg_namelen = sizeof(to);
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    const int r = sendmmsg(fd, msgs, n, 0);
    if (r < 0) {
      if (errno != ENOBUFS && errno != EAGAIN) {
        std::perror("synflood: sendmmsg");
        return 1;
      }
      failed += n;
    } else {
      sent += static_cast<unsigned>(r);
      failed += n - static_cast<unsigned>(r);
    }
  }
  const double took = now() - start;
  std::printf("synflood: %llu SYNs in %.1f s (%.0f pps, target %.0f), %llu not sent\n",
              static_cast<unsigned long long>(sent), took, static_cast<double>(sent) / took, rate,
              static_cast<unsigned long long>(failed));
  close(fd);
  return 0;
}
