#!/usr/bin/python3
"""Generates tests/data/golden_packets.txt with scapy, an independent packet tool.

Regenerate with:  /usr/bin/python3 tests/data/gen_golden.py > tests/data/golden_packets.txt

Every packet is built by scapy with its checksums computed by scapy (fields left
unset), so the expected outputs of the NAT and VXLAN tests check meshlb's
incremental checksum updates against full recomputations. Addresses are from
198.18.0.0/15 and 2001:db8::/32 only.
"""
from scapy.all import (ARP, GRE, ICMP, IP, TCP, UDP, VXLAN, Dot1AD, Dot1Q, Ether, IPerror,
                       IPOption_NOP, IPOption_RR, IPv6, IPv6ExtHdrDestOpt,
                       IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting,
                       ICMPv6DestUnreach, ICMPv6ND_NS, ICMPv6PacketTooBig, IPerror6, Raw, TCPerror,
                       UDPerror, fragment, fragment6, raw)

CLIENT_MAC, LB_MAC, NODE_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"
CLIENT, VIP, LB, TASK = "198.18.0.10", "198.18.0.100", "198.19.0.1", "198.19.1.2"
CLIENT6, VIP6, LB6, TASK6 = "2001:db8::10", "2001:db8::100", "2001:db8:1::1", "2001:db8:2::2"
E = Ether(src=CLIENT_MAC, dst=LB_MAC)
PAYLOAD = b"meshlb-golden-payload"
out = []


def emit(name, pkt):
    out.append("%s %s" % (name, raw(pkt).hex()))


# ---- parser inputs -------------------------------------------------------------
emit("tcp4_syn", E / IP(src=CLIENT, dst=VIP) / TCP(sport=40000, dport=8080, flags="S", seq=1))
emit("tcp4_options", E / IP(src=CLIENT, dst=VIP, options=[IPOption_RR(routers=["198.18.0.1"]),
                                                           IPOption_NOP()]) /
     TCP(sport=40001, dport=8080, flags="PA", options=[("MSS", 1460), ("NOP", None),
                                                       ("WScale", 7)]) / PAYLOAD)
emit("udp4", E / IP(src=CLIENT, dst=VIP) / UDP(sport=5000, dport=53) / PAYLOAD)
emit("udp4_zero_csum", E / IP(src=CLIENT, dst=VIP) / UDP(sport=5001, dport=53, chksum=0) / PAYLOAD)
emit("vlan_tcp4", Ether(src=CLIENT_MAC, dst=LB_MAC) / Dot1Q(vlan=100) /
     IP(src=CLIENT, dst=VIP) / TCP(sport=40002, dport=8080, flags="A"))
emit("qinq_udp4", Ether(src=CLIENT_MAC, dst=LB_MAC) / Dot1AD(vlan=10) / Dot1Q(vlan=20) /
     IP(src=CLIENT, dst=VIP) / UDP(sport=5002, dport=53) / PAYLOAD)
frags = fragment(IP(src=CLIENT, dst=VIP, id=77) / UDP(sport=5003, dport=53) / (b"x" * 200),
                 fragsize=96)
emit("frag4_first", E / frags[0])
emit("frag4_later", E / frags[1])
# A TCP first fragment (MF set, offset 0: its header is whole) and DF on a plain segment:
# the inline fast path must hand the first to the generic parser and may take the second.
tfrags = fragment(IP(src=CLIENT, dst=VIP, id=78) / TCP(sport=40004, dport=8080, flags="PA") /
                  (b"z" * 200), fragsize=96)
emit("frag4_first_tcp", E / tfrags[0])
emit("tcp4_df", E / IP(src=CLIENT, dst=VIP, flags="DF") / TCP(sport=40005, dport=8080, flags="A"))
emit("tcp6", E / IPv6(src=CLIENT6, dst=VIP6) / TCP(sport=40003, dport=8080, flags="S"))
emit("ipv6_ext_udp", E / IPv6(src=CLIENT6, dst=VIP6) / IPv6ExtHdrHopByHop() /
     IPv6ExtHdrRouting(addresses=[]) / IPv6ExtHdrDestOpt() / UDP(sport=5004, dport=53) / PAYLOAD)
f6 = fragment6(IPv6(src=CLIENT6, dst=VIP6) / IPv6ExtHdrFragment(id=5) /
               UDP(sport=5005, dport=53) / (b"y" * 300), 200)
emit("frag6_first", E / f6[0])
emit("frag6_later", E / f6[1])
emit("icmp4_port_unreach", Ether(src=NODE_MAC, dst=LB_MAC) / IP(src=TASK, dst=LB) /
     ICMP(type=3, code=3) / IPerror(src=LB, dst=TASK) / UDPerror(sport=61000, dport=53))
emit("icmp4_frag_needed_tcp", Ether(src=NODE_MAC, dst=LB_MAC) / IP(src=TASK, dst=LB) /
     ICMP(type=3, code=4, nexthopmtu=1400) / IPerror(src=LB, dst=TASK, flags="DF") /
     TCPerror(sport=61001, dport=80, flags="A", seq=7, ack=9))
