// The control plane's other front ends: the wire protocol, iptables, command
// dispatch with the state file, and the snapshot builder.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <thread>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client.h"
#include "commands.h"
#include "health.h"
#include "iptables.h"
#include "protocol.h"
#include "snapshot_builder.h"

namespace meshlb {
namespace {

std::vector<std::string> words(const std::string& s) {
  return absl::StrSplit(s, ' ', absl::SkipEmpty());
}

TEST(Protocol, RoundTrip) {
  Request r{{"ipvsadm", "-R"}, "-A -t 198.18.0.1:80 -s rr\n"};
  std::string wire = encodeRequest(r);
  auto len = frameLength(wire);
  ASSERT_TRUE(len.ok() && len->has_value());
  EXPECT_EQ(**len, wire.size());
  auto back = decodeRequest(wire.substr(4));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->args, r.args);
  EXPECT_EQ(back->input, r.input);
  auto reply = decodeReply(encodeReply({false, "No such service"}).substr(4));
  ASSERT_TRUE(reply.ok());
  EXPECT_FALSE(reply->ok);
  EXPECT_EQ(reply->text, "No such service");
  EXPECT_EQ(reply->exit_status, 1);
  // A rejection's exit status (ipvsadm's 2 and 255) travels in the last frame's status.
  for (int code : {1, 2, 255}) {
    auto r2 = decodeReply(
        encodeReply(replyOf(withExitStatus(absl::InvalidArgumentError("x"), code))).substr(4));
    ASSERT_TRUE(r2.ok());
    EXPECT_FALSE(r2->ok);
    EXPECT_EQ(r2->exit_status, code);
  }
}

// Issue 13, defect 7: a listing over the 1 MiB frame could not be read. It now comes
// in frames of at most 1 MiB, all but the last saying more follow; a request (a
// large -R) may be up to 256 MiB.
TEST(Protocol, LongRepliesComeInSeveralFrames) {
  std::string text(3 * kMaxFrame + 12345, 'x');
  for (size_t i = 0; i < text.size(); i += 4093) text[i] = static_cast<char>('a' + i % 26);
  std::string wire = encodeReply({true, text});
  std::string got;
  int frames = 0;
  for (;;) {
    auto len = frameLength(wire);
    ASSERT_TRUE(len.ok() && len->has_value());
    auto part = decodeReply(wire.substr(4, **len - 4));
    ASSERT_TRUE(part.ok());
    ++frames;
    got += part->text;
    wire.erase(0, **len);
    if (!part->more) {
      EXPECT_TRUE(part->ok);
      break;
    }
  }
  EXPECT_EQ(frames, 4);
  EXPECT_TRUE(wire.empty());
  EXPECT_EQ(got, text);
  const std::string big = encodeRequest({{"ipvsadm", "-R"}, std::string(5 * kMaxFrame, 'y')});
  EXPECT_FALSE(frameLength(big).ok());  // over a reply frame's limit
  auto len = frameLength(big, kMaxRequest);
  ASSERT_TRUE(len.ok() && len->has_value());
  EXPECT_EQ(**len, big.size());
}

TEST(Protocol, HostileFramesAreRejected) {
  EXPECT_FALSE(frameLength(std::string("\xff\xff\xff\x7f", 4)).ok());    // 2 GiB
  EXPECT_FALSE(frameLength("\x01\x00").value().has_value());             // need more
  EXPECT_FALSE(decodeRequest(std::string("\x05\x00\x00\x00", 4)).ok());  // 5 args, none there
  EXPECT_FALSE(decodeRequest(std::string("\x00\x10\x00\x00", 4)).ok());  // too many args
  std::string wire = encodeRequest({{"stats"}, ""});
  EXPECT_FALSE(decodeRequest(wire.substr(4) + "x").ok());             // trailing bytes
  EXPECT_FALSE(decodeRequest(wire.substr(4, wire.size() - 6)).ok());  // truncated
  EXPECT_FALSE(decodeReply("").ok());
  EXPECT_FALSE(decodeReply("\x07oops").ok());
}

TEST(Iptables, SwarmRulesSaveAndList) {
  IptablesModel m;
  ASSERT_TRUE(runIptables(m, words("-t nat -A POSTROUTING -m ipvs --ipvs -d 198.18.1.0/24 -j "
                                   "SNAT --to-source 198.18.1.1"))
                  .ok());
  ASSERT_TRUE(runIptables(m, words("-t nat -I POSTROUTING 1 -d 198.18.2.0/24 -m ipvs --ipvs -j "
                                   "MASQUERADE"))
                  .ok());
  EXPECT_EQ(*runIptables(m, words("-t nat -S POSTROUTING")),
            "-P POSTROUTING ACCEPT\n"
            "-A POSTROUTING -d 198.18.2.0/24 -m ipvs --ipvs -j MASQUERADE\n"
            "-A POSTROUTING -d 198.18.1.0/24 -m ipvs --ipvs -j SNAT --to-source 198.18.1.1\n");
  EXPECT_EQ(*runIptables(m, words("-t nat -L POSTROUTING -n")),
            "Chain POSTROUTING (policy ACCEPT)\n"
            "target     prot opt source               destination         \n"
            "MASQUERADE  0    --  0.0.0.0/0            198.18.2.0/24        ipvs\n"
            "SNAT       0    --  0.0.0.0/0            198.18.1.0/24        ipvs to:198.18.1.1\n");
  ASSERT_TRUE(runIptables(m, words("-t nat -D POSTROUTING 1")).ok());
  ASSERT_TRUE(runIptables(m, words("-t nat -D POSTROUTING -m ipvs --ipvs -d 198.18.1.0/24 -j SNAT "
                                   "--to-source 198.18.1.1"))
                  .ok());
  EXPECT_TRUE(m.natPostrouting().empty());
}

// ip6tables: the same subset on its own rules (IPv6 addresses, ip6tables-save syntax);
// each tool refuses the other family's addresses.
TEST(Iptables, Ip6tablesHasItsOwnRulesAndFamily) {
  IptablesModel m(Family::kIpv6);
  ASSERT_TRUE(runIptables(m, words("-t nat -A POSTROUTING -m ipvs --ipvs -d 2001:db8:1::7/64 -j "
                                   "SNAT --to-source 2001:db8:1::1"))
                  .ok());
  ASSERT_TRUE(runIptables(m, words("-t nat -A PREROUTING -d 2001:db8::100/128 -p tcp --dport 80 "
                                   "-j DNAT --to-destination [2001:db8:1::11]:8080"))
                  .ok());
  ASSERT_TRUE(runIptables(m, words("-t mangle -A PREROUTING -d 2001:db8::100 -p tcp --dport 443 "
                                   "-j MARK --set-mark 7"))
                  .ok());
  EXPECT_EQ(*runIptables(m, words("-t nat -S")),
            "-P PREROUTING ACCEPT\n"
            "-P INPUT ACCEPT\n"
            "-P OUTPUT ACCEPT\n"
            "-P POSTROUTING ACCEPT\n"
            "-A PREROUTING -d 2001:db8::100/128 -p tcp -m tcp --dport 80 -j DNAT --to-destination "
            "[2001:db8:1::11]:8080\n"
            "-A POSTROUTING -d 2001:db8:1::/64 -m ipvs --ipvs -j SNAT --to-source 2001:db8:1::1\n");
  EXPECT_EQ(
      *runIptables(m, words("-t nat -L POSTROUTING -n")),
      "Chain POSTROUTING (policy ACCEPT)\n"
      "target     prot opt source               destination         \n"
      "SNAT       0    --  ::/0                 2001:db8:1::/64      ipvs to:2001:db8:1::1\n");
  EXPECT_EQ(iptablesRules(m).back(),
            "ip6tables -t nat -A POSTROUTING -d 2001:db8:1::/64 -m ipvs --ipvs -j SNAT "
            "--to-source 2001:db8:1::1");
  IptablesModel v4;
  for (auto [model, line, error] :
       {std::tuple<IptablesModel*, const char*, const char*>{
            &m, "-t nat -A POSTROUTING -d 198.18.1.0/24 -j MASQUERADE", "numeric IPv6 only"},
        {&m, "-t nat -A POSTROUTING -j SNAT --to-source 198.18.1.1", "one IPv6 address"},
        {&m, "-t nat -A PREROUTING -j DNAT --to-destination [2001:db8::1]:99999", "[ADDR]:PORT"},
        {&m, "-t nat -A PREROUTING -j DNAT --to-destination [2001:db8::1]", "[ADDR]:PORT"},
        {&m, "-t nat -A POSTROUTING -d 2001:db8::/129 -j MASQUERADE", "invalid prefix length"},
        {&v4, "-t nat -A POSTROUTING -d 2001:db8::/64 -j MASQUERADE", "numeric IPv4 only"},
        {&v4, "-t nat -A POSTROUTING -j SNAT --to-source 2001:db8::1", "one IPv4 address"}}) {
    SCOPED_TRACE(line);
    const IptablesModel before = *model;
    auto r = runIptables(*model, words(line));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find(error), std::string::npos) << r.status();
    EXPECT_TRUE(*model == before);
  }
}

