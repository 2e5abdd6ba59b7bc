// meshlb-swarm: keeps a meshlb appliance programmed from a Docker Swarm manager
// (`run`), keeps a Swarm node able to answer the appliance over the overlay
// (`node`), and reports what the agent is doing (`status`). docs/swarm.md.
#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client.h"
#include "cluster.h"
#include "docker_api.h"
#include "meshlb/scheduler.h"
#include "nlohmann/json.hpp"
#include "overlay.h"
#include "plan.h"

namespace meshlb::swarm {
namespace {

constexpr char kUsage[] =
    "usage: meshlb-swarm run --overlay-address IP --vtep IP [OPTIONS]\n"
    "       meshlb-swarm node --overlay-address IP --vtep IP [OPTIONS]\n"
    "       meshlb-swarm status [--status-file PATH]\n"
    "run: follow a Swarm manager and program the appliance (meshlbd) to serve its\n"
    "published ports through the overlay network. node: on a Swarm node, keep the\n"
    "network's namespace able to reach the appliance. docs/swarm.md\n"
    "  --docker-host URL       unix:///PATH or tcp://HOST:PORT (default: $DOCKER_HOST,\n"
    "                          then unix:///var/run/docker.sock; TLS from\n"
    "                          $DOCKER_CERT_PATH and $DOCKER_TLS_VERIFY)\n"
    "  --network NAME          the overlay network served through (default: ingress)\n"
    "  --overlay-address IP    the appliance's address on that network (outside the\n"
    "                          network's --ip-range, so Docker never gives it to a task)\n"
    "  --vtep IP               the appliance's underlay address (its VXLAN endpoint)\n"
    "run only:\n"
    "  --socket PATH           meshlbd's control socket (default /run/meshlb/meshlb.sock)\n"
    "  --publish-address IP    address the ports are published on (repeatable;\n"
    "                          default: every address of the appliance)\n"
    "  --scheduler NAME        IPVS scheduler of the services (default rr, as Swarm)\n"
    "  --mark-base N           first firewall mark the agent owns (default 0x100000;\n"
    "                          it owns base .. base+0x1ffff)\n"
    "  --device NAME           the vxlan device (default vxlan<VNI>)\n"
    "  --interval SECONDS      full re-list period (default 1)\n"
    "  --drain-timeout SECONDS how long a leaving task keeps its connections (default 60)\n"
    "  --status-file PATH      (default /run/meshlb/swarm.status)\n"
    "  --once                  reconcile once and exit (status 1 on failure)\n"
    "                          SIGHUP: re-list now; SIGTERM, SIGINT: stop (the appliance\n"
    "                          keeps its configuration)\n"
    "node only:\n"
    "  --netns-dir DIR         Docker's namespaces (default /var/run/docker/netns)\n";

volatile sig_atomic_t g_stop = 0;
volatile sig_atomic_t g_resync = 0;
void onSignal(int) { g_stop = 1; }
void onHangup(int) { g_resync = 1; }

std::string nowText() {  // UTC, RFC 3339, as Docker's logs
  char ts[32];
  const std::time_t t = std::time(nullptr);
  std::strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return ts;
}

void log(const std::string& msg) {
  std::fprintf(stderr, "%s meshlb-swarm: %s\n", nowText().c_str(), msg.c_str());
}

struct Args {
  std::string mode;
  std::string docker_host, network = "ingress", socket = "/run/meshlb/meshlb.sock";
  std::string device, status_file = "/run/meshlb/swarm.status", netns_dir = "/var/run/docker/netns";
  std::optional<IpAddr> overlay, vtep;
  Options opts;
  double interval = 1.0;
  bool once = false;
};

absl::StatusOr<Args> parseArgs(int argc, char** argv) {
  Args a;
  if (argc < 2) return absl::InvalidArgumentError("no command");
  a.mode = argv[1];
  if (a.mode != "run" && a.mode != "node" && a.mode != "status") {
    return absl::InvalidArgumentError(absl::StrCat("unknown command '", a.mode, "'"));
  }
  for (int i = 2; i < argc; ++i) {
    const std::string opt = argv[i];
    if (opt == "--once") {
      a.once = true;
      continue;
    }
    if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat(opt, " needs a value"));
    const std::string v = argv[++i];
    auto ip = [&](std::optional<IpAddr>* out) -> absl::Status {
      auto p = IpAddr::parse(v);
      if (!p.ok() || !p->isV4()) {
        return absl::InvalidArgumentError(absl::StrCat(opt, ": '", v, "' is not an IPv4 address"));
      }
      *out = *p;
      return absl::OkStatus();
    };
    auto seconds = [&](double* out) -> absl::Status {
      if (!absl::SimpleAtod(v, out) || !(*out > 0) || *out > 86400) {
        return absl::InvalidArgumentError(
            absl::StrCat(opt, ": '", v, "' is not 0 < seconds <= 86400"));
      }
      return absl::OkStatus();
    };
    absl::Status st;
    if (opt == "--docker-host") {
      a.docker_host = v;
    } else if (opt == "--network") {
      a.network = v;
    } else if (opt == "--socket") {
      a.socket = v;
    } else if (opt == "--device") {
      if (v.empty() || v.size() > 15) {
        return absl::InvalidArgumentError("--device: 1 to 15 characters");
      }
      a.device = v;
    } else if (opt == "--status-file") {
      a.status_file = v;
    } else if (opt == "--netns-dir") {
      a.netns_dir = v;
    } else if (opt == "--overlay-address") {
      st = ip(&a.overlay);
    } else if (opt == "--vtep") {
      st = ip(&a.vtep);
    } else if (opt == "--publish-address") {
      std::optional<IpAddr> p;
      st = ip(&p);
      if (st.ok()) a.opts.publish.push_back(*p);
    } else if (opt == "--scheduler") {
      if (!findScheduler(v)) {
        return absl::InvalidArgumentError(
            absl::StrCat("--scheduler: '", v, "' is not one of meshlb's (", schedulerNames(), ")"));
      }
      a.opts.scheduler = v;
    } else if (opt == "--mark-base") {
      uint64_t base = 0;
      const bool hex = v.rfind("0x", 0) == 0;
      if (!(hex ? absl::SimpleHexAtoi(v.substr(2), &base) : absl::SimpleAtoi(v, &base)) ||
          base == 0 || base + 0x20000 > 0xffffffffull) {
        return absl::InvalidArgumentError("--mark-base: 1 .. 0xfffdffff");
      }
      a.opts.mark_base = static_cast<uint32_t>(base);
    } else if (opt == "--interval") {
      st = seconds(&a.interval);
    } else if (opt == "--drain-timeout") {
      double secs = 0;
      st = seconds(&secs);
      a.opts.drain_timeout = std::chrono::seconds(static_cast<int64_t>(secs));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown option '", opt, "'"));
    }
    if (!st.ok()) return st;
  }
  if (a.mode != "status" && (!a.overlay || !a.vtep)) {
    return absl::InvalidArgumentError("--overlay-address and --vtep are required");
  }
  if (a.overlay) a.opts.overlay_addr = *a.overlay;
  return a;
}

// Writes `text` to `path` atomically (a reader never sees half a file); false when
// it cannot.
bool writeFile(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    if (!f) return false;
    f << text;
    if (!f.flush()) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

// A member of a JSON object, or null: never throws, whatever the peer sent.
const nlohmann::json& field(const nlohmann::json& o, const char* key) {
  static const nlohmann::json kNull;
  if (!o.is_object()) return kNull;
  auto it = o.find(key);
  return it == o.end() ? kNull : *it;
}
std::string text(const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : ""; }

class Agent {
 public:
  Agent(Args args, DockerEndpoint ep)
      : a_(std::move(args)), ep_text_(ep.str()), api_(std::move(ep)) {}

  // One full reconciliation; an error leaves the appliance as it was.
  absl::Status reconcile() {
    ApiDocs docs;
    struct {
      const char* path;
      std::string* out;
    } gets[] = {{"/swarm", &docs.swarm},
                {nullptr, &docs.network},
                {"/nodes", &docs.nodes},
                {"/services", &docs.services},
                {"/tasks", &docs.tasks}};
    for (auto& g : gets) {
      auto body = api_.get(g.path ? g.path : "/networks/" + a_.network);
      if (!body.ok()) return body.status();
      *g.out = std::move(*body);
    }
    auto cluster = parseCluster(docs);
    if (!cluster.ok()) return cluster.status();
    const Network& net = cluster->network;
    if (!net.subnet.contains(*a_.overlay) || (net.range && net.range->contains(*a_.overlay)) ||
        !net.range) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the appliance's overlay address ", a_.overlay->str(), " must be inside network ",
          net.name, "'s subnet ", net.subnet.str(), " and outside the range Docker gives tasks (",
          net.range ? net.range->str() : "the whole subnet: create the network with --ip-range",
          ")"));
    }
    refusals_ = cluster->refusals;

