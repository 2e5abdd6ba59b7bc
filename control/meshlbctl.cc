// meshlbctl [--socket PATH] ARGS...: sends ARGS to meshlbd, prints the reply on
// stdout; a rejected command prints the error on stderr and exits 1 (an ipvsadm
// command as ipvsadm exits: 2 for a command line it refuses itself, 255 for what the
// kernel would refuse, 1 for a listing of no such service); a failure to reach the
// daemon exits 2. Standard input is sent along for `ipvsadm -R`.
// Invoked under the name `ipvsadm` (a link to it), it is that command: `ipvsadm -L
// -n` is `meshlbctl ipvsadm -L -n`, so scripts and tools that run ipvsadm work
// unchanged. The socket is --socket's, else $MESHLB_SOCKET's, else the default.
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "client.h"
#include "usage.h"

namespace {

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

// ipvsadm takes a host name wherever it takes an address (-t, -u, -r host[:port]),
// looking it up as ipvsadm's host_to_addr does (IPv4). meshlbctl looks such names up
// here, in the client, and sends the address: meshlbd's control thread never waits on
// DNS. A name that does not resolve is sent as it is, for meshlbd to refuse.
std::string resolveHostPort(const std::string& v) {
  const size_t colon = v.rfind(':');
  if (v.empty() || v[0] == '[' || (colon != std::string::npos && v.find(':') != colon)) return v;
  const std::string host = v.substr(0, colon);
  in_addr a{};
  if (host.empty() || inet_pton(AF_INET, host.c_str(), &a) == 1) return v;
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || !res) return v;
  char text[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr, text, sizeof(text));
  freeaddrinfo(res);
  return std::string(text) + (colon == std::string::npos ? "" : v.substr(colon));
}

void resolveHosts(std::vector<std::string>& words) {
  for (size_t i = 0; i + 1 < words.size(); ++i) {
    const std::string& w = words[i];
    if (w == "-t" || w == "--tcp-service" || w == "-u" || w == "--udp-service" || w == "-r" ||
        w == "--real-server") {
      words[i + 1] = resolveHostPort(words[i + 1]);
    }
  }
}

// -R's input, line by line, with its host names looked up as the arguments' are.
std::string resolveHostsInLines(const std::string& input) {
  std::string out;
  size_t at = 0;
  while (at < input.size()) {
    size_t end = input.find('\n', at);
    if (end == std::string::npos) end = input.size();
    std::vector<std::string> words;
    std::string word;
    for (size_t k = at; k <= end; ++k) {
      const char ch = k < end ? input[k] : ' ';
      if (ch == ' ' || ch == '\t') {
        if (!word.empty()) words.push_back(std::move(word));
        word.clear();
      } else {
        word += ch;
      }
    }
    resolveHosts(words);
    for (size_t k = 0; k < words.size(); ++k) out += (k ? " " : "") + words[k];
    out += '\n';
    at = end + 1;
  }
  return out;
}

// The usage of `COMMAND ... -h|--help`, or nullptr.
const char* helpOf(const std::vector<std::string>& args) {
  static constexpr std::pair<const char*, const char*> kCommands[] = {
      {"ipvsadm", meshlb::kIpvsadmUsage},         {"iptables", meshlb::kIptablesUsage},
      {"ip6tables", meshlb::kIptablesUsage},      {"sysctl", meshlb::kSysctlUsage},
      {"healthcheck", meshlb::kHealthcheckUsage}, {"stats", meshlb::kStatsUsage},
      {"announce", meshlb::kAnnounceUsage},
  };
  bool help = false;
  for (const std::string& a : args) help = help || a == "-h" || a == "--help";
  if (!help) return nullptr;
  for (const auto& [name, usage] : kCommands) {
    if (args[0] == name) return usage;
  }
  return nullptr;
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
      std::fputs(meshlb::kMeshlbctlUsage, stdout);
      return 0;
    }
    if (i + 1 < argc && std::strcmp(argv[i], "--socket") == 0) {
      path = argv[i + 1];
      i += 2;
    }
  }
  for (; i < argc; ++i) req.args.emplace_back(argv[i]);
  if (req.args.empty()) {
    std::fputs(meshlb::kMeshlbctlUsage, stderr);
    return 2;
  }
  if (readsStdin(req.args)) {
    req.input.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    req.input = resolveHostsInLines(req.input);
  }
  // A command's --help is answered here, daemon or not (as ipvsadm answers -h).
  if (const char* usage = helpOf(req.args)) {
    std::fputs(usage, stdout);
    return 0;
  }
  if (req.args[0] == "ipvsadm") resolveHosts(req.args);

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