TEST(Iptables, RefusalsNameTheProblem) {
  IptablesModel m;
  struct {
    const char* line;
    const char* error;
  } cases[] = {
      {"-A POSTROUTING -j MASQUERADE", "table \"filter\" is not supported"},
      {"-t raw -A PREROUTING -j NOTRACK", "table \"raw\" is not supported"},
      {"-t mangle -A FORWARD -j MARK --set-mark 256", "rules in mangle FORWARD"},
      {"-t mangle -A PREROUTING --dport 80 -j MARK --set-mark 256", "needs \"-p tcp\""},
      {"-t mangle -A PREROUTING -p tcp --dport 80:90 -j MARK --set-mark 256", "no ranges"},
      {"-t mangle -A PREROUTING -j MARK --and-mark 0x100/0xff", "\"--and-mark\" takes no mask"},
      {"-t mangle -A PREROUTING -j MARK", "one of --set-mark, --set-xmark"},
      {"-t mangle -A PREROUTING -j MARK --set-mark 1 --set-mark 2", "only one action"},
      {"-t mangle -A PREROUTING -j MARK --set-mark 1 --or-mark 2", "only one action"},
      {"-t mangle -A PREROUTING -p tcp -p udp -j MARK --set-mark 1", "multiple -p flags"},
      {"-t mangle -A PREROUTING -j MARK -j MARK --set-mark 1", "multiple -j flags"},
      {"-t mangle -A PREROUTING -d 198.18.0.1 -d 198.18.0.2 -j MARK --set-mark 1",
       "multiple -d flags"},
      {"-t mangle -A PREROUTING --set-mark 1", "need \"-j MARK\""},
      {"-t nat -A POSTROUTING -j SNAT --to-source 198.18.1.1 --to-source 198.18.1.2",
       "multiple --to-source"},
      {"-t nat -A POSTROUTING -m ipvs -j MASQUERADE", "IPVS: At least one option is required"},
      {"-t nat -C POSTROUTING -j MASQUERADE", "Bad rule"},
      {"-t mangle -A PREROUTING -j SNAT --to-source 198.18.1.1", "only target \"MARK\""},
      {"-t nat -A POSTROUTING -j MARK --set-mark 1",
       "\"MARK\" is not supported in nat POSTROUTING"},
      {"-t nat -A PREROUTING -j MARK --set-mark 1", "belongs in the mangle table"},
      {"-t nat -A POSTROUTING -p tcp -j MASQUERADE", "match on -d only"},
      {"-t mangle -A PREROUTING -p icmp -j MARK --set-mark 1", "protocol \"icmp\""},
      {"-t nat -A PREROUTING -p tcp --dport 80 -j DNAT", "DNAT needs --to-destination"},
      {"-t nat -A INPUT -j DNAT --to-destination 198.18.0.2", "not supported by meshlb yet"},
      {"-t nat -A POSTROUTING -j SNAT", "SNAT needs --to-source"},
      {"-t nat -A POSTROUTING -o eth0 -j MASQUERADE", "option \"-o\" is not supported"},
      {"-t nat -A POSTROUTING -m conntrack -j MASQUERADE", "match \"conntrack\""},
      {"-t nat -A POSTROUTING -j SNAT --to-source 198.18.1.1:1000-2000", "no port range"},
      {"-t nat -A POSTROUTING -d 198.18.1.0/40 -j MASQUERADE", "invalid prefix length"},
      {"-t nat -A POSTROUTING", "a target is required"},
      {"-t nat -A FORWARD -j MASQUERADE", "No chain/target/match by that name."},
      {"-t nat -D POSTROUTING 3", "index of deletion too big"},
      {"-t nat -D POSTROUTING -j MASQUERADE", "Bad rule"},
      {"-t nat", "no command specified"},
  };
  for (const auto& c : cases) {
    auto r = runIptables(m, words(c.line));
    ASSERT_FALSE(r.ok()) << c.line;
    EXPECT_NE(r.status().message().find(c.error), std::string::npos)
        << c.line << " -> " << r.status().message();
  }
  EXPECT_TRUE(m.natPostrouting().empty());
}

// MARK's actions keep iptables' meaning: (mark & ~mask) ^ value, every matching
// rule in order (PREROUTING, then INPUT), and iptables-save's --set-xmark form.
TEST(Iptables, MarkActionsWithMasks) {
  IptablesModel m;
  for (const char* l : {"-t mangle -A PREROUTING -p tcp --dport 8080 -j MARK --set-mark 0x100",
                        "-t mangle -A PREROUTING -s 198.18.0.0/24 -j MARK --set-xmark 0x1/0x1",
                        "-t mangle -A PREROUTING -p tcp --dport 8081 -j MARK --set-mark 0x4/0xf",
                        "-t mangle -A INPUT -p tcp --dport 8080 -j MARK --or-mark 0x10",
                        "-t mangle -A INPUT -s 198.18.0.66 -j MARK --and-mark 0xff0f",
                        "-t mangle -A INPUT -s 198.18.0.77 -j MARK --xor-mark 0x3"}) {
    ASSERT_TRUE(runIptables(m, words(l)).ok()) << l;
  }
  EXPECT_EQ(*runIptables(m, words("-t mangle -S PREROUTING")),
            "-P PREROUTING ACCEPT\n"
            "-A PREROUTING -p tcp -m tcp --dport 8080 -j MARK --set-xmark 0x100/0xffffffff\n"
            "-A PREROUTING -s 198.18.0.0/24 -j MARK --set-xmark 0x1/0x1\n"
            "-A PREROUTING -p tcp -m tcp --dport 8081 -j MARK --set-xmark 0x4/0xf\n");
  EXPECT_EQ(
      *runIptables(m, words("-t mangle -L INPUT -n")),
      "Chain INPUT (policy ACCEPT)\n"
      "target     prot opt source               destination         \n"
      "MARK       6    --  0.0.0.0/0            0.0.0.0/0            tcp dpt:8080 MARK or 0x10\n"
      "MARK       0    --  198.18.0.66          0.0.0.0/0            MARK and 0xff0f\n"
      "MARK       0    --  198.18.0.77          0.0.0.0/0            MARK xor 0x3\n");
  // -C finds exactly the rule; -w (the xtables lock) is accepted.
  EXPECT_TRUE(
      runIptables(m, words("-w -t mangle -C INPUT -s 198.18.0.77/32 -j MARK --xor-mark 3")).ok());
  EXPECT_FALSE(
      runIptables(m, words("-t mangle -C INPUT -s 198.18.0.77/32 -j MARK --xor-mark 4")).ok());
  EXPECT_TRUE(runIptables(m, words("--wait 5 -t mangle -S")).ok());
  // The marks a packet ends with, through the snapshot the workers read.
  auto ip = [](const char* s) { return IpAddr::parse(s).value(); };
  KernelView k;
  k.addrs = {{10, ip("198.18.0.1"), 24}};
  auto snap = buildSnapshot(ServiceModel(), m, IptablesModel(Family::kIpv6), k,
                            {{10, {2, 0, 0, 0, 0, 1}}}, 1);
  auto markOf = [&](const char* src, uint16_t dport) {
    return snap->v4.markOf(6, ip(src).v4(), ip("198.18.0.1").v4(), htons(40000), htons(dport));
  };
  EXPECT_EQ(markOf("198.18.0.10", 8080), 0x111u);  // 0x100, then ^0x1 under mask 1, then |0x10
  EXPECT_EQ(markOf("203.0.113.5", 8080), 0x110u);  // not in 198.18.0.0/24
  EXPECT_EQ(markOf("198.18.0.10", 8081), 0x4u);    // 0x1, then (0x1 & ~0xf) ^ 0x4
  EXPECT_EQ(markOf("198.18.0.66", 8080), 0x101u);  // 0x111 & 0xff0f
  EXPECT_EQ(markOf("198.18.0.77", 9), 0x2u);       // 0x1 ^ 0x3
  EXPECT_EQ(markOf("203.0.113.5", 9), 0x0u);
}

// Swarm's host-side form, as Docker writes it: a user chain, the addrtype jump from
// PREROUTING and OUTPUT, DNAT to the ingress sandbox, RETURN. The listings are what
// iptables v1.8.9 (nf_tables) printed for the same commands, byte for byte.
TEST(Iptables, SwarmHostSideChainsAsIptables189ListsThem) {
  IptablesModel m;
  for (const char* l :
       {"-t nat -A POSTROUTING -d 198.18.2.0/24 -j MASQUERADE",
        "-t nat -A POSTROUTING -d 198.18.1.0/24 -j SNAT --to-source 198.18.1.1",
        "-w -t nat -N DOCKER-INGRESS",
        "-t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER-INGRESS",
        "-t nat -A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER-INGRESS",
        "-t nat -A DOCKER-INGRESS -p tcp --dport 8080 -j DNAT --to-destination 172.18.0.2:8080",
        "-t nat -A DOCKER-INGRESS -p tcp --dport 8081 -j DNAT --to-destination 172.18.0.3",
        "-t nat -A DOCKER-INGRESS -j RETURN"}) {
    ASSERT_TRUE(runIptables(m, words(l)).ok()) << l << ": " << runIptables(m, words(l)).status();
  }
  EXPECT_EQ(
      *runIptables(m, words("-t nat -L -n")),
      "Chain PREROUTING (policy ACCEPT)\n"
      "target     prot opt source               destination         \n"
      "DOCKER-INGRESS  0    --  0.0.0.0/0            0.0.0.0/0            ADDRTYPE match "
      "dst-type LOCAL\n"
      "\n"
      "Chain INPUT (policy ACCEPT)\n"
      "target     prot opt source               destination         \n"
      "\n"
      "Chain OUTPUT (policy ACCEPT)\n"
      "target     prot opt source               destination         \n"
      "DOCKER-INGRESS  0    --  0.0.0.0/0            0.0.0.0/0            ADDRTYPE match "
      "dst-type LOCAL\n"
      "\n"
      "Chain POSTROUTING (policy ACCEPT)\n"
      "target     prot opt source               destination         \n"
      "MASQUERADE  0    --  0.0.0.0/0            198.18.2.0/24       \n"
      "SNAT       0    --  0.0.0.0/0            198.18.1.0/24        to:198.18.1.1\n"
      "\n"
      "Chain DOCKER-INGRESS (2 references)\n"
      "target     prot opt source               destination         \n"
      "DNAT       6    --  0.0.0.0/0            0.0.0.0/0            tcp dpt:8080 "
      "to:172.18.0.2:8080\n"
      "DNAT       6    --  0.0.0.0/0            0.0.0.0/0            tcp dpt:8081 to:172.18.0.3\n"
      "RETURN     0    --  0.0.0.0/0            0.0.0.0/0           \n");
  EXPECT_EQ(
      *runIptables(m, words("-t nat -S")),
      "-P PREROUTING ACCEPT\n-P INPUT ACCEPT\n-P OUTPUT ACCEPT\n-P POSTROUTING ACCEPT\n"
      "-N DOCKER-INGRESS\n"
      "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER-INGRESS\n"
      "-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER-INGRESS\n"
      "-A POSTROUTING -d 198.18.2.0/24 -j MASQUERADE\n"
      "-A POSTROUTING -d 198.18.1.0/24 -j SNAT --to-source 198.18.1.1\n"
      "-A DOCKER-INGRESS -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.18.0.2:8080\n"
      "-A DOCKER-INGRESS -p tcp -m tcp --dport 8081 -j DNAT --to-destination 172.18.0.3\n"
      "-A DOCKER-INGRESS -j RETURN\n");
  EXPECT_EQ(
      *runIptables(m, words("-t nat -S DOCKER-INGRESS")),
      "-N DOCKER-INGRESS\n"
      "-A DOCKER-INGRESS -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.18.0.2:8080\n"
      "-A DOCKER-INGRESS -p tcp -m tcp --dport 8081 -j DNAT --to-destination 172.18.0.3\n"
      "-A DOCKER-INGRESS -j RETURN\n");
  // Docker's own checks before it adds a rule.
  EXPECT_TRUE(runIptables(m, words("-t nat -C DOCKER-INGRESS -j RETURN")).ok());
  EXPECT_FALSE(runIptables(m, words("-t nat -C DOCKER-INGRESS -p udp --dport 53 -j RETURN")).ok());
  // What iptables refuses, meshlb refuses with its words.
  struct {
    const char* line;
    const char* error;
  } refused[] = {
      {"-t nat -N DOCKER-INGRESS", "Chain already exists."},
      {"-t nat -X DOCKER-INGRESS", "Device or resource busy"},
      {"-t nat -A NOPE -j RETURN", "No chain/target/match by that name."},
      {"-t nat -A PREROUTING -j NOPE", "Chain 'NOPE' does not exist"},
      {"-t nat -A DOCKER-INGRESS -j DOCKER-INGRESS", "would make a loop"},
      {"-t nat -A POSTROUTING -j DNAT --to-destination 198.18.0.2",
       "not supported in nat POSTROUTING"},
      {"-t nat -A PREROUTING -m addrtype --dst-type UNICAST -j RETURN", "only LOCAL"},
      {"-t nat -A PREROUTING -m addrtype -j RETURN", "--dst-type LOCAL is required"},
      {"-t nat -A PREROUTING -j DNAT --to-destination 198.18.0.2:1-9", "no ranges"},
      {"-t mangle -N MINE", "nat table only"},
      {"-t nat -A PREROUTING -j ACCEPT", "target \"ACCEPT\" is not supported"},
  };
  const IptablesModel before = m;
  for (const auto& c : refused) {
    auto r = runIptables(m, words(c.line));
    ASSERT_FALSE(r.ok()) << c.line;
    EXPECT_NE(r.status().message().find(c.error), std::string::npos)
        << c.line << " -> " << r.status().message();
  }
  EXPECT_TRUE(m == before);
  // Emptied and unreferenced, the chain goes; -S then lists no -N.
  ASSERT_TRUE(runIptables(m, words("-t nat -D PREROUTING -m addrtype --dst-type LOCAL -j "
                                   "DOCKER-INGRESS"))
                  .ok());
  ASSERT_TRUE(runIptables(m, words("-t nat -D OUTPUT 1")).ok());
  ASSERT_TRUE(runIptables(m, words("-t nat -F DOCKER-INGRESS")).ok());
  ASSERT_TRUE(runIptables(m, words("-t nat -X DOCKER-INGRESS")).ok());
  EXPECT_EQ(runIptables(m, words("-t nat -S"))->find("-N "), std::string::npos);
}