    VxlanSpec vx{a_.device.empty() ? absl::StrCat("vxlan", net.vni) : a_.device,
                 net.vni,
                 cluster->data_port,
                 *a_.vtep,
                 *a_.overlay,
                 net.subnet.len,
                 net.mtu};
    int changes = 0;
    auto ifindex = nl_->ensureVxlan(vx, &changes);
    if (!ifindex.ok()) return ifindex.status();
    if (changes)
      log(absl::StrCat(vx.name, ": VNI ", vx.vni, " port ", vx.port, " local ", vx.local.str(),
                       ", ", vx.addr.str(), "/", int(vx.prefix), " (", changes, " changes)"));

    // IPVS's settings as Docker sets them for its routing mesh (libnetwork's ingress
    // sandbox): a removed task's connections end on their next packet, a persistent
    // client leaves a task drained to weight 0, and a reused port is not rescheduled.
    // (Unchanged settings are not written again.)
    const std::vector<std::string> settings = {"sysctl", "net.ipv4.vs.expire_nodest_conn=1",
                                               "net.ipv4.vs.expire_quiescent_template=1",
                                               "net.ipv4.vs.conn_reuse_mode=0"};
    if (auto r = callDaemon(a_.socket, Request{settings, ""}); !r.ok() || !r->ok) {
      return r.ok() ? absl::InternalError(absl::StrCat("sysctl: ", r->text)) : r.status();
    }
    std::string listing[3];
    const std::vector<std::string> reads[3] = {{"ipvsadm", "-L", "-n"},
                                               {"iptables", "-t", "mangle", "-S"},
                                               {"iptables", "-t", "nat", "-S"}};
    for (int i = 0; i < 3; ++i) {
      auto r = callDaemon(a_.socket, Request{reads[i], ""});
      if (!r.ok()) return r.status();
      if (!r->ok)
        return absl::InternalError(absl::StrCat(absl::StrJoin(reads[i], " "), ": ", r->text));
      listing[i] = r->text;
    }
    auto applied = parseApplied(listing[0], listing[1], listing[2], a_.opts);
    if (!applied.ok()) return applied.status();
    Plan plan = makePlan(*cluster, *applied, a_.opts, draining_, Clock::now());
    // New peers before the real servers that use them; old ones after those are gone.
    auto added = nl_->syncPeers(*ifindex, plan.overlay, false);
    if (!added.ok()) return added.status();
    for (const auto& c : plan.commands) {
      auto r = callDaemon(a_.socket, Request{c, ""});
      if (!r.ok()) return r.status();
      if (!r->ok) return absl::InternalError(absl::StrCat(absl::StrJoin(c, " "), ": ", r->text));
      log(absl::StrJoin(c, " "));
    }
    auto removed = nl_->syncPeers(*ifindex, plan.overlay, true);
    if (!removed.ok()) return removed.status();
    if (*added + *removed) {
      log(absl::StrCat(vx.name, ": ", plan.overlay.size(), " peers (", *added + *removed,
                       " neighbour/FDB changes)"));
    }
    summary_ =
        absl::StrCat("network: ", net.name, " (VNI ", net.vni, ", ", net.subnet.str(),
                     "), appliance ", a_.overlay->str(), " on ", vx.name, ", VTEP ", a_.vtep->str(),
                     ", data port ", cluster->data_port, "\n", "ports: ", plan.ports,
                     "  real servers: ", plan.servers, "  draining: ", plan.draining, "\n");
    last_changes_ = plan.commands.size() + *added + *removed + changes;
    return absl::OkStatus();
  }

  void writeStatus(const absl::Status& st) {
    std::string text =
        absl::StrCat("manager: ", ep_text_, "\n", summary_, "last sync: ", nowText(), " ",
                     st.ok() ? "ok" : "FAILED",
                     st.ok() ? absl::StrCat(" (", last_changes_, " changes)") : "", "\n");
    if (!st.ok()) absl::StrAppend(&text, "error: ", st.message(), "\n");
    for (const auto& r : refusals_) absl::StrAppend(&text, "refused: ", r, "\n");
    const bool written = writeFile(a_.status_file, text);
    if (!written && status_written_)
      log(absl::StrCat("cannot write the status to ", a_.status_file));
    status_written_ = written;
  }

  int run() {
    auto nl = Netlink::open();
    if (!nl.ok()) {
      log(std::string(nl.status().message()));
      return 1;
    }
    nl_ = std::move(*nl);
    using std::chrono::duration;
    using SteadyClock = std::chrono::steady_clock;
    const auto interval =
        std::chrono::duration_cast<SteadyClock::duration>(duration<double>(a_.interval));
    // After an event, tasks change state over the next seconds (Swarm has no task
    // events): re-list quickly for a while.
    const auto fast =
        std::min(interval,
                 std::chrono::duration_cast<SteadyClock::duration>(std::chrono::milliseconds(200)));
    auto next = SteadyClock::now(), fast_until = next, reopen = next, opened = next;
    bool events_open = false;
    std::string last_error;
    std::vector<std::string> last_refusals;
    while (!g_stop) {
      auto now = SteadyClock::now();
      if (!a_.once && !events_open && now >= reopen) {
        auto st = api_.openEvents(R"({"type":["service","node","network"]})");
        events_open = st.ok();
        opened = now;
        reopen = now + std::chrono::seconds(1);
      }
      if (g_resync) {
        g_resync = 0;
        next = now;
      }
      if (now >= next) {
        absl::Status st = reconcile();
        writeStatus(st);
        const std::string err = st.ok() ? "" : std::string(st.message());
        if (err != last_error) log(st.ok() ? "in sync again" : absl::StrCat("sync failed: ", err));
        last_error = err;
        if (refusals_ != last_refusals) {
          for (const auto& r : refusals_) log(absl::StrCat("refused: ", r));
          last_refusals = refusals_;
        }
        if (a_.once) return st.ok() ? 0 : 1;
        next = now + (now < fast_until ? fast : interval);
      }
      const int wait_ms = static_cast<int>(std::max<int64_t>(
          1, std::chrono::duration_cast<std::chrono::milliseconds>(next - SteadyClock::now())
                 .count()));
      if (!events_open) {
        std::this_thread::sleep_for(std::chrono::milliseconds(std::min(wait_ms, 200)));
        continue;
      }
      auto events = api_.waitEvents(std::min(wait_ms, 500));
      if (!events.ok()) {
        // Said once per outage: while the manager is away, each reconnection fails at once.
        if (SteadyClock::now() - opened > std::chrono::seconds(5)) {
          log(absl::StrCat(events.status().message(), "; reconnecting every second"));
        }
        events_open = false;
        continue;
      }
      for (const auto& e : *events) {
        const auto j = nlohmann::json::parse(e, nullptr, false);
        log(absl::StrCat("event: ", text(field(j, "Type")), " ", text(field(j, "Action")), " ",
                         text(field(field(field(j, "Actor"), "Attributes"), "name"))));
        next = SteadyClock::now();
        fast_until = next + std::chrono::seconds(15);
      }
    }
    log("stopping; the appliance keeps its configuration");
    return 0;
  }

 private:
  Args a_;
  std::string ep_text_;
  DockerApi api_;
  std::unique_ptr<Netlink> nl_;
  Draining draining_;
  std::vector<std::string> refusals_;
  std::string summary_;
  size_t last_changes_ = 0;
  bool status_written_ = true;
};