emit("icmp6_too_big_tcp", Ether(src=NODE_MAC, dst=LB_MAC) / IPv6(src=TASK6, dst=LB6) /
     ICMPv6PacketTooBig(mtu=1280) / IPerror6(src=LB6, dst=TASK6) /
     TCPerror(sport=61002, dport=80, flags="A"))
emit("icmp4_echo", E / IP(src=CLIENT, dst=LB) / ICMP(type=8, id=1, seq=1) / PAYLOAD)
emit("vxlan_tcp4", Ether(src=NODE_MAC, dst=LB_MAC) / IP(src="198.19.0.2", dst=LB) /
     UDP(sport=50123, dport=4789, chksum=0) / VXLAN(vni=4097) /
     Ether(src="02:42:0a:00:00:05", dst="02:42:0a:00:00:02") /
     IP(src=TASK, dst=LB) / TCP(sport=80, dport=61000, flags="SA"))
emit("arp", Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=CLIENT, pdst=LB))

# ---- malformed inputs ------------------------------------------------------------
emit("bad_ipv4_checksum", E / IP(src=CLIENT, dst=VIP, chksum=0x1234) / TCP(sport=1, dport=2))
emit("bad_ipv4_ihl", E / IP(src=CLIENT, dst=VIP, ihl=4) / TCP(sport=1, dport=2))
emit("bad_ipv4_version", E / IP(src=CLIENT, dst=VIP, version=5) / TCP(sport=1, dport=2))
emit("bad_ipv4_total_length_short", E / IP(src=CLIENT, dst=VIP, len=12) / TCP(sport=1, dport=2))
emit("bad_ipv4_total_length_long", E / IP(src=CLIENT, dst=VIP, len=1000) / TCP(sport=1, dport=2))
emit("bad_ipv4_ping_of_death", E / IP(src=CLIENT, dst=VIP, frag=8189, proto=17) / (b"z" * 100))
emit("bad_tcp_data_offset", E / IP(src=CLIENT, dst=VIP) / TCP(sport=1, dport=2, dataofs=3))
emit("bad_tcp_data_offset_long", E / IP(src=CLIENT, dst=VIP) / TCP(sport=1, dport=2, dataofs=15))
emit("bad_udp_length_short", E / IP(src=CLIENT, dst=VIP) / UDP(sport=1, dport=2, len=4) / PAYLOAD)
emit("bad_udp_length_long", E / IP(src=CLIENT, dst=VIP) / UDP(sport=1, dport=2, len=900) / PAYLOAD)
emit("bad_vxlan_flags", Ether(src=NODE_MAC, dst=LB_MAC) / IP(src="198.19.0.2", dst=LB) /
     UDP(sport=50123, dport=4789) / VXLAN(vni=4097, flags=0) /
     Ether() / IP(src=TASK, dst=LB) / TCP())
emit("bad_vxlan_truncated", Ether(src=NODE_MAC, dst=LB_MAC) / IP(src="198.19.0.2", dst=LB) /
     UDP(sport=50123, dport=4789) / VXLAN(vni=4097))
emit("bad_ipv6_hbh_not_first", E / IPv6(src=CLIENT6, dst=VIP6) / IPv6ExtHdrDestOpt() /
     IPv6ExtHdrHopByHop() / UDP(sport=1, dport=2))
emit("bad_ipv6_chain_too_long", E / IPv6(src=CLIENT6, dst=VIP6) /
     IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() /
     IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() /
     IPv6ExtHdrDestOpt() / UDP(sport=1, dport=2))
emit("bad_ipv6_payload_long", E / IPv6(src=CLIENT6, dst=VIP6, plen=500) / UDP(sport=1, dport=2))
emit("bad_vlan_three_tags", Ether(src=CLIENT_MAC, dst=LB_MAC) / Dot1AD(vlan=1) / Dot1Q(vlan=2) /
     Dot1Q(vlan=3) / IP(src=CLIENT, dst=VIP) / UDP(sport=1, dport=2))
emit("bad_icmp_inner_truncated", Ether(src=NODE_MAC, dst=LB_MAC) / IP(src=TASK, dst=LB) /
     ICMP(type=3, code=3) / raw(IPerror(src=LB, dst=TASK) / UDPerror(sport=61000, dport=53))[:24])
emit("bad_icmp_inner_version", Ether(src=NODE_MAC, dst=LB_MAC) / IP(src=TASK, dst=LB) /
     ICMP(type=3, code=3) / IPerror(src=LB, dst=TASK, version=7) / UDPerror(sport=1, dport=2))

# ---- NAT: input and expected output (checksums recomputed by scapy) -------------------
def nat_pair(name, before, after):
    emit(name + ".in", before)
    emit(name + ".out", after)


nat_pair("nat_tcp4_dnat",
         E / IP(src=CLIENT, dst=VIP, id=1) / TCP(sport=40000, dport=8080, flags="S") / PAYLOAD,
         E / IP(src=CLIENT, dst=TASK, id=1) / TCP(sport=40000, dport=80, flags="S") / PAYLOAD)