// Docker Swarm's ingress marks: published port 8080 -> firewall mark 256.
TEST(Iptables, MangleMarksSaveInIptablesSaveSyntax) {
  IptablesModel m;
  ASSERT_TRUE(runIptables(m, words("-t mangle -A PREROUTING -p tcp --dport 8080 -j MARK "
                                   "--set-mark 256"))
                  .ok());
  ASSERT_TRUE(
      runIptables(m, words("-t mangle -A INPUT -d 198.18.0.5/32 -j MARK --set-mark 257")).ok());
  const std::string saved = *runIptables(m, words("-t mangle -S"));
  EXPECT_EQ(saved,
            "-P PREROUTING ACCEPT\n-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n"
            "-P POSTROUTING ACCEPT\n"
            "-A PREROUTING -p tcp -m tcp --dport 8080 -j MARK --set-xmark 0x100/0xffffffff\n"
            "-A INPUT -d 198.18.0.5/32 -j MARK --set-xmark 0x101/0xffffffff\n");
  // What -S prints is accepted back as a rule, equal to the original (so -D finds it).
  ASSERT_TRUE(runIptables(m, words("-t mangle -D PREROUTING -p tcp -m tcp --dport 8080 -j MARK "
                                   "--set-xmark 0x100/0xffffffff"))
                  .ok());
  EXPECT_TRUE(m.manglePrerouting().empty());
  EXPECT_EQ(*runIptables(m, words("-t mangle -L INPUT -n")),
            "Chain INPUT (policy ACCEPT)\n"
            "target     prot opt source               destination         \n"
            "MARK       0    --  0.0.0.0/0            198.18.0.5           MARK set 0x101\n");
  EXPECT_EQ(
      iptablesRules(m),
      std::vector<std::string>{"iptables -t mangle -A INPUT -d 198.18.0.5/32 -j MARK --set-xmark "
                               "0x101/0xffffffff"});
  ASSERT_TRUE(runIptables(m, words("-t mangle -F")).ok());
  EXPECT_TRUE(m.mangleInput().empty());
}

constexpr char kStateComment[] =
    "# meshlbd appends each accepted change and now and then rewrites this file whole; each line "
    "is a section name and its arguments.\n";

// The setting lines of a state file (those not comments), in order; the format
// itself is pinned by EveryChangeIsSavedAndRestored.
std::string settingsOf(const std::string& text) {
  std::string out;
  for (absl::string_view l : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (l[0] != '#') absl::StrAppend(&out, l, "\n");
  }
  return out;
}

class StateFile : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/meshlb-state-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/state";
  }
  void TearDown() override {
    std::remove(path_.c_str());
    rmdir(dir_.c_str());
  }
  std::string read() {
    std::ifstream in(path_);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::string dir_, path_;
};

TEST_F(StateFile, EveryChangeIsSavedAndRestored) {
  bool changed = false;
  {
    Commands c;
    ASSERT_TRUE(c.useStateFile(path_).ok());
    ASSERT_TRUE(c.run(words("ipvsadm -A -t 198.18.0.1:8080 -s rr"), "", &changed).ok());
    EXPECT_TRUE(changed);
    ASSERT_TRUE(
        c.run(words("ipvsadm -a -t 198.18.0.1:8080 -r 198.18.1.11:80 -m -w 3"), "", &changed).ok());
    ASSERT_TRUE(
        c.run(words("iptables -t nat -A POSTROUTING -m ipvs --ipvs -j MASQUERADE"), "", &changed)
            .ok());
    ASSERT_TRUE(c.run(words("ipvsadm --set 100 0 0"), "", &changed).ok());
    ASSERT_TRUE(c.run(words("ipvsadm -L -n"), "", &changed).ok());
    EXPECT_FALSE(changed);  // a listing changes nothing
  }
  // The base the daemon started with, then each change appended as its command,
  // each checksum chained from the one before; the journal line counts them.
  EXPECT_EQ(read(),
            std::string("# meshlb state v4\n"
                        "# changes after the base: 0000000004, checksum 66d93e0428020a46\n") +
                kStateComment +
                "ipvsadm --set 900 120 300\n"
                "# end of state: 1 lines, checksum ce8fc841ee83184a\n"
                "# change 1: 1 lines, checksum cf90da53ecce28c1\n"
                "ipvsadm -A -t 198.18.0.1:8080 -s rr\n"
                "# change 2: 1 lines, checksum a4b552dd657a778e\n"
                "ipvsadm -a -t 198.18.0.1:8080 -r 198.18.1.11:80 -m -w 3\n"
                "# change 3: 1 lines, checksum c3e8876152e7c3fe\n"
                "iptables -t nat -A POSTROUTING -m ipvs --ipvs -j MASQUERADE\n"
                "# change 4: 1 lines, checksum 66d93e0428020a46\n"
                "ipvsadm --set 100 0 0\n");
  // A start replays them and writes the file again whole.
  Commands again;
  ASSERT_TRUE(again.useStateFile(path_).ok());
  EXPECT_EQ(again.saveState(), read());
  EXPECT_EQ(read(),
            std::string("# meshlb state v4\n"
                        "# changes after the base: 0000000000, checksum 53403df26d489914\n") +
                kStateComment +
                "ipvsadm -A -t 198.18.0.1:8080 -s rr\n"
                "ipvsadm -a -t 198.18.0.1:8080 -r 198.18.1.11:80 -m -w 3\n"
                "ipvsadm --set 100 120 300\n"
                "iptables -t nat -A POSTROUTING -m ipvs --ipvs -j MASQUERADE\n"
                "# end of state: 4 lines, checksum 53403df26d489914\n");
}

// IPv6 services and ip6tables rules go into the state file and come back.
TEST_F(StateFile, Ipv6ServicesAndIp6tablesRulesAreSavedAndRestored) {
  bool changed = false;
  const std::vector<std::string> lines = {
      "ipvsadm -A -t [2001:db8::100]:80 -s mh -b mh-port",
      "ipvsadm -a -t [2001:db8::100]:80 -r [2001:db8:1::11]:8080 -m -w 2",
      "ipvsadm -A -u [2001:db8::100]:53 -s rr -p 60 -M 64",
      "ipvsadm -a -u [2001:db8::100]:53 -r [2001:db8:1::12]:53 -g",
      "ip6tables -t nat -A POSTROUTING -m ipvs --ipvs -d 2001:db8:1::/64 -j MASQUERADE",
      "iptables -t nat -A POSTROUTING -m ipvs --ipvs -j MASQUERADE"};
  std::string listed;
  {
    Commands c;
    ASSERT_TRUE(c.useStateFile(path_).ok());
    for (const std::string& l : lines) ASSERT_TRUE(c.run(words(l), "", &changed).ok()) << l;
    listed = *c.run(words("ipvsadm -S -n"), "", &changed);
    EXPECT_EQ(c.nat6().natPostrouting().size(), 1u);
    EXPECT_EQ(c.nat().natPostrouting().size(), 1u);
  }
  Commands again;
  ASSERT_TRUE(again.useStateFile(path_).ok());
  EXPECT_EQ(*again.run(words("ipvsadm -S -n"), "", &changed), listed);
  EXPECT_NE(listed.find("-A -t [2001:db8::100]:80 -s mh -b mh-port"), std::string::npos) << listed;
  EXPECT_EQ(*again.run(words("ip6tables -t nat -S POSTROUTING"), "", &changed),
            "-P POSTROUTING ACCEPT\n"
            "-A POSTROUTING -d 2001:db8:1::/64 -m ipvs --ipvs -j MASQUERADE\n");
  EXPECT_EQ(*again.run(words("iptables -t nat -S POSTROUTING"), "", &changed),
            "-P POSTROUTING ACCEPT\n"
            "-A POSTROUTING -m ipvs --ipvs -j MASQUERADE\n");
  EXPECT_NE(read().find("\nip6tables -t nat -A POSTROUTING -d 2001:db8:1::/64"), std::string::npos);
}