absl::StatusOr<Network> networkOf(DockerApi& api, const std::string& name) {
  auto body = api.get("/networks/" + name);
  if (!body.ok()) return body.status();
  auto c = parseCluster(ApiDocs{"{}", *body, "[]", "[]", "[]"});
  if (!c.ok()) return c.status();
  return c->network;
}

// The node side: every namespace Docker made for the network gets a permanent
// neighbour and FDB entry for the appliance, kept as namespaces come and go.
int runNode(const Args& a, DockerApi& api) {
  std::map<std::string, bool> done;  // namespace path -> programmed
  std::string last_error;
  while (!g_stop) {
    std::string err;
    absl::StatusOr<Network> net = networkOf(api, a.network);
    if (!net.ok()) {
      err = std::string(net.status().message());
    } else {
      const std::string suffix = "-" + net->id.substr(0, 10);
      std::map<std::string, bool> seen;
      if (DIR* d = opendir(a.netns_dir.c_str())) {
        while (dirent* e = readdir(d)) {
          const std::string name = e->d_name;
          if (name.size() <= suffix.size() ||
              name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
            continue;
          }
          const std::string path = a.netns_dir + "/" + name;
          auto nl = Netlink::open(path);
          absl::StatusOr<int> ifindex = nl.ok() ? (*nl)->findVxlan(net->vni) : nl.status();
          if (ifindex.ok() && *ifindex == 0) continue;  // not set up yet
          absl::StatusOr<int> n = ifindex.ok()
                                      ? (*nl)->syncPeers(*ifindex, {{*a.overlay, *a.vtep}}, false)
                                      : ifindex.status();
          if (!n.ok()) {
            err = absl::StrCat(path, ": ", n.status().message());
            continue;
          }
          if (*n || !done.contains(path)) {
            log(absl::StrCat(path, ": appliance ", a.overlay->str(), " via ", a.vtep->str(),
                             *n ? " programmed" : " already programmed"));
          }
          seen[path] = true;
        }
        closedir(d);
      } else {
        err = absl::StrCat(a.netns_dir, ": ", std::strerror(errno));
      }
      done = std::move(seen);
    }
    if (err != last_error) log(err.empty() ? "in sync" : err);
    last_error = err;
    if (a.once) return err.empty() ? 0 : 1;
    for (int i = 0; i < static_cast<int>(a.interval * 10) && !g_stop; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  return 0;
}

}  // namespace
}  // namespace meshlb::swarm