nat_pair("nat_tcp4_fullnat",
         E / IP(src=CLIENT, dst=VIP, id=2) / TCP(sport=40000, dport=8080, flags="PA") / PAYLOAD,
         E / IP(src=LB, dst=TASK, id=2) / TCP(sport=61000, dport=80, flags="PA") / PAYLOAD)
nat_pair("nat_tcp4_reply",
         E / IP(src=TASK, dst=LB, id=3) / TCP(sport=80, dport=61000, flags="SA") / PAYLOAD,
         E / IP(src=VIP, dst=CLIENT, id=3) / TCP(sport=8080, dport=40000, flags="SA") / PAYLOAD)
nat_pair("nat_tcp4_options_snat",
         E / IP(src=CLIENT, dst=VIP, options=[IPOption_RR(routers=["198.18.0.1"])]) /
         TCP(sport=40001, dport=8080, options=[("MSS", 1460)]) / PAYLOAD,
         E / IP(src=LB, dst=VIP, options=[IPOption_RR(routers=["198.18.0.1"])]) /
         TCP(sport=61001, dport=8080, options=[("MSS", 1460)]) / PAYLOAD)
nat_pair("nat_vlan_tcp4_dnat",
         E / Dot1Q(vlan=100) / IP(src=CLIENT, dst=VIP) / TCP(sport=40002, dport=8080),
         E / Dot1Q(vlan=100) / IP(src=CLIENT, dst=TASK) / TCP(sport=40002, dport=80))
nat_pair("nat_udp4_fullnat",
         E / IP(src=CLIENT, dst=VIP) / UDP(sport=5000, dport=53) / PAYLOAD,
         E / IP(src=LB, dst=TASK) / UDP(sport=61002, dport=5353) / PAYLOAD)
nat_pair("nat_udp4_zero_csum",
         E / IP(src=CLIENT, dst=VIP) / UDP(sport=5001, dport=53, chksum=0) / PAYLOAD,
         E / IP(src=LB, dst=TASK) / UDP(sport=61003, dport=5353, chksum=0) / PAYLOAD)
nat_pair("nat_tcp6_fullnat",
         E / IPv6(src=CLIENT6, dst=VIP6) / TCP(sport=40003, dport=8080, flags="S") / PAYLOAD,
         E / IPv6(src=LB6, dst=TASK6) / TCP(sport=61004, dport=80, flags="S") / PAYLOAD)
nat_pair("nat_udp6_dnat",
         E / IPv6(src=CLIENT6, dst=VIP6) / UDP(sport=5004, dport=53) / PAYLOAD,
         E / IPv6(src=CLIENT6, dst=TASK6) / UDP(sport=5004, dport=5353) / PAYLOAD)
nat_pair("nat_frag4_first_dnat", E / frags[0],
         E / fragment(IP(src=CLIENT, dst=TASK, id=77) / UDP(sport=5003, dport=5353) / (b"x" * 200),
                      fragsize=96)[0])
# ICMP errors from a task about a full-NAT'd connection, translated for the client.
nat_pair("nat_icmp4_port_unreach",
         Ether(src=NODE_MAC, dst=LB_MAC) / IP(src=TASK, dst=LB, id=9) / ICMP(type=3, code=3) /
         IPerror(src=LB, dst=TASK, id=4) / UDPerror(sport=61002, dport=5353) / PAYLOAD,
         Ether(src=NODE_MAC, dst=LB_MAC) / IP(src=VIP, dst=CLIENT, id=9) / ICMP(type=3, code=3) /
         IPerror(src=CLIENT, dst=VIP, id=4) / UDPerror(sport=5000, dport=53) / PAYLOAD)
nat_pair("nat_icmp4_frag_needed_tcp",
         Ether(src=NODE_MAC, dst=LB_MAC) / IP(src=TASK, dst=LB) / ICMP(type=3, code=4, nexthopmtu=1400) /
         IPerror(src=LB, dst=TASK, flags="DF") / TCPerror(sport=61000, dport=80, flags="A"),
         Ether(src=NODE_MAC, dst=LB_MAC) / IP(src=VIP, dst=CLIENT) / ICMP(type=3, code=4, nexthopmtu=1400) /
         IPerror(src=CLIENT, dst=VIP, flags="DF") / TCPerror(sport=40000, dport=8080, flags="A"))
nat_pair("nat_icmp6_too_big_tcp",
         Ether(src=NODE_MAC, dst=LB_MAC) / IPv6(src=TASK6, dst=LB6) / ICMPv6PacketTooBig(mtu=1280) /
         IPerror6(src=LB6, dst=TASK6) / TCPerror(sport=61004, dport=80, flags="A"),
         Ether(src=NODE_MAC, dst=LB_MAC) / IPv6(src=VIP6, dst=CLIENT6) / ICMPv6PacketTooBig(mtu=1280) /
         IPerror6(src=CLIENT6, dst=VIP6) / TCPerror(sport=40003, dport=8080, flags="A"))