// Issue 13, defect 7: a change rewrote the whole file (O(configuration): 7 MB at
// 100k services). Now it appends its own record, and the rest of the file stays as
// it was but for the journal line; a -R is recorded as its lines; when the records
// outgrow the base, the file is written again whole.
TEST_F(StateFile, AChangeAppendsItselfAndTheFileIsRewrittenWhenTheRecordsOutgrowTheBase) {
  std::string many;
  for (int i = 0; i < 500; ++i) {
    absl::StrAppend(&many, "-A -t 198.18.1.", i % 250, ":", 80 + i / 250, " -s rr\n");
  }
  std::string before;
  bool changed = false;
  {
    Commands c;
    ASSERT_TRUE(c.run(words("ipvsadm -R"), many, &changed).ok());
    ASSERT_TRUE(c.useStateFile(path_).ok());
    before = read();
    ASSERT_TRUE(c.run(words("ipvsadm -a -t 198.18.1.7:80 -r 198.18.2.1:80 -m"), "", &changed).ok());
    const std::string after = read();
    const std::string record = "# change 1: 1 lines, checksum " +
                               after.substr(after.rfind("checksum ") + 9, 16) +
                               "\nipvsadm -a -t 198.18.1.7:80 -r 198.18.2.1:80 -m\n";
    ASSERT_EQ(after.size(), before.size() + record.size());
    EXPECT_EQ(after.substr(before.size()), record);
    const size_t journal_end = before.find('\n', before.find('\n') + 1);
    EXPECT_EQ(after.substr(journal_end, before.size() - journal_end),
              before.substr(journal_end));  // the base untouched
    // A -R: its lines, as one record.
    ASSERT_TRUE(c.run(words("ipvsadm -R"),
                      "# a comment\n-a -t 198.18.1.8:80 -r 198.18.2.2:80 -m\n\n"
                      "  -e   -t 198.18.1.8:80 -r 198.18.2.2:80 -m -w 4\n",
                      &changed)
                    .ok());
    EXPECT_NE(read().find("# change 2: 2 lines, checksum "), std::string::npos) << read();
    EXPECT_NE(read().find("\nipvsadm -a -t 198.18.1.8:80 -r 198.18.2.2:80 -m\n"
                          "ipvsadm -e -t 198.18.1.8:80 -r 198.18.2.2:80 -m -w 4\n"),
              std::string::npos);
    // Past the base's size and 1 MiB more of records, the file is written again.
    std::string big;
    for (int i = 0; i < 20000; ++i) {
      absl::StrAppend(&big, "-a -t 198.18.1.9:80 -r 198.19.", i / 250, ".", i % 250 + 1,
                      ":8080 -m -w 1\n");
    }
    ASSERT_TRUE(c.run(words("ipvsadm -R"), big, &changed).ok());
    EXPECT_EQ(read().find("# change "), std::string::npos);
    EXPECT_EQ(read(), c.saveState());
  }
  Commands again;
  ASSERT_TRUE(again.useStateFile(path_).ok());
  EXPECT_EQ(again.services().services().size(), 500u);
  EXPECT_EQ(again.services()
                .services()
                .at(ServiceKey{0, 6, *IpAddr::parse("198.18.1.9"), 80})
                .dests.size(),
            20000u);
}

// Thresholds, which ipvsadm -S leaves out, are saved (an -e after the -S lines) and
// restored, in the base and in a change record alike.
TEST_F(StateFile, ThresholdsAreSavedAndRestored) {
  bool changed = false;
  {
    Commands c;
    ASSERT_TRUE(c.run(words("ipvsadm -A -t 198.18.0.1:80 -s rr"), "", &changed).ok());
    ASSERT_TRUE(
        c.run(words("ipvsadm -a -t 198.18.0.1:80 -r 198.18.1.11:80 -m -x 9 -y 3"), "", &changed)
            .ok());
    ASSERT_TRUE(c.useStateFile(path_).ok());
    ASSERT_TRUE(
        c.run(words("ipvsadm -a -t 198.18.0.1:80 -r 198.18.1.12:80 -m -x 4"), "", &changed).ok());
  }
  EXPECT_NE(read().find("ipvsadm -e -t 198.18.0.1:80 -r 198.18.1.11:80 -m -w 1 -x 9 -y 3\n"),
            std::string::npos)
      << read();
  Commands again;
  ASSERT_TRUE(again.useStateFile(path_).ok());
  const auto& dests = again.services().services().begin()->second.dests;
  ASSERT_EQ(dests.size(), 2u);
  EXPECT_EQ(dests[0].u_threshold, 9u);
  EXPECT_EQ(dests[0].l_threshold, 3u);
  EXPECT_EQ(dests[1].u_threshold, 4u);
  EXPECT_EQ(again.saveState(), read());
}

// A change the state file cannot take is not applied, and undone in place: the
// configuration is as it was, ids and all; the next change writes the file whole.
TEST_F(StateFile, AChangeThatCannotBeSavedIsUndone) {
  bool changed = false;
  Commands c;
  ASSERT_TRUE(c.useStateFile(path_).ok());
  ASSERT_TRUE(c.run(words("ipvsadm -A -t 198.18.0.1:80 -s wrr"), "", &changed).ok());
  ASSERT_TRUE(
      c.run(words("ipvsadm -a -t 198.18.0.1:80 -r 198.18.1.11:80 -m -w 2"), "", &changed).ok());
  const auto services = c.services().services();
  const std::string listing = *c.run(words("ipvsadm -S -n"), "", &changed);
  // The file's place taken by a directory: neither append nor rename can work.
  ASSERT_EQ(std::remove(path_.c_str()), 0);
  ASSERT_EQ(mkdir(path_.c_str(), 0700), 0);
  for (const char* cmd :
       {"ipvsadm -d -t 198.18.0.1:80 -r 198.18.1.11:80", "ipvsadm -C", "ipvsadm --set 5 5 5",
        "ipvsadm -e -t 198.18.0.1:80 -r 198.18.1.11:80 -m -w 7",
        "iptables -t nat -A POSTROUTING -m ipvs --ipvs -j MASQUERADE"}) {
    auto r = c.run(words(cmd), "", &changed);
    ASSERT_FALSE(r.ok()) << cmd;
    EXPECT_NE(r.status().message().find("change not applied"), std::string::npos) << r.status();
    EXPECT_FALSE(changed);
    EXPECT_EQ(c.services().services(), services) << cmd;
    EXPECT_EQ(*c.run(words("ipvsadm -S -n"), "", &changed), listing) << cmd;
    EXPECT_TRUE(c.nat().natPostrouting().empty());
  }
  ASSERT_EQ(rmdir(path_.c_str()), 0);
  ASSERT_TRUE(
      c.run(words("ipvsadm -e -t 198.18.0.1:80 -r 198.18.1.11:80 -m -w 7"), "", &changed).ok());
  EXPECT_EQ(read(), c.saveState());
  Commands again;
  ASSERT_TRUE(again.useStateFile(path_).ok());
  EXPECT_EQ(again.services().services().begin()->second.dests.at(0).weight, 7u);
}

TEST_F(StateFile, CorruptFileStopsTheStartAndIsLeftAlone) {
  const std::string bad = "# meshlb state v1\nipvsadm -A -t 198.18.0.1:8080 -s rr\nipvsadm -Q\n";
  std::ofstream(path_) << bad;
  Commands c;
  auto st = c.useStateFile(path_);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("state line 3"), std::string::npos) << st.message();
  EXPECT_EQ(read(), bad);
  std::ofstream(path_) << "garbage\n";
  EXPECT_NE(c.useStateFile(path_).message().find("not a meshlb state file"), std::string::npos);
}

// A file an older meshlbd wrote (version 1) loads as it is and is rewritten as v4.
TEST_F(StateFile, VersionOneStillLoads) {
  const std::string v1 =
      "# meshlb state v1\n"
      "ipvsadm -A -t 198.18.0.1:8080 -s rr\n"
      "ipvsadm -a -t 198.18.0.1:8080 -r 198.18.1.11:80 -m -w 3\n"
      "ipvsadm --set 100 120 300\n"
      "iptables -t nat -A POSTROUTING -m ipvs --ipvs -j MASQUERADE\n";
  std::ofstream(path_) << v1;
  Commands c;
  ASSERT_TRUE(c.useStateFile(path_).ok());
  EXPECT_EQ(read().substr(0, 18), "# meshlb state v4\n");
  EXPECT_EQ(settingsOf(read()), settingsOf(v1));
  EXPECT_EQ(c.services().timeouts().tcp, 100u);
  EXPECT_EQ(c.nat().natPostrouting().size(), 1u);
}

// What this meshlbd cannot read stops the start with the reason, untouched.
TEST_F(StateFile, NewerVersionsAndUnknownSectionsAreRefused) {
  const std::string newer = "# meshlb state v5\nipvsadm --set 100 120 300\n";
  std::ofstream(path_) << newer;
  Commands c;
  auto st = c.useStateFile(path_);
  EXPECT_NE(st.message().find("version 5 is newer"), std::string::npos) << st.message();
  EXPECT_EQ(read(), newer);
  const std::string unknown = "# meshlb state v2\noverlay vni 4097\n";
  std::ofstream(path_) << unknown;
  st = c.useStateFile(path_);
  EXPECT_NE(st.message().find("state line 2: unknown section 'overlay'"), std::string::npos)
      << st.message();
  EXPECT_EQ(read(), unknown);
}

// Issue 13, defect 6: the state file could lie. Cut at a line boundary, emptied,
// edited, or holding what no command would accept, it loaded as a smaller (or
// broken) configuration that was then saved over it. Each now stops the start with
// the reason, and the file is left as it was.
TEST_F(StateFile, CutEmptiedOrAlteredFilesAreRefusedAndLeftAlone) {
  bool changed = false;
  {
    Commands c;
    ASSERT_TRUE(c.run(words("ipvsadm -A -t 198.18.0.1:8080 -s rr"), "", &changed).ok());
    ASSERT_TRUE(c.useStateFile(path_).ok());  // in the base
    for (const char* l : {"ipvsadm -a -t 198.18.0.1:8080 -r 198.18.1.11:80 -m",
                          "ipvsadm -a -t 198.18.0.1:8080 -r 198.18.1.12:80 -m",
                          "ipvsadm -e -t 198.18.0.1:8080 -r 198.18.1.12:80 -m -w 2"}) {
      ASSERT_TRUE(c.run(words(l), "", &changed).ok());  // appended
    }
  }
  const std::string good = read();
  ASSERT_NE(good.find("# change 3: "), std::string::npos) << good;
  auto refused = [&](const std::string& text, const std::string& why) {
    std::ofstream(path_, std::ios::trunc) << text;
    Commands c;
    const absl::Status st = c.useStateFile(path_);
    EXPECT_TRUE(absl::IsDataLoss(st)) << st;
    EXPECT_NE(st.message().find(why), std::string::npos) << st.message();
    EXPECT_EQ(read(), text) << "the file was rewritten";
    EXPECT_TRUE(c.services().services().empty());
  };
  // Cut after each line: every prefix ending on a line boundary, at the base's end
  // and at each record's boundary too.
  for (size_t at = good.find('\n'); at + 1 < good.size(); at = good.find('\n', at + 1)) {
    refused(good.substr(0, at + 1), "truncated");
  }
  refused(good.substr(0, good.size() - 1), "truncated");  // the last newline gone
  refused("", "empty");
  // A whitespace-only line (it aborted the daemon), in the base and in a record.
  const size_t first = good.find("ipvsadm -A");
  refused(good.substr(0, first) + " \t \n" + good.substr(first), "truncated or altered");
  const size_t second = good.find("ipvsadm -a");
  refused(good.substr(0, second) + " \t \n" + good.substr(second), "truncated or altered");
  // An edited weight, in a record; an edited count in the journal line.
  std::string edited = good;
  edited.replace(edited.find("198.18.1.12:80 -m -w 2"), 22, "198.18.1.12:80 -m -w 5");
  refused(edited, "truncated or altered");
  edited = good;
  edited.replace(edited.find("0000000003"), 10, "0000000002");
  refused(edited, "truncated or altered");
  // Appended after the last change.
  refused(good + "ipvsadm -D -t 198.18.0.1:8080\n", "appended to by hand");
  refused(good + "# change 4: 1 lines, checksum 0000000000000000\nipvsadm -C\n# x\n",
          "appended to by hand");
  // The untouched file still loads.
  std::ofstream(path_, std::ios::trunc) << good;
  Commands c;
  ASSERT_TRUE(c.useStateFile(path_).ok());
  EXPECT_EQ(c.services().services().begin()->second.dests.size(), 2u);
  EXPECT_EQ(c.loadNote(), "");
}

