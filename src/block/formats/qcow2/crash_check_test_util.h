// Test helper for the power-cut tests: checks a crash image with both judges, `qemu-img check`
// and qblock's own check (qemu-img check's counterpart, qblock/image.h), and reports where
// they disagree. Each test then decides which of qemu-img's findings it tolerates.
#pragma once

#include <array>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>

#include "qblock/block_backend.h"
#include "qblock/event_loop.h"
#include "qblock/image.h"
#include "qblock/messages.h"

namespace qblock::testing {

// What the two checks found on one image.
struct CrashCheck {
  std::string qemu_output;  // qemu-img check's report, merged stdout and stderr
  int qemu_code = -1;       // its exit status: 0 clean, 2 corruption, 3 leaks only
  uint64_t qemu_corruptions = 0;
  uint64_t qemu_leaks = 0;
  uint64_t qblock_corruptions = 0;
  uint64_t qblock_leaks = 0;
  std::string qblock_output;  // qblock check's lines
};

// Runs `cmd` through the shell; returns its merged output and exit status (-1 if it did not
// exit normally).
inline std::pair<std::string, int> run_command(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return {"", -1};
  std::array<char, 4096> buf;
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  const int rc = ::pclose(p);
  return {out, WIFEXITED(rc) ? WEXITSTATUS(rc) : -1};
}

// Checks the qcow2 image at `path` with qemu-img and with qblock. Returns "" and fills `out`
// when both checks ran and agree on the number of corruptions and of leaks; else what went
// wrong.
inline std::string check_both(EventLoop& loop, const std::string& path, CrashCheck& out) {
  std::tie(out.qemu_output, out.qemu_code) = run_command("qemu-img check '" + path + "'");
  auto [json, json_code] = run_command("qemu-img check --output=json '" + path + "'");
  (void)json_code;
  nlohmann::json report = nlohmann::json::parse(json.substr(json.find('{')), nullptr, false);
  if (report.is_discarded()) return "qemu-img check --output=json: " + json;
  out.qemu_corruptions = report.value("corruptions", uint64_t{0});
  out.qemu_leaks = report.value("leaks", uint64_t{0});

  BackendOptions opts;
  opts.filename = path;
  opts.format = "qcow2";
  opts.flags.check = true;
  opts.flags.read_only = true;
  auto backend = run_sync(loop, BlockBackend::open(loop, opts));
  if (!backend) return "qblock cannot open the image for check: " + backend.error().message();
  std::string lines;
  MessageSink previous = set_message_sink([&lines](MessageLevel, std::string_view text) {
    lines.append(text);
    lines += '\n';
  });
  Result<CheckResult> r = run_sync(loop, check_image((*backend)->root(), 0));
  set_message_sink(std::move(previous));
  (void)run_sync(loop, (*backend)->close());
  out.qblock_output = lines;
  if (!r) return "qblock check failed: " + r.error().message() + "\n" + lines;
  out.qblock_corruptions = r->corruptions;
  out.qblock_leaks = r->leaks;
  if (out.qblock_corruptions != out.qemu_corruptions || out.qblock_leaks != out.qemu_leaks) {
    return "qblock check and qemu-img check disagree:\n--- qemu-img\n" + out.qemu_output +
           "--- qblock\n" + lines;
  }
  return "";
}

}  // namespace qblock::testing