int main(int argc, char** argv) {
  using namespace meshlb::swarm;
  if (argc >= 2 && (std::strcmp(argv[1], "-h") == 0 || std::strcmp(argv[1], "--help") == 0)) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  auto args = parseArgs(argc, argv);
  if (!args.ok()) {
    std::fprintf(stderr, "meshlb-swarm: %s\n%s", std::string(args.status().message()).c_str(),
                 kUsage);
    return 2;
  }
  if (args->mode == "status") {
    std::ifstream f(args->status_file);
    if (!f) {
      std::fprintf(stderr, "meshlb-swarm: no status at %s (is the agent running?)\n",
                   args->status_file.c_str());
      return 3;
    }
    std::stringstream ss;
    ss << f.rdbuf();
    std::fputs(ss.str().c_str(), stdout);
    return ss.str().find("last sync: ") != std::string::npos &&
                   ss.str().find(" FAILED") == std::string::npos
               ? 0
               : 1;
  }
  auto ep = DockerEndpoint::resolve(args->docker_host);
  if (!ep.ok()) {
    std::fprintf(stderr, "meshlb-swarm: %s\n", std::string(ep.status().message()).c_str());
    return 2;
  }
  struct sigaction sa {};
  sa.sa_handler = onSignal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  struct sigaction hup {};
  hup.sa_handler = onHangup;
  sigaction(SIGHUP, &hup, nullptr);  // re-list now
  signal(SIGPIPE, SIG_IGN);
  if (args->mode == "node") {
    DockerApi api(*ep);
    return runNode(*args, api);
  }
  Agent agent(*args, *ep);
  return agent.run();
}