// The one thing that may follow the last counted change: the change meshlbd was
// writing when it stopped (whole, or cut anywhere), which it had not acknowledged
// (the journal line is written after it). It is passed over, and said so.
TEST_F(StateFile, AChangeBeingWrittenWhenTheDaemonStoppedIsPassedOver) {
  bool changed = false;
  std::string counted, whole;
  {
    Commands c;
    ASSERT_TRUE(c.useStateFile(path_).ok());
    ASSERT_TRUE(c.run(words("ipvsadm -A -t 198.18.0.1:8080 -s rr"), "", &changed).ok());
    counted = read();
    ASSERT_TRUE(c.run(words("ipvsadm -R"),
                      "-a -t 198.18.0.1:8080 -r 198.18.1.11:80 -m\n"
                      "-a -t 198.18.0.1:8080 -r 198.18.1.12:80 -m\n",
                      &changed)
                    .ok());
    whole = read();
  }
  // As if the journal line had not been written yet: the old one over the new file.
  const size_t journal_end = counted.find('\n', counted.find('\n') + 1) + 1;
  const std::string unacked = counted.substr(0, journal_end) + whole.substr(journal_end);
  ASSERT_EQ(unacked.substr(0, counted.size()), counted);
  for (size_t cut = counted.size() + 1; cut <= unacked.size(); ++cut) {
    std::ofstream(path_, std::ios::trunc) << unacked.substr(0, cut);
    Commands c;
    ASSERT_TRUE(c.useStateFile(path_).ok()) << cut;
    EXPECT_TRUE(c.services().services().begin()->second.dests.empty());
    EXPECT_NE(c.loadNote().find("passed over change 2"), std::string::npos) << c.loadNote();
    EXPECT_EQ(read(), c.saveState());  // written again without it
  }
}

// Every line is checked as a command would be: in a file without a trailer (v2),
// a blank line of tabs or a control character is a refusal, not a crash; and a
// configuration the daemon refuses as a command (an IPv6 real server through a
// tunnel) is refused in the file, rather than loaded to make every later command fail.
TEST_F(StateFile, LinesAreCheckedAsCommandsAre) {
  auto refusal = [&](const std::string& text, bool limits = false) {
    std::ofstream(path_, std::ios::trunc) << text;
    Commands c;
    c.setDataplaneLimits(limits);
    const absl::Status st = c.useStateFile(path_);
    if (!st.ok()) {
      EXPECT_EQ(read(), text);
    }
    return std::string(st.message());
  };
  EXPECT_NE(refusal("# meshlb state v2\n\t\t\nipvsadm -A -t 198.18.0.1:80 -s rr\n")
                .find("state line 2: not a setting"),
            std::string::npos);
  EXPECT_NE(refusal("# meshlb state v2\nipvsadm -A -t 198.18.0.1:80\r -s rr\n")
                .find("state line 2: not a setting"),
            std::string::npos);
  const std::string v6 =
      "# meshlb state v2\nipvsadm -A -t [2001:db8::10]:80 -s rr\n"
      "ipvsadm -a -t [2001:db8::10]:80 -r [2001:db8:1::11]:80 -i\n";
  EXPECT_NE(refusal(v6, true).find("tunnelling (-i) to IPv6 real servers"), std::string::npos)
      << refusal(v6, true);
  EXPECT_EQ(refusal(v6, false), "");  // where the dataplane serves it, it loads
}

// meshlbctl healthcheck: added to a real server, listed, saved and restored with the
// server's state; a down server has weight 0 in ipvsadm's listing and the snapshot,
// while -S keeps the configured weight; refusals change nothing.
TEST_F(StateFile, HealthChecksAndDownServersAreSavedAndRestored) {
  bool changed = false;
  auto run = [&](Commands& c, const std::string& line) {
    auto r = c.run(words(line), "", &changed);
    EXPECT_TRUE(r.ok()) << line << ": " << r.status();
    return r.ok() ? *r : "";
  };
  {
    Commands c;
    ASSERT_TRUE(c.useStateFile(path_).ok());
    run(c, "ipvsadm -A -t 198.18.0.1:80 -s rr");
    run(c, "ipvsadm -a -t 198.18.0.1:80 -r 198.18.1.11:80 -m -w 3");
    run(c, "ipvsadm -a -t 198.18.0.1:80 -r 198.18.1.12:80 -m -w 2");
    const uint64_t v = c.checksVersion();
    run(c,
        "healthcheck -a -t 198.18.0.1:80 -r 198.18.1.11:80 --http /health --expect 204 "
        "--interval 0.5 --timeout 0.25 --rise 1 --fall 2");
    EXPECT_NE(c.checksVersion(), v);
    run(c, "healthcheck -a -t 198.18.0.1:80 -r 198.18.1.12");  // the service's port
    run(c, "healthcheck --state -t 198.18.0.1:80 -r 198.18.1.11:80 down");
    // -e changes what ipvsadm sets, and keeps the check and its state.
    run(c, "ipvsadm -e -t 198.18.0.1:80 -r 198.18.1.11:80 -m -w 4");
    EXPECT_EQ(run(c, "ipvsadm -L -n"),
              "IP Virtual Server version 1.2.1 (size=4096)\n"
              "Prot LocalAddress:Port Scheduler Flags\n"
              "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
              "TCP  198.18.0.1:80 rr\n"
              "  -> 198.18.1.11:80               Masq    0      0          0         \n"
              "  -> 198.18.1.12:80               Masq    2      0          0         \n");
    EXPECT_NE(run(c, "ipvsadm -S -n").find("-r 198.18.1.11:80 -m -w 4"), std::string::npos);
    EXPECT_EQ(run(c, "healthcheck -S"),
              "-a -t 198.18.0.1:80 -r 198.18.1.11:80 --http /health --expect 204 --interval 0.5 "
              "--timeout 0.25 --rise 1 --fall 2\n"
              "-a -t 198.18.0.1:80 -r 198.18.1.12:80 --tcp --interval 2 --timeout 2 --rise 2 "
              "--fall 3\n"
              "--state -t 198.18.0.1:80 -r 198.18.1.11:80 down\n");
    const std::string list = run(c, "healthcheck -L");
    EXPECT_NE(list.find("TCP  198.18.0.1:80\n  -> 198.18.1.11:80"), std::string::npos) << list;
    EXPECT_NE(list.find("DOWN   not checked yet"), std::string::npos) << list;
    // The snapshot's weight is the live one.
    auto snap = buildSnapshot(c.services(), c.nat(), c.nat6(), KernelView{}, {}, 1);
    const auto* svc = snap->v4.findService(kProtoTcp, IpAddr::parse("198.18.0.1")->v4(), htons(80));
    ASSERT_NE(svc, nullptr);
    EXPECT_EQ(svc->backends[0].weight, 0u);
    EXPECT_EQ(svc->backends[1].weight, 2u);
  }
  Commands again;
  ASSERT_TRUE(again.useStateFile(path_).ok());
  EXPECT_EQ(again.saveState(), read());
  const auto& dests = again.services().services().begin()->second.dests;
  ASSERT_EQ(dests.size(), 2u);
  ASSERT_TRUE(dests[0].check.has_value());
  EXPECT_TRUE(dests[0].down);
  EXPECT_EQ(dests[0].weight, 4u);
  EXPECT_EQ(dests[0].check->path, "/health");
  EXPECT_EQ(dests[0].check->interval_ms, 500u);
  EXPECT_FALSE(dests[1].down);
  // Deleting the check brings the server back; deleting the server takes its check.
  run(again, "healthcheck -d -t 198.18.0.1:80 -r 198.18.1.11:80");
  EXPECT_FALSE(again.services().services().begin()->second.dests[0].down);
  run(again, "ipvsadm -d -t 198.18.0.1:80 -r 198.18.1.12:80");
  EXPECT_EQ(run(again, "healthcheck -S"), "");
}