nat_pair("nat_icmp6_port_unreach",
         Ether(src=NODE_MAC, dst=LB_MAC) / IPv6(src=TASK6, dst=LB6) / ICMPv6DestUnreach(code=4) /
         IPerror6(src=LB6, dst=TASK6) / UDPerror(sport=61005, dport=5353) / PAYLOAD,
         Ether(src=NODE_MAC, dst=LB_MAC) / IPv6(src=VIP6, dst=CLIENT6) / ICMPv6DestUnreach(code=4) /
         IPerror6(src=CLIENT6, dst=VIP6) / UDPerror(sport=5004, dport=53) / PAYLOAD)

# ---- VXLAN: the full-NAT'd packet encapsulated towards node 2 -----------------------
inner = Ether(src=LB_MAC, dst="02:42:0a:00:00:05") / IP(src=LB, dst=TASK, id=2) / \
    TCP(sport=61000, dport=80, flags="PA") / PAYLOAD
emit("vxlan_encap.inner", inner)
emit("vxlan_encap.out", Ether(src=LB_MAC, dst=NODE_MAC) /
     IP(src="198.19.0.1", dst="198.19.0.2", id=0, flags="DF", ttl=64) /
     UDP(sport=50000, dport=4789, chksum=0) / VXLAN(vni=4097, flags=0x08) / inner)

# ---- too big: a 1500-byte DF packet that cannot take 50 bytes of VXLAN -----------------
big = E / IP(src=CLIENT, dst=VIP, flags="DF") / TCP(sport=40000, dport=8080, flags="A") / (b"b" * 1460)
emit("too_big4.in", big)
emit("too_big4.out", Ether(src=LB_MAC, dst=CLIENT_MAC) /
     IP(src=VIP, dst=CLIENT, tos=0xc0, id=0, flags=0, ttl=64) /
     ICMP(type=3, code=4, nexthopmtu=1450) / Raw(raw(big[IP])[:548]))
big6 = E / IPv6(src=CLIENT6, dst=VIP6) / TCP(sport=40003, dport=8080, flags="A") / (b"c" * 1440)
emit("too_big6.in", big6)
emit("too_big6.out", Ether(src=LB_MAC, dst=CLIENT_MAC) / IPv6(src=VIP6, dst=CLIENT6, hlim=64) /
     ICMPv6PacketTooBig(mtu=1450) / Raw(raw(big6[IPv6])[:1232]))

# ---- packet core: what the worker decides, frame in and frame out -------------------
# The appliance: port 0 (LB0_MAC) towards the client, port 1 (LB1_MAC, SNAT address
# LB) towards three tasks. tests/unit/packet_core_test.cc builds the same snapshot.
LB0_MAC, LB1_MAC = LB_MAC, "02:00:00:00:01:02"
TASKS = ["198.19.1.1", "198.19.1.2", "198.19.1.3"]
TASK_MACS = ["02:00:00:00:01:11", "02:00:00:00:01:12", "02:00:00:00:01:13"]
T1, T1_MAC = TASKS[0], TASK_MACS[0]
FROM_CLIENT = Ether(src=CLIENT_MAC, dst=LB0_MAC)
SNAT_PORT = 1025  # a lone worker's first SNAT port
emit("core_syn.in", FROM_CLIENT / IP(src=CLIENT, dst=VIP, id=1) /
     TCP(sport=40000, dport=8080, flags="S", seq=1))
emit("core_syn_fullnat.out", Ether(src=LB1_MAC, dst=T1_MAC) / IP(src=LB, dst=T1, id=1, ttl=63) /
     TCP(sport=SNAT_PORT, dport=80, flags="S", seq=1))
emit("core_syn_dnat.out", Ether(src=LB1_MAC, dst=T1_MAC) / IP(src=CLIENT, dst=T1, id=1, ttl=63) /
     TCP(sport=40000, dport=80, flags="S", seq=1))
# The next hop not yet resolved: to the task side's twin, addressed to it.
emit("core_syn_unresolved.out", Ether(src=CLIENT_MAC, dst=LB1_MAC) /
     IP(src=LB, dst=T1, id=1, ttl=63) / TCP(sport=SNAT_PORT, dport=80, flags="S", seq=1))
emit("core_syn_ttl1.in", FROM_CLIENT / IP(src=CLIENT, dst=VIP, id=1, ttl=1) /
     TCP(sport=40000, dport=8080, flags="S", seq=1))
emit("core_synack_fullnat.in", Ether(src=T1_MAC, dst=LB1_MAC) / IP(src=T1, dst=LB, id=2) /
     TCP(sport=80, dport=SNAT_PORT, flags="SA", seq=100, ack=2))
emit("core_synack_dnat.in", Ether(src=T1_MAC, dst=LB1_MAC) / IP(src=T1, dst=CLIENT, id=2) /
     TCP(sport=80, dport=40000, flags="SA", seq=100, ack=2))
emit("core_synack.out", Ether(src=LB0_MAC, dst=CLIENT_MAC) / IP(src=VIP, dst=CLIENT, id=2, ttl=63) /
     TCP(sport=8080, dport=40000, flags="SA", seq=100, ack=2))
