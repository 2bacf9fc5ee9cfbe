// `qblock check`: qemu-img check (qemu-compat.md §3.3). Opens the image in check mode (no
// automatic repair, corrupt images allowed), runs the qcow2 check, optionally repairs and
// double-checks, and prints qemu-img's summary: per-problem lines on stderr, the summary on
// stdout (human or JSON), exit 0 clean, 2 corruptions, 3 leaks only, 1 check failed,
// 63 format without checks.
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "qblock/block_backend.h"
#include "qblock/commands.h"
#include "qblock/event_loop.h"
#include "qblock/image.h"
#include "qblock/image_options.h"
#include "qblock/img_common.h"
#include "qblock/json_output.h"

namespace qblock::tools {

namespace {

using Json = nlohmann::ordered_json;

constexpr int kCheckFailed = 1;
constexpr int kCorruptions = 2;
constexpr int kLeaks = 3;
constexpr int kNotSupported = 63;

struct CheckArgs {
  std::string output = "human";
  std::string filename;
  ImageArgs image;
  bool quiet = false;
  unsigned fix = 0;
};

Task<Result<CheckResult>> check_task(BlockBackend* backend, unsigned fix) {
  co_return co_await check_image(backend->root(), fix);
}

Task<Status> close_task(BlockBackend* backend) { co_return co_await backend->close(); }

void print_human(const CheckResult& r) {
  if (!r.corruptions && !r.leaks && !r.check_errors) {
    std::printf("No errors were found on the image.\n");
  } else {
    // qemu-img uses the plural even for one (qemu-compat.md §3.3).
    if (r.corruptions) {
      std::printf("\n%" PRIu64
                  " errors were found on the image.\n"
                  "Data may be corrupted, or further writes to the image may corrupt it.\n",
                  r.corruptions);
    }
    if (r.leaks) {
      std::printf("\n%" PRIu64
                  " leaked clusters were found on the image.\n"
                  "This means waste of disk space, but no harm to data.\n",
                  r.leaks);
    }
    if (r.check_errors) {
      std::printf("\n%" PRIu64 " internal errors have occurred during the check.\n",
                  r.check_errors);
    }
  }
  if (r.total_clusters && r.allocated_clusters) {
    const double allocated = static_cast<double>(r.allocated_clusters);
    std::printf("%" PRIu64 "/%" PRIu64
                " = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% compressed clusters\n",
                r.allocated_clusters, r.total_clusters,
                allocated * 100.0 / static_cast<double>(r.total_clusters),
                static_cast<double>(r.fragmented_clusters) * 100.0 / allocated,
                static_cast<double>(r.compressed_clusters) * 100.0 / allocated);
  }
  if (r.image_end_offset) std::printf("Image end offset: %" PRIu64 "\n", r.image_end_offset);
}

// Members in the order qemu-img 7.2 prints them; the optional ones only when non-zero.
void print_json(const CheckResult& r, const std::string& filename) {
  Json j = Json::object();
  auto optional = [&j](const char* key, uint64_t value) {
    if (value) j[key] = value;
  };
  j["image-end-offset"] = r.image_end_offset;
  optional("compressed-clusters", r.compressed_clusters);
  j["total-clusters"] = r.total_clusters;
  optional("corruptions", r.corruptions);
  optional("corruptions-fixed", r.corruptions_fixed);
  j["check-errors"] = r.check_errors;
  optional("leaks", r.leaks);
  optional("leaks-fixed", r.leaks_fixed);
  optional("allocated-clusters", r.allocated_clusters);
  j["filename"] = filename;
  j["format"] = "qcow2";
  optional("fragmented-clusters", r.fragmented_clusters);
  std::printf("%s\n", qemu_json(j).c_str());
}

// Returns -1 to continue, else the exit status.
int parse_args(int argc, char** argv, CheckArgs& args) {
  OptionParser parser;
  parser.help([] {
    std::printf(
        "qblock check [--image-opts] [-q] [-f fmt] [--output=human|json] [-r [leaks | all]] "
        "[-T src_cache] [-U] filename\n");
  });
  add_image_options(parser,
                    ImageOption::kFormat | ImageOption::kFormatLong | ImageOption::kImageOpts |
                        ImageOption::kObject | ImageOption::kForceShare | ImageOption::kSourceCache,
                    &args.image);
  parser.with_value({'r', "repair"}, [&args](const char* value) {
    if (std::strcmp(value, "leaks") == 0) {
      args.fix = kRepairLeaks;
    } else if (std::strcmp(value, "all") == 0) {
      args.fix = kRepairLeaks | kRepairErrors;
    } else {
      img_usage_error(std::string("Unknown option value for -r (expecting 'leaks' or 'all'): ") +
                      value);
      return kCheckFailed;
    }
    return kContinue;
  });
  parser.value("output", &args.output).flag('q', &args.quiet);
  if (int r = parser.parse(argc, argv); r != kContinue) return r;
  if (parser.operands().size() != 1) {
    img_usage_error("Expecting one image file name");
    return kCheckFailed;
  }
  args.filename = parser.operands()[0];
  if (args.output != "human" && args.output != "json") {
    img_error("--output must be used with human or json as argument.");
    return kCheckFailed;
  }
  // -T is validated as qemu-img does; the cache mode does not change the result.
  OpenFlags cache;
  if (!apply_source_cache(args.image, cache)) return kCheckFailed;
  return -1;
}

// One check of the open image; prints "Check failed" on error.
Result<CheckResult> run_check(EventLoop& loop, BlockBackend& backend, unsigned fix) {
  // The errors the repair reports under the program's name ("qemu-img: Could not resize
  // file: ...") get that name; the findings stay bare lines.
  MessageSink previous = set_message_sink([](MessageLevel level, std::string_view text) {
    if (level == MessageLevel::kReport) {
      img_error(text);
    } else {
      print_message(level, text);
    }
  });
  Result<CheckResult> r = run_sync(loop, check_task(&backend, fix));
  set_message_sink(std::move(previous));
  if (!r) {
    // A step that failed with its own words ("ERROR writing refblock: ...") says so first.
    if (!r.error().context().empty()) img_error(r.error().message());
    img_error("Check failed: " + r.error().errno_text());
  }
  return r;
}

}  // namespace

int run_check(int argc, char** argv) {
  CheckArgs args;
  if (int r = parse_args(argc, argv, args); r >= 0) return r;
  Result<std::unique_ptr<EventLoop>> loop = EventLoop::create();
  if (!loop) {
    img_error(loop.error().message());
    return kCheckFailed;
  }
  OpenFlags flags;
  flags.read_only = args.fix == 0;
  flags.force_share = args.image.force_share;
  flags.check = true;
  Result<std::unique_ptr<BlockBackend>> opened =
      open_image(**loop, args.filename, args.image, flags);
  if (!opened) return kCheckFailed;
  std::unique_ptr<BlockBackend> backend = std::move(*opened);
  auto finish = [&](int status) {
    Status closed = run_sync(**loop, close_task(backend.get()));
    (void)closed;
    return status;
  };
  if (backend->root().driver_name() != "qcow2") {
    img_error("This image format does not support checks");
    return finish(kNotSupported);
  }
  Result<CheckResult> result = run_check(**loop, *backend, args.fix);
  if (!result) return finish(kCheckFailed);
  if (args.fix && (result->corruptions_fixed || result->leaks_fixed)) {
    if (!args.quiet && args.output == "human") {
      std::printf(
          "The following inconsistencies were found and repaired:\n\n"
          "    %" PRIu64 " leaked clusters\n    %" PRIu64
          " corruptions\n\nDouble checking the fixed image now...\n",
          result->leaks_fixed, result->corruptions_fixed);
      std::fflush(stdout);
    }
    Result<CheckResult> again = run_check(**loop, *backend, 0);
    if (!again) return finish(kCheckFailed);
    again->leaks_fixed = result->leaks_fixed;
    again->corruptions_fixed = result->corruptions_fixed;
    result = std::move(again);
  }
  if (!args.quiet) {
    if (args.output == "json") {
      print_json(*result, args.filename);
    } else {
      print_human(*result);
    }
  }
  if (result->check_errors) img_error("Check failed");
  if (result->check_errors) return finish(kCheckFailed);
  if (result->corruptions) return finish(kCorruptions);
  if (result->leaks) return finish(kLeaks);
  return finish(0);
}

}  // namespace qblock::tools