// meshlbctl announce: a prefix is to be announced while one of its services has a real
// server of weight above 0 (named ones, or every address service inside it); drained,
// nothing is; the configuration round-trips through the state file; refusals change
// nothing.
TEST_F(StateFile, AnnouncementsFollowUsableServicesAndAreSaved) {
  bool changed = false;
  auto run = [&](Commands& c, const std::string& line) {
    auto r = c.run(words(line), "", &changed);
    EXPECT_TRUE(r.ok()) << line << ": " << r.status();
    return r.ok() ? *r : "";
  };
  auto announced = [](const Commands& c) {
    std::string out;
    for (const AnnouncedRoute& r : prefixesToAnnounce(c.announce(), c.services())) {
      absl::StrAppend(&out, r.str(), " ");
    }
    return out;
  };
  {
    Commands c;
    ASSERT_TRUE(c.useStateFile(path_).ok());
    run(c, "announce -a 198.18.100.1/32");
    run(c, "announce -a 198.18.101.0/24 -t 198.18.101.7:443");
    EXPECT_EQ(announced(c), "");  // no service yet
    run(c, "ipvsadm -A -t 198.18.100.1:80 -s mh");
    EXPECT_EQ(announced(c), "");  // a service, no real server
    run(c, "ipvsadm -a -t 198.18.100.1:80 -r 198.18.1.11:80 -m -w 0");
    EXPECT_EQ(announced(c), "");  // weight 0
    run(c, "ipvsadm -e -t 198.18.100.1:80 -r 198.18.1.11:80 -m -w 2");
    EXPECT_EQ(announced(c), "198.18.100.1/32 ");
    // A health check's fall takes the last usable server, and the prefix, away.
    run(c, "healthcheck -a -t 198.18.100.1:80 -r 198.18.1.11:80");
    run(c, "healthcheck --state -t 198.18.100.1:80 -r 198.18.1.11:80 down");
    EXPECT_EQ(announced(c), "");
    run(c, "healthcheck --state -t 198.18.100.1:80 -r 198.18.1.11:80 up");
    // The /24 follows its named service only, not 198.18.101.9's.
    run(c, "ipvsadm -A -t 198.18.101.9:80 -s rr");
    run(c, "ipvsadm -a -t 198.18.101.9:80 -r 198.18.1.12:80 -m");
    EXPECT_EQ(announced(c), "198.18.100.1/32 ");
    run(c, "ipvsadm -A -t 198.18.101.7:443 -s rr");
    run(c, "ipvsadm -a -t 198.18.101.7:443 -r 198.18.1.13:443 -m");
    EXPECT_EQ(announced(c), "198.18.100.1/32 198.18.101.0/24 ");
    EXPECT_NE(run(c, "announce --drain").find("connections tracked: 0"), std::string::npos);
    EXPECT_EQ(announced(c), "");
    const std::string list = run(c, "announce -L");
    EXPECT_NE(list.find("198.18.100.1/32      withdrawn: drained"), std::string::npos) << list;
    EXPECT_EQ(run(c, "announce -S"),
              "-a 198.18.100.1/32\n-a 198.18.101.0/24 -t 198.18.101.7:443\n--drain\n");
  }
  Commands again;
  ASSERT_TRUE(again.useStateFile(path_).ok());
  EXPECT_EQ(again.saveState(), read());
  EXPECT_TRUE(again.announce().drained);
  run(again, "announce --undrain");
  EXPECT_EQ(announced(again), "198.18.100.1/32 198.18.101.0/24 ");
  run(again, "announce -d 198.18.101.0/24");
  EXPECT_EQ(announced(again), "198.18.100.1/32 ");
  // An SNAT address: announced whatever the services (--always), a peer's as a backup
  // (--metric); drained, withdrawn as every prefix is; saved as given.
  run(again, "announce -a 198.18.9.1/32 --always");
  run(again, "announce -a 198.18.9.2/32 --metric 100 --always");
  EXPECT_EQ(announced(again), "198.18.100.1/32 198.18.9.1/32 198.18.9.2/32 metric 100 ");
  EXPECT_NE(run(again, "announce -L").find("198.18.9.2/32 metric 100 withdrawn: meshlbd is not"),
            std::string::npos);
  run(again, "announce --drain");
  EXPECT_EQ(announced(again), "");
  run(again, "announce --undrain");
  EXPECT_EQ(run(again, "announce -S"),
            "-a 198.18.100.1/32\n-a 198.18.9.1/32 --always\n-a 198.18.9.2/32 --metric 100 "
            "--always\n");
  // Following an IPv6 firewall-mark service: named with -6, as ipvsadm names it.
  run(again, "announce -a 198.18.105.0/24 -f 9 -6");
  EXPECT_NE(run(again, "announce -S").find("-a 198.18.105.0/24 -f 9 -6\n"), std::string::npos);
  run(again, "announce -d 198.18.105.0/24");
  // IPv6: a VIP's /128 follows its services as IPv4's /32 does; a prefix of another
  // family holds none of them.
  run(again, "announce -a 2001:db8:100::1");
  run(again, "announce -a 2001:db8:100::/48 -t [2001:db8:100::7]:443");
  EXPECT_EQ(announced(again), "198.18.100.1/32 198.18.9.1/32 198.18.9.2/32 metric 100 ");
  run(again, "ipvsadm -A -t [2001:db8:100::1]:80 -s mh");
  run(again, "ipvsadm -a -t [2001:db8:100::1]:80 -r [2001:db8:1::11]:80 -m");
  run(again, "ipvsadm -A -t [2001:db8:100::7]:443 -s rr");
  run(again, "ipvsadm -a -t [2001:db8:100::7]:443 -r [2001:db8:1::12]:443 -m -w 0");
  EXPECT_EQ(announced(again),
            "198.18.100.1/32 198.18.9.1/32 198.18.9.2/32 metric 100 2001:db8:100::1/128 ");
  run(again, "ipvsadm -e -t [2001:db8:100::7]:443 -r [2001:db8:1::12]:443 -m -w 1");
  EXPECT_NE(announced(again).find("2001:db8:100::/48 "), std::string::npos);
  EXPECT_NE(run(again, "announce -S")
                .find("-a 2001:db8:100::1/128\n-a 2001:db8:100::/48 -t "
                      "[2001:db8:100::7]:443\n"),
            std::string::npos);
  run(again, "announce -d 2001:db8:100::/48");
  run(again, "announce -d 2001:db8:100::1/128");

  const std::pair<const char*, const char*> refused[] = {
      {"announce -a 198.18.100.1/24", "host bits set (the prefix is 198.18.100.0/24)"},
      {"announce -a 198.18.100.1/32", "announced already"},
      {"announce -d 198.18.55.0/24", "is not announced"},
      {"announce -a 198.18.102.0/24 -t 198.18.100.1:80", "is not inside"},
      {"announce -a 2001:db8::1/64", "host bits set (the prefix is 2001:db8::/64)"},
      {"announce -a 2001:db8::/129", "invalid prefix length"},
      {"announce -a 2001:db8:7::/48 -t 198.18.100.1:80", "is not inside"},
      {"announce -a 198.18.102.0/33", "invalid prefix length"},
      {"announce -a 198.18.104.0/24 -6 -f 7", "-6 used before -f"},
      {"announce -d 198.18.100.1/32 -t 198.18.100.1:80", "with -a only"},
      {"announce -d 198.18.100.1/32 --metric 5", "with -a only"},
      {"announce -a 198.18.103.0/24 --metric -1", "--metric '-1'"},
      {"announce -a 198.18.103.0/24 --always -t 198.18.103.1:80", "name none with it"},
      {"announce --bogus", "unknown option"},
      {"announce", "no command"},
  };
  const std::string before = again.saveState();
  for (const auto& [line, why] : refused) {
    auto r = again.run(words(line), "", &changed);
    EXPECT_FALSE(r.ok()) << line;
    EXPECT_NE(std::string(r.status().message()).find(why), std::string::npos)
        << line << ": " << r.status();
    EXPECT_FALSE(changed);
  }
  EXPECT_EQ(again.saveState(), before);
}

TEST(Commands, HealthcheckRefusalsNameTheProblemAndChangeNothing) {
  Commands c;
  bool changed = false;
  for (const char* line :
       {"ipvsadm -A -f 7 -s rr", "ipvsadm -a -f 7 -r 198.18.1.11 -m", "ipvsadm -A -t 198.18.0.1:80",
        "ipvsadm -a -t 198.18.0.1:80 -r 198.18.1.11"}) {
    ASSERT_TRUE(c.run(words(line), "", &changed).ok()) << line;
  }
  const std::string before = c.saveState();
  const std::pair<const char*, const char*> cases[] = {
      {"healthcheck -a -f 7 -r 198.18.1.11", "--check-port"},
      {"healthcheck -a -t 198.18.0.1:80 -r 198.18.1.99", "No such destination"},
      {"healthcheck -a -t 198.18.0.2:80 -r 198.18.1.11", "Service not defined"},
      {"healthcheck -a -t 198.18.0.1:80 -r 198.18.1.11 --interval 1 --timeout 2", "longer"},
      {"healthcheck -a -t 198.18.0.1:80 -r 198.18.1.11 --http health", "a path from /"},
      {"healthcheck -a -t 198.18.0.1:80 -r 198.18.1.11 --expect 99", "from 100 to 599"},
      {"healthcheck -a -t 198.18.0.1:80 -r 198.18.1.11 --rise 0", "from 1 to 100"},
      {"healthcheck -a -t 198.18.0.1:80 -r 198.18.1.11 --interval 0.01", "0.1 to 3600"},
      {"healthcheck -e -t 198.18.0.1:80 -r 198.18.1.11 --rise 3", "-a adds one"},
      {"healthcheck -d -t 198.18.0.1:80 -r 198.18.1.11", "no health check"},
      {"healthcheck --state -t 198.18.0.1:80 -r 198.18.1.11 down", "no health check"},
      {"healthcheck -t 198.18.0.1:80 -r 198.18.1.11", "no command"},
      {"healthcheck -a -t 198.18.0.1:80 -r 198.18.1.11 --bogus", "unknown option '--bogus'"},
  };
  for (const auto& [line, why] : cases) {
    auto r = c.run(words(line), "", &changed);
    EXPECT_FALSE(r.ok()) << line;
    EXPECT_NE(std::string(r.status().message()).find(why), std::string::npos)
        << line << ": " << r.status();
    EXPECT_FALSE(changed) << line;
  }
  ASSERT_TRUE(
      c.run(words("healthcheck -a -f 7 -r 198.18.1.11 --check-port 8080"), "", &changed).ok());
  auto twice = c.run(words("healthcheck -a -f 7 -r 198.18.1.11 --check-port 8080"), "", &changed);
  EXPECT_NE(std::string(twice.status().message()).find("-e changes it"), std::string::npos);
  // An IPv6 firewall-mark service of the same mark is named with -6, as ipvsadm names it.
  ASSERT_TRUE(c.run(words("ipvsadm -A -f 7 -6 -s rr"), "", &changed).ok());
  ASSERT_TRUE(c.run(words("ipvsadm -a -f 7 -6 -r [2001:db8::11]:0 -m"), "", &changed).ok());
  EXPECT_FALSE(
      c.run(words("healthcheck -a -f 7 -r [2001:db8::11] --check-port 80"), "", &changed).ok());
  ASSERT_TRUE(
      c.run(words("healthcheck -a -f 7 -6 -r [2001:db8::11] --check-port 80"), "", &changed).ok());
  EXPECT_NE(c.run(words("healthcheck -S"), "", &changed)->find("-f 7 -6 -r [2001:db8::11]:0"),
            std::string::npos)
      << *c.run(words("healthcheck -S"), "", &changed);
  EXPECT_NE(c.run(words("healthcheck -a -6 -f 8 -r 198.18.1.11"), "", &changed)
                .status()
                .message()
                .find("-6 used before -f"),
            std::string::npos);
  EXPECT_NE(c.saveState(), before);
  EXPECT_NE(std::string(c.run(words("healthcheck -h"), "", &changed)->c_str()).find("usage"),
            std::string::npos);
}