emit("core_ack.in", FROM_CLIENT / IP(src=CLIENT, dst=VIP, id=3) /
     TCP(sport=40000, dport=8080, flags="A", seq=2, ack=101) / PAYLOAD)
emit("core_ack_fullnat.out", Ether(src=LB1_MAC, dst=T1_MAC) / IP(src=LB, dst=T1, id=3, ttl=63) /
     TCP(sport=SNAT_PORT, dport=80, flags="A", seq=2, ack=101) / PAYLOAD)
# A task's "fragmentation needed" about a packet the appliance sent it: to the
# client, from the VIP, about the client's own packet.
emit("core_icmp_from_task.in", Ether(src=T1_MAC, dst=LB1_MAC) / IP(src=T1, dst=LB, id=4) /
     ICMP(type=3, code=4, nexthopmtu=1400) / IPerror(src=LB, dst=T1, id=1, flags="DF") /
     TCPerror(sport=SNAT_PORT, dport=80, flags="A", seq=2))
emit("core_icmp_from_task.out", Ether(src=LB0_MAC, dst=CLIENT_MAC) /
     IP(src=VIP, dst=CLIENT, id=4, ttl=63) / ICMP(type=3, code=4, nexthopmtu=1400) /
     IPerror(src=CLIENT, dst=VIP, id=1, flags="DF") / TCPerror(sport=40000, dport=8080, flags="A", seq=2))
# The client's "port unreachable" about a packet the VIP sent it: to the task,
# from the SNAT address, about the task's own packet.
emit("core_icmp_from_client.in", FROM_CLIENT / IP(src=CLIENT, dst=VIP, id=5) /
     ICMP(type=3, code=3) / IPerror(src=VIP, dst=CLIENT, id=6) /
     TCPerror(sport=8080, dport=40000, flags="A", seq=100))
emit("core_icmp_from_client.out", Ether(src=LB1_MAC, dst=T1_MAC) / IP(src=LB, dst=T1, id=5, ttl=63) /
     ICMP(type=3, code=3) / IPerror(src=T1, dst=LB, id=6) /
     TCPerror(sport=80, dport=SNAT_PORT, flags="A", seq=100))
emit("core_udp.in", FROM_CLIENT / IP(src=CLIENT, dst=VIP, id=7) / UDP(sport=5000, dport=53) / PAYLOAD)
emit("core_udp_fullnat.out", Ether(src=LB1_MAC, dst=T1_MAC) / IP(src=LB, dst=T1, id=7, ttl=63) /
     UDP(sport=SNAT_PORT, dport=53) / PAYLOAD)
# Transit: a task's own connection to an outside host's port 8080, and a client's to a
# task's own address on 8080, are routed untouched (TTL and MACs only) whatever their mark.
emit("core_transit_out.in", Ether(src=T1_MAC, dst=LB1_MAC) / IP(src=T1, dst=CLIENT, id=8) /
     TCP(sport=41000, dport=8080, flags="S"))
emit("core_transit_out.out", Ether(src=LB0_MAC, dst=CLIENT_MAC) / IP(src=T1, dst=CLIENT, id=8, ttl=63) /
     TCP(sport=41000, dport=8080, flags="S"))
emit("core_transit_in.in", FROM_CLIENT / IP(src=CLIENT, dst=TASKS[1], id=9) /
     TCP(sport=40002, dport=8080, flags="S"))
emit("core_transit_in.out", Ether(src=LB1_MAC, dst=TASK_MACS[1]) /
     IP(src=CLIENT, dst=TASKS[1], id=9, ttl=63) / TCP(sport=40002, dport=8080, flags="S"))
emit("core_transit_unroutable.in", FROM_CLIENT / IP(src=CLIENT, dst="203.0.113.9", id=10) /
     TCP(sport=40003, dport=8080, flags="S"))
# The overlay (VNI 4097): the appliance's vxlan device (VTEP LB on lb1, MAC OV_MAC,
# 198.18.128.2/24) and a task 198.18.128.11 on node 198.19.0.2, full NAT to the
# appliance's overlay address as Swarm's ingress does. The outer UDP source port
# comes from the flow hash: the test checks its range and compares the rest.
OV_MAC, OV_LB, OT1, OT1_MAC, NODE = "02:42:c6:12:80:02", "198.18.128.2", "198.18.128.11", \
    "02:42:c6:12:80:0b", "198.19.0.2"


def vxlan_to_node(inner):
    return Ether(src=LB1_MAC, dst=NODE_MAC) / IP(src=LB, dst=NODE, id=0, flags="DF", ttl=64) / \
        UDP(sport=49152, dport=4789, chksum=0) / VXLAN(vni=4097, flags=0x08) / inner


emit("core_ov_syn.out", vxlan_to_node(Ether(src=OV_MAC, dst=OT1_MAC) /
     IP(src=OV_LB, dst=OT1, id=1, ttl=63) / TCP(sport=SNAT_PORT, dport=80, flags="S", seq=1)))
