// meshlbctl [--socket PATH] ARGS...: sends ARGS to meshlbd, prints the reply on
// stdout; a rejected command prints the error on stderr and exits 1 (an ipvsadm
// command as ipvsadm exits: 2 for a command line it refuses itself, 255 for what the
// kernel would refuse, 1 for a listing of no such service); a failure to reach the
// daemon exits 2. Standard input is sent along for `ipvsadm -R`.
// Invoked under the name `ipvsadm` (a link to it), it is that command: `ipvsadm -L
// -n` is `meshlbctl ipvsadm -L -n`, so scripts and tools that run ipvsadm work
// unchanged. The socket is --socket's, else $MESHLB_SOCKET's, else the default.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "client.h"

namespace {

constexpr char kUsage[] =
    "usage: meshlbctl [--socket PATH] COMMAND [ARGS...]\n"
    "  ipvsadm ...      IPVS services and real servers (ipvsadm 1.31 syntax)\n"
    "  iptables ...     -t nat POSTROUTING SNAT/MASQUERADE rules (iptables syntax)\n"
    "  sysctl ...       IPVS's net.ipv4.vs.* settings (sysctl syntax: NAME[=VALUE], -a, -n)\n"
    "  stats [--json]   per-port and per-worker counters, every drop by reason\n"
    "default socket: $MESHLB_SOCKET, else /run/meshlb/meshlb.sock\n"
    "as `ipvsadm` (a link named so): the ipvsadm command itself\n";

int fail(const std::string& msg) {
  std::fprintf(stderr, "meshlbctl: %s\n", msg.c_str());
  return 2;
}

bool readsStdin(const std::vector<std::string>& args) {
  if (args.empty() || args[0] != "ipvsadm") return false;
  for (const auto& a : args) {
    if (a == "-R" || a == "--restore") return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  const char* env = std::getenv("MESHLB_SOCKET");
  std::string path = env && *env ? env : "/run/meshlb/meshlb.sock";
  meshlb::Request req;
  int i = 1;
  const char* slash = std::strrchr(argv[0], '/');
  if (std::strcmp(slash ? slash + 1 : argv[0], "ipvsadm") == 0) {
    req.args.emplace_back("ipvsadm");  // everything after is ipvsadm's, -h included
  } else {
    if (i < argc && (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0)) {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (i + 1 < argc && std::strcmp(argv[i], "--socket") == 0) {
      path = argv[i + 1];
      i += 2;
    }
  }
  for (; i < argc; ++i) req.args.emplace_back(argv[i]);
  if (req.args.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  if (readsStdin(req.args)) {
    req.input.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }

  auto reply = meshlb::callDaemon(path, req);
  if (!reply.ok()) return fail(std::string(reply.status().message()));
  if (!reply->ok) {
    std::fprintf(stderr, "%s%s", reply->text.c_str(),
                 reply->text.empty() || reply->text.back() != '\n' ? "\n" : "");
    return reply->exit_status;
  }
  std::fputs(reply->text.c_str(), stdout);
  return 0;
}
