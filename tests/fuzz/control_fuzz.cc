// libFuzzer harness: what the control socket, the state file and a backup sync daemon
// take from the outside. The first byte picks the front end; the rest is its input.
// Oracles: no crash, a rejected command leaves the configuration exactly as it was, and
// a sync message decoded encodes to messages that decode to the same connections.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "commands.h"
#include "fuzz_check.h"
#include "protocol.h"
#include "sync.h"

using namespace meshlb;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  static Commands commands;  // state carries over between inputs, as in the daemon
  switch (data[0] % 4) {
    case 0: {
      auto len = frameLength(text);
      if (len.ok() && len->has_value()) FUZZ_CHECK(**len <= text.size());
      auto req = decodeRequest(text);
      if (req.ok()) FUZZ_CHECK(decodeRequest(encodeRequest(*req).substr(4)).ok());
      break;
    }
    case 1: {
      // Lines of words: each line one command, as meshlbctl would send them.
      for (absl::string_view line : absl::StrSplit(text, '\n')) {
        std::vector<std::string> args = absl::StrSplit(line, ' ', absl::SkipEmpty());
        const std::string before = commands.saveState();
        bool changed = false;
        auto r = commands.run(args, "", &changed);
        if (!r.ok() || !changed) FUZZ_CHECK(commands.saveState() == before);
      }
      break;
    }
    case 2: {
      Commands fresh;
      if (fresh.restoreState(text).ok()) {
        // What was restored saves to a state that restores to itself.
        Commands again;
        FUZZ_CHECK(again.restoreState(fresh.saveState()).ok());
        FUZZ_CHECK(again.saveState() == fresh.saveState());
      } else {
        FUZZ_CHECK(fresh.saveState() == Commands().saveState());
      }
      break;
    }
    case 3: {
      // A multicast message to a backup, then each connection placed among its services.
      SyncMessage m;
      std::string why;
      if (decodeSyncMessage(data + 1, size - 1, 0, &m, &why) != SyncDecode::kOk) break;
      std::vector<SyncConn> back;
      for (const std::string& e : encodeSyncMessages(1, m.conns, 1472)) {
        SyncMessage again;
        FUZZ_CHECK(decodeSyncMessage(reinterpret_cast<const uint8_t*>(e.data()), e.size(), 1,
                                     &again, &why) == SyncDecode::kOk);
        back.insert(back.end(), again.conns.begin(), again.conns.end());
      }
      FUZZ_CHECK(back == m.conns);
      static uint64_t placed = 0;
      SyncDaemons::Hooks hooks;
      hooks.workers = 3;
      hooks.take = [](uint16_t, SyncRecord*, size_t) -> size_t { return 0; };
      hooks.give = [](uint16_t w, const SyncRecord&) { return w < 3 && ++placed; };
      hooks.give_template = [](uint32_t, const IpAddr&, uint32_t, uint32_t) { return true; };
      SyncDaemons daemons(hooks);
      daemons.apply(commands.services(), {});
      for (const SyncConn& c : m.conns) daemons.install(c);
      break;
    }
  }
  return 0;
}
