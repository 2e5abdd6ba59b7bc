// In-place NAT of parsed packets with incremental checksum updates (RFC 1624).
//
// A rewrite names the new source and/or destination endpoint. TCP and UDP
// checksums follow the pseudo-header; an IPv4 UDP checksum of zero ("none")
// stays zero. ICMP errors are rewritten the way IPVS does it: the outer
// addresses, the quoted datagram's addresses and ports (and its IPv4 header
// checksum and, where quoted, its L4 checksum), then the ICMP checksum is
// recomputed over the whole message.
#pragma once

#include <cstdint>

#include "meshlb/flow_table.h"
#include "meshlb/parse.h"

namespace meshlb {

template <class Addr>
struct Endpoint {
  Addr addr;
  uint16_t port = 0;  // network order; ignored for ICMP outer headers
};

template <class Addr>
struct Rewrite {
  bool set_src = false;
  bool set_dst = false;
  Endpoint<Addr> src;
  Endpoint<Addr> dst;
};

using Rewrite4 = Rewrite<Ipv4Addr>;
using Rewrite6 = Rewrite<Ipv6Addr>;

// TCP/UDP datagram (first fragment or unfragmented; ports are not touched in a
// non-first fragment, addresses are). `p` must come from parsePacket on `frame`.
void natRewrite(uint8_t* frame, const ParsedPacket& p, const Rewrite4& rw);
void natRewrite(uint8_t* frame, const ParsedPacket& p, const Rewrite6& rw);

// ICMP/ICMPv6 error (p.icmp_error): `outer` changes the outer addresses,
// `inner` the quoted datagram's endpoints.
void natRewriteIcmpError(uint8_t* frame, const ParsedPacket& p, const Rewrite4& outer,
                         const Rewrite4& inner);
void natRewriteIcmpError(uint8_t* frame, const ParsedPacket& p, const Rewrite6& outer,
                         const Rewrite6& inner);

// Recomputes from scratch every checksum natRewrite maintains and reports
// whether the stored values agree: the oracle for tests and the fuzzer.
bool checksumsValid(const uint8_t* frame, const ParsedPacket& p);

}  // namespace meshlb