// The checker against real sockets on the loopback: a listener that goes away and
// comes back, and an HTTP server answering the wrong status.
TEST(HealthChecker, FallsAndRisesWithARealServer) {
  auto listener = [](uint16_t* port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(*port);
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    listen(fd, 64);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    *port = ntohs(a.sin_port);
    return fd;
  };
  uint16_t port = 0;
  int fd = listener(&port);
  ServiceModel m;
  ServiceKey k;
  k.protocol = kProtoTcp;
  k.addr = IpAddr::parse("198.18.0.1").value();
  k.port = 80;
  ServiceOptions o;
  o.scheduler = "rr";
  ASSERT_TRUE(m.addService(k, o).ok());
  RealServer d;
  d.addr = IpAddr::parse("127.0.0.1").value();
  d.port = port;
  ASSERT_TRUE(m.addDest(k, d).ok());
  HealthCheck c;
  c.interval_ms = 100;
  c.timeout_ms = 100;
  c.rise = 2;
  c.fall = 2;
  ASSERT_TRUE(m.setCheck(k, d.addr, port, c).ok());
  HealthChecker checker;
  checker.start();
  checker.set(m);
  const BackendId id = m.services().begin()->second.dests[0].id;
  auto wait = [&](auto&& done) {  // up to 5 s
    for (int i = 0; i < 500; ++i) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };
  ASSERT_TRUE(wait([&] {
    auto s = checker.status(id);
    return s && s->checks >= 3;
  }));
  EXPECT_EQ(checker.status(id)->last, "ok");
  EXPECT_TRUE(checker.transitions().empty());
  close(fd);  // the server goes
  std::vector<HealthChecker::Transition> t;
  ASSERT_TRUE(wait([&] {
    t = checker.transitions();
    return !t.empty();
  }));
  EXPECT_TRUE(t[0].down);
  EXPECT_EQ(t[0].why, "Connection refused, 2 in a row");
  ASSERT_TRUE(m.setDown(k, d.addr, port, true).ok());
  checker.set(m);
  fd = listener(&port);  // back, on the same port
  ASSERT_TRUE(wait([&] {
    t = checker.transitions();
    return !t.empty();
  }));
  EXPECT_FALSE(t[0].down);
  EXPECT_EQ(t[0].why, "ok, 2 in a row");
  // HTTP, on a port of its own (--check-port): the server answers 503 where 200 is
  // expected.
  close(fd);
  uint16_t http_port = 0;
  fd = listener(&http_port);
  std::thread http([fd] {
    for (int i = 0; i < 3; ++i) {
      int conn = accept(fd, nullptr, nullptr);
      if (conn < 0) return;
      char buf[512];
      (void)!recv(conn, buf, sizeof buf, 0);
      const char reply[] = "HTTP/1.0 503 Service Unavailable\r\n\r\n";
      (void)!send(conn, reply, sizeof reply - 1, MSG_NOSIGNAL);
      close(conn);
    }
  });
  ASSERT_TRUE(m.setDown(k, d.addr, port, false).ok());
  c.http = true;
  c.path = "/ready";
  c.port = http_port;
  c.interval_ms = c.timeout_ms = 1000;  // the answer has a thread to come from
  ASSERT_TRUE(m.setCheck(k, d.addr, port, c).ok());
  checker.set(m);
  ASSERT_TRUE(wait([&] {
    t = checker.transitions();
    return !t.empty();
  }));
  EXPECT_TRUE(t[0].down);
  EXPECT_EQ(t[0].why, "status 503, 2 in a row");
  shutdown(fd, SHUT_RDWR);
  close(fd);
  http.join();
}

// A change is one the models see, whatever the command: an edit to the same
// weight, a delete and re-add that revives the same server, and listings are not.
// A daemon that refuses early answers and closes without reading the request; the
// client must show that answer rather than die of SIGPIPE (issue 13, defect 8: exit
// 141 and no message). The 2 MiB request is far more than the socket buffers take.
TEST(Client, AnEarlyRefusalIsShownNotASigpipe) {
  const std::string path = ::testing::TempDir() + "/meshlb-client-test.sock";
  ::unlink(path.c_str());
  const int lfd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(lfd, 1), 0);
  std::thread daemon([lfd] {
    const int fd = ::accept(lfd, nullptr, nullptr);
    const std::string reply = encodeReply({false, "too many control clients"});
    (void)!::write(fd, reply.data(), reply.size());
    ::close(fd);
  });
  Request req{{"ipvsadm", "-R"}, std::string(2 << 20, 'x')};
  auto r = callDaemon(path, req);
  daemon.join();
  ::close(lfd);
  ::unlink(path.c_str());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->ok);
  EXPECT_EQ(r->text, "too many control clients");
}

TEST(Commands, ChangesAreDetectedInTheModels) {
  Commands c;
  bool changed = false;
  ASSERT_TRUE(c.run(words("ipvsadm -A -t 198.18.0.1:80 -s rr"), "", &changed).ok());
  EXPECT_TRUE(changed);
  ASSERT_TRUE(
      c.run(words("ipvsadm -a -t 198.18.0.1:80 -r 198.18.1.11:80 -m -w 2"), "", &changed).ok());
  EXPECT_TRUE(changed);
  ASSERT_TRUE(
      c.run(words("ipvsadm -e -t 198.18.0.1:80 -r 198.18.1.11:80 -m -w 2"), "", &changed).ok());
  EXPECT_FALSE(changed);
  ASSERT_TRUE(
      c.run(words("ipvsadm -e -t 198.18.0.1:80 -r 198.18.1.11:80 -m -w 3"), "", &changed).ok());
  EXPECT_TRUE(changed);
  ASSERT_TRUE(c.run(words("ipvsadm -E -t 198.18.0.1:80 -s rr"), "", &changed).ok());
  EXPECT_FALSE(changed);
  ASSERT_TRUE(c.run(words("iptables -t nat -F"), "", &changed).ok());
  EXPECT_FALSE(changed);
  ASSERT_TRUE(
      c.run(words("iptables -t mangle -A INPUT -d 198.18.0.5 -j MARK --set-mark 9"), "", &changed)
          .ok());
  EXPECT_TRUE(changed);
  ASSERT_TRUE(c.run(words("ipvsadm -S -n"), "", &changed).ok());
  EXPECT_FALSE(changed);
}

// A change tells the statistics what a service lost (its counters keep what those
// servers counted) and which services are new in their slot; nothing for a change
// refused or one that changes no server.
TEST(Commands, ChangesTellTheStatisticsWhatWentAndWhatCame) {
  std::vector<std::string> said;
  IpvsDataplane dp;
  dp.removed = [&](uint32_t svc, const std::vector<BackendId>& ids) {
    said.push_back(absl::StrCat("removed ", svc, ":", ids.size()));
  };
  dp.added = [&](uint32_t svc) { said.push_back(absl::StrCat("added ", svc)); };
  Commands c({}, dp);
  bool changed = false;
  auto run = [&](const char* l) {
    said.clear();
    (void)c.run(words(l), "", &changed);
    return absl::StrJoin(said, ", ");
  };
  EXPECT_EQ(run("ipvsadm -A -t 198.18.0.1:80 -s rr"), "added 0");
  EXPECT_EQ(run("ipvsadm -a -t 198.18.0.1:80 -r 198.18.1.11:80 -m"), "");
  EXPECT_EQ(run("ipvsadm -a -t 198.18.0.1:80 -r 198.18.1.12:80 -m"), "");
  EXPECT_EQ(run("ipvsadm -e -t 198.18.0.1:80 -r 198.18.1.12:80 -m -w 3"), "");
  EXPECT_EQ(run("ipvsadm -d -t 198.18.0.1:80 -r 198.18.1.12:80"), "removed 0:1");
  EXPECT_EQ(run("ipvsadm -d -t 198.18.0.1:80 -r 198.18.1.99:80"), "");  // refused
  EXPECT_EQ(run("ipvsadm -A -t 198.18.0.2:80 -s rr"), "added 1");
  EXPECT_EQ(run("ipvsadm -C"), "removed 0:1, removed 1:0");
}

// The daemon serves IPv6 services (NAT66, full NAT66, -g); a tunnel (-i) to an IPv6
// real server it cannot carry yet is refused, nothing changed.
TEST(Commands, TheDaemonRefusesWhatItsDataplaneCannotCarry) {
  Commands c;
  c.setDataplaneLimits(true);
  bool changed = false;
  ASSERT_TRUE(c.run(words("ipvsadm -A -t [2001:db8::1]:80 -s rr"), "", &changed).ok());
  ASSERT_TRUE(
      c.run(words("ipvsadm -a -t [2001:db8::1]:80 -r [2001:db8:1::9]:80 -m"), "", &changed).ok());
  changed = false;
  auto r = c.run(words("ipvsadm -a -t [2001:db8::1]:80 -r [2001:db8:1::8]:80 -i"), "", &changed);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("tunnelling (-i) to IPv6 real servers"), std::string::npos);
  EXPECT_FALSE(changed);
  ASSERT_TRUE(c.run(words("ipvsadm -A -f 5 -6 -s rr"), "", &changed).ok());
  EXPECT_TRUE(c.run(words("ipvsadm -a -f 5 -6 -r [2001:db8::9]:0 -m"), "", &changed).ok());
}

TEST(Commands, UnknownAndRejectedChangeNothing) {
  Commands c([](bool json) { return json ? std::string("{}") : std::string("counters\n"); });
  bool changed = true;
  EXPECT_FALSE(c.run({}, "", &changed).ok());
  EXPECT_FALSE(c.run(words("ipvsadmm -L"), "", &changed).ok());
  EXPECT_FALSE(c.run(words("stats --xml"), "", &changed).ok());
  EXPECT_EQ(*c.run(words("stats --json"), "", &changed), "{}");
  EXPECT_FALSE(c.run(words("ipvsadm -A -t 198.18.0.1:80 -s lcx"), "", &changed).ok());
  EXPECT_FALSE(changed);
  EXPECT_EQ(settingsOf(c.saveState()), "ipvsadm --set 900 120 300\n");
}