emit("core_ov_synack.in", Ether(src=NODE_MAC, dst=LB1_MAC) / IP(src=NODE, dst=LB, id=0) /
     UDP(sport=50000, dport=4789, chksum=0) / VXLAN(vni=4097, flags=0x08) /
     Ether(src=OT1_MAC, dst=OV_MAC) / IP(src=OT1, dst=OV_LB, id=2) /
     TCP(sport=80, dport=SNAT_PORT, flags="SA", seq=100, ack=2))
emit("core_ov_unknown_vni.in", Ether(src=NODE_MAC, dst=LB1_MAC) / IP(src=NODE, dst=LB, id=0) /
     UDP(sport=50000, dport=4789, chksum=0) / VXLAN(vni=4098, flags=0x08) /
     Ether(src=OT1_MAC, dst=OV_MAC) / IP(src=OT1, dst=OV_LB, id=2) /
     TCP(sport=80, dport=SNAT_PORT, flags="SA", seq=100, ack=2))
# A task's ICMP error (fragmentation needed) from inside the overlay, about the SYN the
# appliance sent it: decapsulated, translated for the client (core_icmp_from_task.out).
emit("core_ov_icmp.in", Ether(src=NODE_MAC, dst=LB1_MAC) / IP(src=NODE, dst=LB, id=0) /
     UDP(sport=50000, dport=4789, chksum=0) / VXLAN(vni=4097, flags=0x08) /
     Ether(src=OT1_MAC, dst=OV_MAC) / IP(src=OT1, dst=OV_LB, id=4) /
     ICMP(type=3, code=4, nexthopmtu=1400) / IPerror(src=OV_LB, dst=OT1, id=1, flags="DF") /
     TCPerror(sport=SNAT_PORT, dport=80, flags="A", seq=2))
# The same overlay over an IPv6 underlay (its vxlan device's local address 2001:db8:1::1
# on lb1, the node 2001:db8:1::2): 70 bytes of outer headers, the UDP checksum computed
# (Linux's vxlan over IPv6 drops a zero one). The flow label and the source port come
# from the flow hash: the test masks them and the checksum, and checks the checksum.
LB6U, NODE6U = "2001:db8:1::1", "2001:db8:1::2"
emit("core_ov6u_syn.out", Ether(src=LB1_MAC, dst=NODE_MAC) /
     IPv6(src=LB6U, dst=NODE6U, hlim=64, fl=0) / UDP(sport=49152, dport=4789) /
     VXLAN(vni=4097, flags=0x08) / Ether(src=OV_MAC, dst=OT1_MAC) /
     IP(src=OV_LB, dst=OT1, id=1, ttl=63) / TCP(sport=SNAT_PORT, dport=80, flags="S", seq=1))
emit("core_ov6u_synack.in", Ether(src=NODE_MAC, dst=LB1_MAC) / IPv6(src=NODE6U, dst=LB6U) /
     UDP(sport=50000, dport=4789) / VXLAN(vni=4097, flags=0x08) /
     Ether(src=OT1_MAC, dst=OV_MAC) / IP(src=OT1, dst=OV_LB, id=2) /
     TCP(sport=80, dport=SNAT_PORT, flags="SA", seq=100, ack=2))
# Direct routing (-g) over the overlay: the inner packet is the client's, untouched
# but for its TTL and MACs; the task has the VIP and answers the client itself.
emit("core_ov_dsr.out", vxlan_to_node(Ether(src=OV_MAC, dst=OT1_MAC) /
     IP(src=CLIENT, dst=VIP, id=1, ttl=63) / TCP(sport=40000, dport=8080, flags="S", seq=1)))
# Swarm's host-side DNAT (DOCKER-INGRESS): the client's SYN to the appliance's own
# 198.18.0.1:9090, DNAT'd to the VIP's published port (then IPVS) or straight to a task.
emit("core_dnat_syn.in", FROM_CLIENT / IP(src=CLIENT, dst="198.18.0.1", id=1) /
     TCP(sport=40000, dport=9090, flags="S", seq=1))
emit("core_dnat_synack.out", Ether(src=LB0_MAC, dst=CLIENT_MAC) /
     IP(src="198.18.0.1", dst=CLIENT, id=2, ttl=63) /
     TCP(sport=9090, dport=40000, flags="SA", seq=100, ack=2))
emit("core_dnat_direct.out", Ether(src=LB1_MAC, dst=TASK_MACS[2]) /
     IP(src=CLIENT, dst=TASKS[2], id=1, ttl=63) / TCP(sport=40000, dport=80, flags="S", seq=1))
# Tunnelling (-i) to task 1 (ip_vs_tunnel_xmit): the client's packet as it came, inside
# an outer IPv4 header from the task side's address, with the inner TOS, TTL and DF (id
# 0 with DF). GUE's UDP source port comes from the flow hash: the tests mask it.
TUN_INNER = IP(src=CLIENT, dst=VIP, id=1, flags="DF", tos=0x10) / \
    TCP(sport=40000, dport=8080, flags="S", seq=1) / PAYLOAD
