// meshlb-swarm's pure parts: the Engine API documents of a real two-node Swarm
// (captured from Docker 20.10 in tests/e2e/swarm_topology.sh: web 8080->80 x4,
// dns 5353->53/udp x1, hostpub with a host-mode and an SCTP port, an encrypted
// network), and the plans that move the appliance to the Swarm's state.
#include <fstream>
#include <sstream>

#include "cluster.h"
#include "gtest/gtest.h"
#include "plan.h"

namespace meshlb::swarm {
namespace {

std::string slurp(const std::string& name) {
  std::ifstream f(std::string(MESHLB_TEST_DATA_DIR) + "/swarm/" + name);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

ApiDocs realDocs() {
  return {slurp("swarm.json"), slurp("network.json"), slurp("nodes.json"), slurp("services.json"),
          slurp("tasks.json")};
}

IpAddr ip(const char* s) { return *IpAddr::parse(s); }

const Service* find(const Cluster& c, const std::string& name) {
  for (const auto& s : c.services) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

TEST(SwarmCluster, ParsesARealSwarm) {
  auto c = parseCluster(realDocs());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->data_port, 4789);
  EXPECT_EQ(c->network.name, "ingress");
  EXPECT_EQ(c->network.vni, 4097u);
  EXPECT_EQ(c->network.subnet.str(), "198.18.128.0/24");
  ASSERT_TRUE(c->network.range.has_value());
  EXPECT_EQ(c->network.range->str(), "198.18.128.0/25");
  EXPECT_FALSE(c->network.encrypted);

  const Service* web = find(*c, "web");
  ASSERT_NE(web, nullptr);
  ASSERT_EQ(web->ports.size(), 1u);
  EXPECT_EQ(web->ports[0].proto, Proto::kTcp);
  EXPECT_EQ(web->ports[0].published, 8080);
  EXPECT_EQ(web->ports[0].target, 80);
  ASSERT_EQ(web->tasks.size(), 4u);
  std::set<std::string> nodes;
  for (const auto& t : web->tasks) {
    EXPECT_TRUE(c->network.subnet.contains(t.addr)) << t.addr.str();
    nodes.insert(t.node.str());
  }
  EXPECT_EQ(nodes, (std::set<std::string>{"198.19.0.2", "198.19.0.3"}));

  const Service* dns = find(*c, "dns");
  ASSERT_NE(dns, nullptr);
  ASSERT_EQ(dns->ports.size(), 1u);
  EXPECT_EQ(dns->ports[0].proto, Proto::kUdp);
  EXPECT_EQ(dns->ports[0].published, 5353);
  EXPECT_EQ(dns->ports[0].target, 53);
  EXPECT_EQ(dns->tasks.size(), 1u);

  // Host mode and SCTP are refused, with the reason; the service is not served.
  EXPECT_EQ(find(*c, "hostpub"), nullptr);
  ASSERT_EQ(c->refusals.size(), 2u);
  EXPECT_NE(c->refusals[0].find("8090/tcp: published in host mode"), std::string::npos);
  EXPECT_NE(c->refusals[1].find("9999/sctp: meshlb balances TCP and UDP only"), std::string::npos);
}

// A task Swarm is stopping but that still runs is leaving, not served.
TEST(SwarmCluster, ATaskBeingStoppedIsLeaving) {
  ApiDocs d = realDocs();
  const auto at = d.tasks.find("\"DesiredState\": \"running\"");
  ASSERT_NE(at, std::string::npos);
  d.tasks.replace(at, 25, "\"DesiredState\": \"shutdown\"");
  auto c = parseCluster(d);
  ASSERT_TRUE(c.ok());
  size_t serving = 0, leaving = 0;
  for (const auto& s : c->services) {
    serving += s.tasks.size();
    leaving += s.leaving.size();
  }
  EXPECT_EQ(serving, 4u + 1u - 1u);
  EXPECT_EQ(leaving, 1u);
}

TEST(SwarmCluster, RefusesAnEncryptedNetwork) {
  ApiDocs d = realDocs();
  d.network = slurp("network-encrypted.json");
  auto c = parseCluster(d);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("is encrypted"), std::string::npos) << c.status();
}

TEST(SwarmCluster, TasksOnADownNodeOrNotRunningAreNotServed) {
  ApiDocs d = realDocs();
  // node2 (198.19.0.3) goes down; one of node1's tasks is still starting.
  const auto down = d.nodes.find("\"State\": \"ready\"");
  ASSERT_NE(down, std::string::npos);
  auto c0 = parseCluster(d);
  d.nodes.replace(down, 16, "\"State\": \"down\"");
  auto c = parseCluster(d);
  ASSERT_TRUE(c.ok());
  size_t before = 0, after = 0;
  for (const auto& s : c0->services) before += s.tasks.size();
  for (const auto& s : c->services) after += s.tasks.size();
  EXPECT_LT(after, before);
  for (const auto& s : c->services) {
    for (const auto& t : s.tasks) EXPECT_NE(t.node, IpAddr{});
  }
}

TEST(SwarmCluster, MalformedDocumentsAreErrorsNotCrashes) {
  for (const char* bad : {"", "{", "[1,2", "null", "\"x\"", "{\"Id\": 5}", "[{\"Status\": 7}]"}) {
    ApiDocs d = realDocs();
    d.network = bad;
    EXPECT_FALSE(parseCluster(d).ok()) << bad;
    d = realDocs();
    d.tasks = bad;
    auto c = parseCluster(d);  // tasks that cannot be read are none, or an error
    if (c.ok()) {
      for (const auto& s : c->services) EXPECT_TRUE(s.tasks.empty()) << bad;
    }
  }
}

Options opts() {
  Options o;
  o.overlay_addr = ip("198.18.128.250");
  o.publish = {ip("198.18.0.1")};
  return o;
}

std::vector<std::string> lines(const Plan& p) {
  std::vector<std::string> out;
  for (const auto& c : p.commands) {
    std::string s;
    for (const auto& w : c) s += (s.empty() ? "" : " ") + w;
    out.push_back(s);
  }
  return out;
}

Cluster webCluster(std::vector<const char*> tasks) {
  Cluster c;
  c.network.name = "ingress";
  c.network.vni = 4097;
  c.network.subnet = *Prefix::parse("198.18.128.0/24");
  Service s;
  s.name = "web";
  s.ports = {{Proto::kTcp, 8080, 80}};
  for (const char* t : tasks) s.tasks.push_back({t, ip(t), ip("198.19.0.2")});
  c.services.push_back(s);
  return c;
}

const char* kMark = "1056656";  // 0x100000 + 8080

TEST(SwarmPlan, NewPortServiceThenServersThenSteering) {
  Draining dr;
  Plan p =
      makePlan(webCluster({"198.18.128.3", "198.18.128.4"}), Applied{}, opts(), dr, Clock::now());
  EXPECT_EQ(lines(p),
            (std::vector<std::string>{
                "iptables -t nat -A POSTROUTING -d 198.18.128.0/24 -m ipvs --ipvs -j SNAT "
                "--to-source 198.18.128.250",
                std::string("ipvsadm -A -f ") + kMark + " -s rr",
                std::string("ipvsadm -a -f ") + kMark + " -r 198.18.128.3:80 -m -w 1",
                std::string("ipvsadm -a -f ") + kMark + " -r 198.18.128.4:80 -m -w 1",
                "iptables -t mangle -A PREROUTING -d 198.18.0.1/32 -p tcp -m tcp --dport 8080 -j "
                "MARK --set-xmark 0x101f90/0xffffffff"}));
  EXPECT_EQ(p.overlay.size(), 2u);
}

// The appliance's listings as meshlbd prints them, for a given state.
Applied applied(const std::string& dests, const std::string& extra_mangle = "") {
  const std::string ipvs = std::string(
                               "IP Virtual Server version 1.2.1 (size=4096)\n"
                               "Prot LocalAddress:Port Scheduler Flags\n"
                               "  -> RemoteAddress:Port           Forward Weight ActiveConn "
                               "InActConn\n"
                               "TCP  198.18.0.1:9000 rr\n"
                               "  -> 198.18.128.3:80              Masq    1      0          0\n"
                               "FWM  256 rr\n"
                               "  -> 198.18.128.3:80              Masq    1      0          0\n"
                               "FWM  ") +
                           kMark + " rr\n" + dests;
  const std::string mangle =
      "-P PREROUTING ACCEPT\n"
      "-A PREROUTING -p tcp -m tcp --dport 80 -j MARK --set-xmark 0x100/0xffffffff\n"
      "-A PREROUTING -d 198.18.0.1/32 -p tcp -m tcp --dport 8080 -j MARK --set-xmark "
      "0x101f90/0xffffffff\n" +
      extra_mangle;
  const std::string nat =
      "-P POSTROUTING ACCEPT\n"
      "-A POSTROUTING -d 198.18.128.0/24 -m ipvs --ipvs -j SNAT --to-source 198.18.128.250\n";
  auto a = parseApplied(ipvs, mangle, nat, opts());
  EXPECT_TRUE(a.ok()) << a.status();
  return *a;
}

TEST(SwarmPlan, InSyncMeansNoCommandsAndForeignConfigIsLeftAlone) {
  Applied a = applied(
      "  -> 198.18.128.3:80              Masq    1      5          2\n"
      "  -> 198.18.128.4:80              Masq    1      0          0\n");
  EXPECT_EQ(a.services.size(), 1u);  // FWM 256 and the TCP service are not the agent's
  EXPECT_EQ(a.mark_rules.size(), 1u);
  EXPECT_EQ(a.services.begin()->second.dests.at("198.18.128.3:80").active, 5u);
  Draining dr;
  Plan p = makePlan(webCluster({"198.18.128.3", "198.18.128.4"}), a, opts(), dr, Clock::now());
  EXPECT_TRUE(p.commands.empty()) << lines(p)[0];
}

TEST(SwarmPlan, LeavingTaskQuiescesThenGoesWhenIdleOrAfterTheDrainTimeout) {
  Draining dr;
  const auto t0 = Clock::now();
  Cluster one = webCluster({"198.18.128.3"});
  one.services[0].leaving.push_back({"t4", ip("198.18.128.4"), ip("198.19.0.3")});
  Plan p =
      makePlan(one, applied("  -> 198.18.128.3:80  Masq 1 0 0\n  -> 198.18.128.4:80  Masq 1 3 0\n"),
               opts(), dr, t0);
  EXPECT_EQ(lines(p), (std::vector<std::string>{std::string("ipvsadm -e -f ") + kMark +
                                                " -r 198.18.128.4:80 -m -w 0"}));
  EXPECT_EQ(p.overlay.at(ip("198.18.128.4")), ip("198.19.0.3"));  // its packets still travel
  EXPECT_EQ(p.draining, 1u);
  // Connections still open: it stays.
  p = makePlan(one, applied("  -> 198.18.128.3:80  Masq 1 0 0\n  -> 198.18.128.4:80  Masq 0 2 1\n"),
               opts(), dr, t0 + std::chrono::seconds(10));
  EXPECT_TRUE(p.commands.empty());
  // Idle: deleted.
  p = makePlan(one, applied("  -> 198.18.128.3:80  Masq 1 0 0\n  -> 198.18.128.4:80  Masq 0 0 0\n"),
               opts(), dr, t0 + std::chrono::seconds(11));
  EXPECT_EQ(lines(p), (std::vector<std::string>{std::string("ipvsadm -d -f ") + kMark +
                                                " -r 198.18.128.4:80"}));
  EXPECT_FALSE(p.overlay.contains(ip("198.18.128.4")));
  // Another one, never idle, goes at the drain timeout.
  Draining dr2;
  makePlan(one, applied("  -> 198.18.128.3:80  Masq 1 0 0\n  -> 198.18.128.4:80  Masq 1 9 0\n"),
           opts(), dr2, t0);
  p = makePlan(one, applied("  -> 198.18.128.3:80  Masq 1 0 0\n  -> 198.18.128.4:80  Masq 0 9 0\n"),
               opts(), dr2, t0 + opts().drain_timeout);
  EXPECT_EQ(lines(p), (std::vector<std::string>{std::string("ipvsadm -d -f ") + kMark +
                                                " -r 198.18.128.4:80"}));
}

// A task Docker has stopped (or that failed) has no connections left: it goes at once,
// and so do its overlay entries.
TEST(SwarmPlan, StoppedTaskIsDeletedAtOnce) {
  Draining dr;
  Plan p = makePlan(webCluster({"198.18.128.3"}),
                    applied("  -> 198.18.128.3:80  Masq 1 0 0\n  -> 198.18.128.4:80  Masq 0 7 2\n"),
                    opts(), dr, Clock::now());
  EXPECT_EQ(lines(p), (std::vector<std::string>{std::string("ipvsadm -d -f ") + kMark +
                                                " -r 198.18.128.4:80"}));
  EXPECT_FALSE(p.overlay.contains(ip("198.18.128.4")));
  EXPECT_TRUE(dr.empty());
}

// --publish-add in progress: Swarm replaces the tasks one by one; only the tasks
// created since the update began serve the new port, all of them serve the old one.
TEST(SwarmPlan, ANewPortIsServedByTheTasksCreatedForIt) {
  Cluster c = webCluster({"198.18.128.3", "198.18.128.4"});
  c.services[0].tasks[0].created = 100;
  c.services[0].tasks[1].created = 200;
  c.services[0].ports.push_back({Proto::kTcp, 8081, 81, 150});
  Draining dr;
  Plan p =
      makePlan(c, applied("  -> 198.18.128.3:80  Masq 1 0 0\n  -> 198.18.128.4:80  Masq 1 0 0\n"),
               opts(), dr, Clock::now());
  EXPECT_EQ(lines(p),
            (std::vector<std::string>{
                "ipvsadm -A -f 1056657 -s rr", "ipvsadm -a -f 1056657 -r 198.18.128.4:81 -m -w 1",
                "iptables -t mangle -A PREROUTING -d 198.18.0.1/32 -p tcp -m tcp "
                "--dport 8081 -j MARK --set-xmark 0x101f91/0xffffffff"}));
}

TEST(SwarmCluster, DockerTimes) {
  EXPECT_EQ(parseTime("1970-01-01T00:00:01Z"), 1000000000);
  EXPECT_EQ(parseTime("2026-12-02T00:08:17.133311533Z") % 1000000000, 133311533);
  EXPECT_EQ(parseTime("2026-12-02T00:08:17.1333Z") % 1000000000, 133300000);
  EXPECT_LT(parseTime("2026-12-02T00:08:17.9Z"), parseTime("2026-12-02T00:08:18Z"));
  EXPECT_EQ(parseTime("0001-01-01T00:00:00Z"), 0);  // Docker's zero time: never
  EXPECT_EQ(parseTime("9999-12-31T23:59:59Z"), 0);  // past what int64 ns hold
  EXPECT_EQ(parseTime("yesterday"), 0);
  EXPECT_EQ(parseTime("2026-12-02T00:08:17"), 0);
}

TEST(SwarmPlan, ATaskComingBackIsRestoredToWeightOne) {
  Draining dr;
  Plan p = makePlan(webCluster({"198.18.128.3", "198.18.128.4"}),
                    applied("  -> 198.18.128.3:80  Masq 1 0 0\n  -> 198.18.128.4:80  Masq 0 1 0\n"),
                    opts(), dr, Clock::now());
  EXPECT_EQ(lines(p), (std::vector<std::string>{std::string("ipvsadm -e -f ") + kMark +
                                                " -r 198.18.128.4:80 -m -w 1"}));
}

TEST(SwarmPlan, RemovedPortStopsSteeringBeforeTheServiceGoes) {
  Cluster none = webCluster({});
  none.services.clear();
  Draining dr;
  Plan p = makePlan(none, applied("  -> 198.18.128.3:80  Masq 1 4 0\n"), opts(), dr, Clock::now());
  EXPECT_EQ(lines(p), (std::vector<std::string>{
                          "iptables -t mangle -D PREROUTING -d 198.18.0.1/32 -p tcp -m tcp "
                          "--dport 8080 -j MARK --set-xmark 0x101f90/0xffffffff",
                          std::string("ipvsadm -D -f ") + kMark}));
}

TEST(SwarmPlan, PublishedAddressesChangeTheRulesNotTheService) {
  Options o = opts();
  o.publish = {ip("198.18.0.1"), ip("198.18.0.2")};
  Draining dr;
  Plan p = makePlan(webCluster({"198.18.128.3"}), applied("  -> 198.18.128.3:80  Masq 1 0 0\n"), o,
                    dr, Clock::now());
  EXPECT_EQ(lines(p), (std::vector<std::string>{
                          "iptables -t mangle -A PREROUTING -d 198.18.0.2/32 -p tcp -m tcp "
                          "--dport 8080 -j MARK --set-xmark 0x101f90/0xffffffff"}));
}

TEST(SwarmPlan, MarksAreTheAgentsOwnRange) {
  Options o = opts();
  EXPECT_EQ(markOf(o, Proto::kTcp, 8080), 0x100000u + 8080);
  EXPECT_EQ(markOf(o, Proto::kUdp, 8080), 0x110000u + 8080);
  EXPECT_TRUE(ownsMark(o, markOf(o, Proto::kUdp, 65535)));
  EXPECT_FALSE(ownsMark(o, 256));
  EXPECT_FALSE(ownsMark(o, 0x120000));
}

TEST(SwarmPlan, MalformedListingIsAnError) {
  EXPECT_FALSE(parseApplied("FWM  x rr\n", "", "", opts()).ok());
  EXPECT_FALSE(parseApplied("FWM  1056656 rr\n  -> 1.2.3.4:80 Masq w 0 0\n", "", "", opts()).ok());
}

}  // namespace
}  // namespace meshlb::swarm