TEST(SnapshotBuilder, ServicesRoutesNeighboursAndSnat) {
  Commands c;
  bool changed;
  for (const char* l :
       {"ipvsadm -A -t 198.18.0.1:8080 -s mh", "ipvsadm -a -t 198.18.0.1:8080 -r 198.18.1.12:80 -m",
        "ipvsadm -a -t 198.18.0.1:8080 -r 198.18.1.11:80 -m -w 2", "ipvsadm -A -f 256 -s rr",
        "ipvsadm -a -f 256 -r 198.18.1.13:0 -m",
        "iptables -t mangle -A PREROUTING -p tcp --dport 8081 -j MARK --set-mark 256",
        "iptables -t nat -A POSTROUTING -d 198.18.1.0/24 -m ipvs --ipvs -j MASQUERADE"}) {
    ASSERT_TRUE(c.run(words(l), "", &changed).ok()) << l;
  }
  auto ip = [](const char* s) { return IpAddr::parse(s).value(); };
  auto v4 = [&](const char* s) { return ip(s).v4(); };
  KernelView k;
  k.addrs = {{10, ip("198.18.0.1"), 24}, {11, ip("198.18.1.1"), 24}};
  k.routes = {{ip("198.18.0.0"), 24, {}, 10},
              {ip("198.18.1.0"), 24, {}, 11},
              {ip("0.0.0.0"), 0, ip("198.18.0.254"), 10},
              {ip("198.19.0.0"), 16, {}, 99}};
  k.neighs = {{11, ip("198.18.1.11"), {2, 0, 0, 0, 0, 0x11}}};
  std::vector<TwinPort> ports{{10, {2, 0, 0, 0, 0, 1}}, {11, {2, 0, 0, 0, 0, 2}}};
  auto s = buildSnapshot(c.services(), c.nat(), c.nat6(), k, ports, 7);
  const FamilySnap<Ipv4Addr>& f = s->v4;
  EXPECT_EQ(s->generation, 7u);
  ASSERT_EQ(f.services.size(), 2u);
  EXPECT_TRUE(s->v6.services.empty() && s->v6.routes.empty());
  const auto* svc = f.findService(6, v4("198.18.0.1"), htons(8080));
  // A packet to port 8081 anywhere is marked 256 and belongs to the fwmark service.
  const auto* marked =
      f.classify(6, v4("198.18.0.10"), v4("198.18.0.99"), htons(40000), htons(8081));
  ASSERT_NE(marked, nullptr);
  EXPECT_EQ(marked->fwmark, 256u);
  EXPECT_EQ(f.classify(17, v4("198.18.0.10"), v4("198.18.0.99"), htons(40000), htons(8081)),
            nullptr);  // the rule says -p tcp
  EXPECT_EQ(f.classify(6, v4("198.18.0.10"), v4("198.18.0.1"), htons(40000), htons(8080)), svc);
  ASSERT_NE(svc, nullptr);
  ASSERT_EQ(svc->backends.size(), 2u);
  EXPECT_EQ(svc->backends[0].addr, v4("198.18.1.11"));  // sorted by address
  EXPECT_EQ(svc->max_weight, 2u);
  EXPECT_EQ(svc->sched, findScheduler("mh"));
  ASSERT_NE(svc->maglev, nullptr);
  // A kernel-side change alone reuses the Maglev table; a backend change rebuilds it.
  k.neighs.push_back({11, ip("198.18.1.12"), {2, 0, 0, 0, 0, 0x12}});
  auto s2 = buildSnapshot(c.services(), c.nat(), c.nat6(), k, ports, 8, s.get());
  EXPECT_EQ(s2->v4.findService(6, v4("198.18.0.1"), htons(8080))->maglev, svc->maglev);
  ASSERT_TRUE(
      c.run(words("ipvsadm -e -t 198.18.0.1:8080 -r 198.18.1.12:80 -m -w 3"), "", &changed).ok());
  auto s3 = buildSnapshot(c.services(), c.nat(), c.nat6(), k, ports, 9, s2.get());
  EXPECT_NE(s3->v4.findService(6, v4("198.18.0.1"), htons(8080))->maglev, svc->maglev);
  for (const auto& [k, svc2] : c.services().services()) {
    for (const RealServer& d : svc2.dests) EXPECT_TRUE(s->backendLive(d.id));  // fwmark's too
  }
  const BackendId live = svc->backends[0].id;
  EXPECT_FALSE(s->backendLive(
      BackendId::make(live.generation() + 7, live.slot())));  // another generation of a live slot
  EXPECT_FALSE(s->backendLive(BackendId::make(0, 999)));
  ASSERT_NE(f.route(v4("198.18.1.50")), nullptr);
  EXPECT_EQ(f.route(v4("198.18.1.50"))->port, 1);
  EXPECT_EQ(f.route(v4("203.0.113.9"))->gateway, v4("198.18.0.254"));  // default route
  EXPECT_EQ(f.routes.size(), 3u);  // the route via a non-twin interface is not ours
  EXPECT_EQ(f.port_addr[1], v4("198.18.1.1"));
  EXPECT_TRUE(f.snat_addrs.contains(v4("198.18.1.1")));   // MASQUERADE towards 198.18.1.0/24
  EXPECT_FALSE(f.snat_addrs.contains(v4("198.18.0.1")));  // the other twin's: a VIP, not SNAT
  EXPECT_NE(f.neigh.find(1, v4("198.18.1.11")), nullptr);
  EXPECT_EQ(s->timeouts.of(ConnState::kEstablished), 900000u);
}

// Issue 13, defect 7: every publish rebuilt the service index and the live-server
// array from the whole model. A snapshot built from the one before now rebuilds
// only what the model changed since, and shares every other service (and chunk);
// after any sequence of changes, failed ones included, it must hold exactly what a
// snapshot built from nothing holds.
TEST(SnapshotBuilder, BuiltFromThePreviousItEqualsOneBuiltWhole) {
  Commands c;
  bool changed = false;
  std::mt19937 rng(13);
  KernelView k;
  std::vector<TwinPort> ports{{10, {2, 0, 0, 0, 0, 1}}};
  auto snap = buildSnapshot(c.services(), c.nat(), c.nat6(), k, ports, 1);
  auto vip = [](uint32_t i) { return absl::StrCat("198.18.", i / 200, ".", i % 200 + 1, ":80"); };
  for (int step = 0; step < 400; ++step) {
    const uint32_t i = rng() % 60, j = rng() % 8;
    const std::string svc = i < 50 ? absl::StrCat("-t ", vip(i)) : absl::StrCat("-f ", i);
    // Real servers shared by several services (the -m index counts them).
    const std::string real = absl::StrCat(" -r 198.19.", i % 7, ".", j + 1, i < 50 ? ":80" : ":0");
    std::string cmd;
    switch (rng() % 9) {
      case 0:
        cmd = absl::StrCat("-A ", svc, " -s ", rng() % 2 ? "mh" : "rr");
        break;
      case 1:
        cmd = absl::StrCat("-D ", svc);
        break;
      case 2:
        cmd = absl::StrCat("-E ", svc, " -s ", rng() % 2 ? "mh" : "wrr");
        break;
      case 3:
      case 4: {
        // -m mostly; some -i (Snapshot::tunnels) and -g (in neither index).
        const uint32_t how = rng() % 6;
        cmd = absl::StrCat("-a ", svc, real,
                           how == 0   ? " -i --tun-type gue --tun-port 6080"
                           : how == 1 ? " -g"
                                      : " -m",
                           " -w ", rng() % 4);
        break;
      }
      case 5:
        cmd = absl::StrCat("-e ", svc, real, " -m -w ", rng() % 4);
        break;
      case 6:
        cmd = absl::StrCat("-d ", svc, real);
        break;
      case 7:
        cmd = step % 50 == 7 ? "-C" : absl::StrCat("-A ", svc, " -s wrr");
        break;
      case 8: {  // a -R that changes several services, sometimes failing at its end
        std::string in = absl::StrCat("-A ", svc, " -s rr\n-a ", svc, real, " -m\n-D -t ",
                                      vip((i + 1) % 50), "\n");
        if (rng() % 2) in += "-Q\n";
        (void)c.run(words("ipvsadm -R"), in, &changed);
        break;
      }
    }
    if (!cmd.empty()) (void)c.run(words("ipvsadm " + cmd), "", &changed);  // may be refused
    if (step % 3) continue;  // several changes between snapshots, as while a -R runs
    auto next = buildSnapshot(c.services(), c.nat(), c.nat6(), k, ports, step + 2, snap.get());
    auto whole = buildSnapshot(c.services(), c.nat(), c.nat6(), k, ports, step + 2);
    ASSERT_EQ(next->v4.services.size(), whole->v4.services.size()) << step;
    for (const ServiceSnap<Ipv4Addr>* w : whole->v4.services.all()) {
      const uint64_t key = w->fwmark ? FamilySnap<Ipv4Addr>::fwmarkKey(w->fwmark)
                                     : FamilySnap<Ipv4Addr>::serviceKey(w->proto, w->vip, w->vport);
      const ServiceSnap<Ipv4Addr>* n = next->v4.services.find(key);
      ASSERT_NE(n, nullptr) << step;
      EXPECT_EQ(n->version, w->version);
      EXPECT_EQ(n->slot, w->slot);
      EXPECT_EQ(n->sched, w->sched);
      EXPECT_EQ(n->keys, w->keys);
      EXPECT_EQ(n->weights, w->weights);
      EXPECT_EQ(n->maglev == nullptr, w->maglev == nullptr);
      if (n->maglev && w->maglev) {
        EXPECT_EQ(n->maglev->slots(), w->maglev->slots());
      }
      // Unchanged since the snapshot before: the very same object.
      if (const auto* p = snap->v4.services.find(key); p && p->version == n->version) {
        EXPECT_EQ(p, n);
      }
    }
    EXPECT_EQ(next->live_backend, whole->live_backend) << step;
    // The real-server indexes too: the -m endpoints with their service counts, the -i
    // servers' encapsulation.
    auto entries = [](const auto& table) {
      std::map<uint64_t, std::string> out;
      table.forEach([&](uint64_t k, const auto& v) {
        out[k] = std::string(reinterpret_cast<const char*>(&v), sizeof(v));
      });
      return out;
    };
    EXPECT_EQ(entries(next->v4.masq_servers), entries(whole->v4.masq_servers)) << step;
    EXPECT_EQ(entries(next->tunnels), entries(whole->tunnels)) << step;
    EXPECT_EQ(entries(next->quiescent), entries(whole->quiescent)) << step;
    snap = std::move(next);
  }
  EXPECT_GT(snap->v4.services.size(), 10u);
  EXPECT_GT(snap->v4.masq_servers.size(), 10u);
  EXPECT_GT(snap->tunnels.size(), 0u);
  // From another model's snapshot (another id), a build is whole.
  Commands other;
  ASSERT_TRUE(other.run(words("ipvsadm -A -f 7 -s rr"), "", &changed).ok());
  auto mixed =
      buildSnapshot(other.services(), other.nat(), other.nat6(), k, ports, 999, snap.get());
  EXPECT_EQ(mixed->v4.services.size(), 1u);
}

TEST(SnapshotBuilder, NeighbourTableFindsEveryEntryThroughGrowth) {
  NeighTable<Ipv4Addr> t;
  auto addr = [](uint32_t i) { return Ipv4Addr{htonl(0xc6120000u + (i << 8))}; };
  EXPECT_EQ(t.find(0, Ipv4Addr{1}), nullptr);  // empty: no slots at all
  // Keys that share low bits, across several doublings.
  for (uint32_t i = 0; i < 1000; ++i) {
    t.set(static_cast<uint16_t>(i % 3), addr(i),
          {2, 0, 0, 0, static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)});
  }
  EXPECT_EQ(t.size(), 1000u);
  for (uint32_t i = 0; i < 1000; ++i) {
    const auto* mac = t.find(static_cast<uint16_t>(i % 3), addr(i));
    ASSERT_NE(mac, nullptr) << i;
    EXPECT_EQ((*mac)[4], static_cast<uint8_t>(i >> 8));
    EXPECT_EQ((*mac)[5], static_cast<uint8_t>(i));
  }
  // The same address on another port is another neighbour; setting again replaces.
  EXPECT_EQ(t.find(1, addr(0)), nullptr);
  t.set(0, addr(0), {2, 0, 0, 0, 0x77, 0x77});
  EXPECT_EQ(t.size(), 1000u);
  EXPECT_EQ((*t.find(0, addr(0)))[5], 0x77);
}

}  // namespace
}  // namespace meshlb