TUN_OUTER = Ether(src=LB1_MAC, dst=T1_MAC) / IP(src=LB, dst=T1, id=0, flags="DF", tos=0x10)
emit("core_tun.in", FROM_CLIENT / TUN_INNER)
emit("core_tun_ipip.out", TUN_OUTER / TUN_INNER)
emit("core_tun_gre.out", TUN_OUTER / GRE(proto=0x0800) / TUN_INNER)
emit("core_tun_gre_csum.out", TUN_OUTER / GRE(chksum_present=1, proto=0x0800) / TUN_INNER)
emit("core_tun_gue.out", TUN_OUTER / UDP(sport=0, dport=6080, chksum=0) /
     Raw(b"\x00\x04\x00\x00") / TUN_INNER)
# schedule_icmp: a client's "fragmentation needed" about a -g server's SYN-ACK (VIP:8080
# to the client), which the appliance never saw.
emit("core_icmp_client.in", FROM_CLIENT / IP(src=CLIENT, dst=VIP, id=9) /
     ICMP(type=3, code=4, nexthopmtu=1400) / IPerror(src=VIP, dst=CLIENT, id=3, flags="DF") /
     TCPerror(sport=8080, dport=40000, flags="SA", seq=100, ack=2))
emit("core_icmp_client_dsr.out", Ether(src=LB1_MAC, dst=T1_MAC) / IP(src=CLIENT, dst=VIP, id=9, ttl=63) /
     ICMP(type=3, code=4, nexthopmtu=1400) / IPerror(src=VIP, dst=CLIENT, id=3, flags="DF") /
     TCPerror(sport=8080, dport=40000, flags="SA", seq=100, ack=2))
# nat_icmp_send: a -m task's segment no connection has (to the client, not NAT'd back),
# and the port unreachable it gets from the task side's address, quoting it.
STRAY = IP(src=T1, dst=CLIENT, id=7) / TCP(sport=80, dport=40000, flags="PA", seq=5, ack=9) / PAYLOAD
emit("core_stray.in", Ether(src=T1_MAC, dst=LB1_MAC) / STRAY)
emit("core_stray_unreach.out", Ether(src=LB1_MAC, dst=T1_MAC) /
     IP(src=LB, dst=T1, tos=0xc0, id=0, ttl=64) / ICMP(type=3, code=3) / raw(STRAY))
emit("core_stray_rst.in", Ether(src=T1_MAC, dst=LB1_MAC) /
     IP(src=T1, dst=CLIENT, id=8) / TCP(sport=80, dport=40000, flags="R", seq=5))
emit("core_ssh.in", FROM_CLIENT / IP(src=CLIENT, dst="198.18.0.1") / TCP(sport=40001, dport=22, flags="S"))
# Another appliance's sync daemon (IPVS's group 224.0.0.81, port 8848): the kernel's.
emit("sync_mcast.in", Ether(src=CLIENT_MAC, dst="01:00:5e:00:00:51") /
     IP(src="198.18.0.2", dst="224.0.0.81", ttl=8) / UDP(sport=8848, dport=8848) / PAYLOAD)

# IPv6 through the same appliance: lb0 2001:db8::1/64 (the VIP 2001:db8::100/128 an
# alias), lb1 2001:db8:1::1/64 (the SNAT address) towards tasks 2001:db8:1::11-13.
C6, V6, S6 = CLIENT6, VIP6, "2001:db8:1::1"
T6 = ["2001:db8:1::11", "2001:db8:1::12", "2001:db8:1::13"]
emit("core6_syn.in", FROM_CLIENT / IPv6(src=C6, dst=V6) / TCP(sport=40000, dport=8080, flags="S", seq=1))
emit("core6_syn_fullnat.out", Ether(src=LB1_MAC, dst=T1_MAC) / IPv6(src=S6, dst=T6[0], hlim=63) /
     TCP(sport=SNAT_PORT, dport=80, flags="S", seq=1))
emit("core6_syn_masq.out", Ether(src=LB1_MAC, dst=T1_MAC) / IPv6(src=C6, dst=T6[0], hlim=63) /
     TCP(sport=40000, dport=80, flags="S", seq=1))
emit("core6_synack_fullnat.in", Ether(src=T1_MAC, dst=LB1_MAC) / IPv6(src=T6[0], dst=S6) /
     TCP(sport=80, dport=SNAT_PORT, flags="SA", seq=100, ack=2))
emit("core6_synack_masq.in", Ether(src=T1_MAC, dst=LB1_MAC) / IPv6(src=T6[0], dst=C6) /
     TCP(sport=80, dport=40000, flags="SA", seq=100, ack=2))
emit("core6_synack.out", Ether(src=LB0_MAC, dst=CLIENT_MAC) / IPv6(src=V6, dst=C6, hlim=63) /
     TCP(sport=8080, dport=40000, flags="SA", seq=100, ack=2))
emit("core6_ack.in", FROM_CLIENT / IPv6(src=C6, dst=V6) /
     TCP(sport=40000, dport=8080, flags="A", seq=2, ack=101) / PAYLOAD)
