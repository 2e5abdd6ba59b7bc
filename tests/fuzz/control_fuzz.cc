// libFuzzer harness: what the control socket and the state file take from the
// outside. The first byte picks the front end; the rest is its input. Oracles:
// no crash, and a rejected command leaves the configuration exactly as it was.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "commands.h"
#include "fuzz_check.h"
#include "protocol.h"

using namespace meshlb;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  static Commands commands;  // state carries over between inputs, as in the daemon
  switch (data[0] % 3) {
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
  }
  return 0;
}
