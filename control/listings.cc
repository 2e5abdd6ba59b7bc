#include "listings.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace meshlb {

StatsGroup workerStats(uint16_t worker, unsigned lcore, const WorkerCounters& c) {
  StatsGroup g;
  g.kind = "worker";
  g.labels = {{"worker", absl::StrCat(worker)}, {"lcore", absl::StrCat(lcore)}};
  forEachCounter(c, [&](const char* name, uint64_t v) { g.values.emplace_back(name, v); });
  return g;
}

namespace {

bool isNumber(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

std::string jsonString(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    out += ch;
  }
  return out + "\"";
}

// The heading of a group in text: "port 0 net_af_packet0 (twin lb0)", "worker 0 (lcore 1)".
std::string heading(const StatsGroup& g) {
  if (g.kind == "control") return "control";
  std::string out = g.kind;
  for (const auto& [k, v] : g.labels) {
    if (k == g.kind) {
      absl::StrAppend(&out, " ", v);
    } else if (k == "name") {
      absl::StrAppend(&out, " ", v);
    } else {
      absl::StrAppend(&out, " (", k, " ", v, ")");
    }
  }
  return out;
}

}  // namespace

std::string renderStats(const std::vector<StatsGroup>& groups, bool json) {
  std::string out;
  if (!json) {
    for (const StatsGroup& g : groups) {
      absl::StrAppend(&out, heading(g), "\n");
      for (const auto& [k, v] : g.values)
        absl::StrAppend(&out, absl::StrFormat("  %-40s %u\n", k, v));
    }
    return out;
  }
  auto object = [](const StatsGroup& g) {
    std::string o = "{";
    bool first = true;
    auto add = [&](const std::string& k, const std::string& v) {
      absl::StrAppend(&o, first ? "" : ",", jsonString(k), ":", v);
      first = false;
    };
    for (const auto& [k, v] : g.labels) add(k, isNumber(v) ? v : jsonString(v));
    for (const auto& [k, v] : g.values) add(k, absl::StrCat(v));
    return o + "}";
  };
  out = "{";
  bool first_kind = true;
  for (const char* kind : {"port", "worker"}) {
    absl::StrAppend(&out, first_kind ? "" : ",", "\"", kind, "s\":[");
    first_kind = false;
    bool first = true;
    for (const StatsGroup& g : groups) {
      if (g.kind != kind) continue;
      absl::StrAppend(&out, first ? "" : ",", object(g));
      first = false;
    }
    out += "]";
  }
  for (const StatsGroup& g : groups) {
    if (g.kind == "control") absl::StrAppend(&out, ",\"control\":", object(g));
  }
  return out + "}\n";
}

}  // namespace meshlb