emit("core6_ack_fullnat.out", Ether(src=LB1_MAC, dst=T1_MAC) / IPv6(src=S6, dst=T6[0], hlim=63) /
     TCP(sport=SNAT_PORT, dport=80, flags="A", seq=2, ack=101) / PAYLOAD)
# Extension headers before TCP (hop-by-hop, destination options): carried as they are.
emit("core6_syn_ext.in", FROM_CLIENT / IPv6(src=C6, dst=V6) / IPv6ExtHdrHopByHop() /
     IPv6ExtHdrDestOpt() / TCP(sport=40000, dport=8080, flags="S", seq=1))
emit("core6_syn_ext_fullnat.out", Ether(src=LB1_MAC, dst=T1_MAC) / IPv6(src=S6, dst=T6[0], hlim=63) /
     IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / TCP(sport=SNAT_PORT, dport=80, flags="S", seq=1))
emit("core6_udp.in", FROM_CLIENT / IPv6(src=C6, dst=V6) / UDP(sport=5000, dport=53) / PAYLOAD)
emit("core6_udp_fullnat.out", Ether(src=LB1_MAC, dst=T1_MAC) / IPv6(src=S6, dst=T6[0], hlim=63) /
     UDP(sport=SNAT_PORT, dport=53) / PAYLOAD)
# A task's Packet Too Big about what the appliance sent it: to the client, from the VIP,
# about the client's own packet; and the client's unreachable about the VIP's, to the task.
emit("core6_too_big_from_task.in", Ether(src=T1_MAC, dst=LB1_MAC) / IPv6(src=T6[0], dst=S6) /
     ICMPv6PacketTooBig(mtu=1400) / IPerror6(src=S6, dst=T6[0], hlim=63) /
     TCPerror(sport=SNAT_PORT, dport=80, flags="A", seq=2))
emit("core6_too_big_from_task.out", Ether(src=LB0_MAC, dst=CLIENT_MAC) / IPv6(src=V6, dst=C6, hlim=63) /
     ICMPv6PacketTooBig(mtu=1400) / IPerror6(src=C6, dst=V6, hlim=63) /
     TCPerror(sport=40000, dport=8080, flags="A", seq=2))
emit("core6_unreach_from_client.in", FROM_CLIENT / IPv6(src=C6, dst=V6) / ICMPv6DestUnreach(code=4) /
     IPerror6(src=V6, dst=C6) / TCPerror(sport=8080, dport=40000, flags="A", seq=100))
emit("core6_unreach_from_client.out", Ether(src=LB1_MAC, dst=T1_MAC) / IPv6(src=S6, dst=T6[0], hlim=63) /
     ICMPv6DestUnreach(code=4) / IPerror6(src=T6[0], dst=S6) /
     TCPerror(sport=80, dport=SNAT_PORT, flags="A", seq=100))
# IPv6 tasks inside the overlay (an IPv4 underlay): the vxlan device has 2001:db8:80::2/64,
# the task 2001:db8:80::11 (OT1_MAC, on node NODE); full NAT66 to the device's address.
OV6_LB, OT6 = "2001:db8:80::2", "2001:db8:80::11"
emit("core6_ov_syn.out", vxlan_to_node(Ether(src=OV_MAC, dst=OT1_MAC) /
     IPv6(src=OV6_LB, dst=OT6, hlim=63) / TCP(sport=SNAT_PORT, dport=80, flags="S", seq=1)))
emit("core6_ov_synack.in", Ether(src=NODE_MAC, dst=LB1_MAC) / IP(src=NODE, dst=LB, id=0) /
     UDP(sport=50000, dport=4789, chksum=0) / VXLAN(vni=4097, flags=0x08) /
     Ether(src=OT1_MAC, dst=OV_MAC) / IPv6(src=OT6, dst=OV6_LB) /
     TCP(sport=80, dport=SNAT_PORT, flags="SA", seq=100, ack=2))
# A 1500-byte client packet into the 1450-byte overlay: Packet Too Big from the VIP.
BIG6 = FROM_CLIENT / IPv6(src=C6, dst=V6) / TCP(sport=40000, dport=8080, flags="A", seq=2, ack=101) / \
    (b"x" * (1500 - 40 - 20))
emit("core6_big.in", BIG6)
emit("core6_too_big.out", Ether(src=LB0_MAC, dst=CLIENT_MAC) / IPv6(src=V6, dst=C6, hlim=64) /
     ICMPv6PacketTooBig(mtu=1450) / raw(BIG6[IPv6])[:1280 - 40 - 8])
# Neighbour solicitation for the VIP: the kernel's twin answers it.
emit("core6_ns.in", Ether(src=CLIENT_MAC, dst="33:33:ff:00:01:00") /
     IPv6(src=C6, dst="ff02::1:ff00:100", hlim=255) / ICMPv6ND_NS(tgt=V6))

print("# Generated by tests/data/gen_golden.py (scapy); do not edit.")
print("\n".join(out))
