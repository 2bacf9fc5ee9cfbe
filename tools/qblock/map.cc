// `qblock map`: qemu-img map (qemu-compat.md §3.4). Walks the image with block_status,
// descending the backing chain for extents a layer leaves unallocated, merges adjacent extents
// with equal properties and prints them as qemu-img's JSON lines or human table.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <memory>
#include <string>

#include "qblock/block_backend.h"
#include "qblock/chain_status.h"
#include "qblock/commands.h"
#include "qblock/event_loop.h"
#include "qblock/image_options.h"
#include "qblock/img_common.h"
#include "qblock/options.h"

namespace qblock::tools {

namespace {

// One extent of the output: properties of [start, start + length) across the backing chain.
struct MapEntry {
  uint64_t start = 0;
  uint64_t length = 0;
  uint64_t depth = 0;
  bool present = false;
  bool zero = false;
  bool data = false;
  bool has_offset = false;
  uint64_t offset = 0;   // host offset in `filename`, valid with has_offset
  std::string filename;  // file holding the data; empty without an offset
};

struct MapArgs {
  std::string output = "human";
  std::string filename;
  ImageArgs image;
  uint64_t start_offset = 0;
  bool has_max_length = false;
  uint64_t max_length = 0;
};

// The status of a prefix of [offset, offset + bytes) as seen from `top`: the first layer of
// the backing chain that defines it (data or zero flag), or the bottom layer when none does.
Task<Result<MapEntry>> map_extent(BlockNode* top, uint64_t offset, uint64_t bytes) {
  ChainStatusQuery query;
  query.refine = resolve_preallocated;
  Task<Result<ChainStatus>> ask = chain_status(top, offset, bytes, query);
  Result<ChainStatus> chain = co_await std::move(ask);
  if (!chain) co_return fail(chain.error());
  const BlockStatus& st = chain->status;
  MapEntry e;
  e.start = offset;
  e.depth = chain->layer;
  e.length = st.bytes;
  e.data = (st.flags & kStatusData) != 0;
  e.zero = (st.flags & kStatusZero) != 0;
  e.present = (st.flags & kStatusAllocated) != 0;
  e.has_offset = (st.flags & kStatusOffsetValid) != 0;
  if (e.has_offset) {
    e.offset = st.host_offset;
    if (st.file) e.filename = st.file->filename();
  }
  co_return e;
}

// Whether `next` continues `cur` (same properties, and contiguous on the host).
bool mergeable(const MapEntry& cur, const MapEntry& next) {
  if (cur.length == 0) return false;
  if (cur.zero != next.zero || cur.data != next.data || cur.depth != next.depth ||
      cur.present != next.present || cur.has_offset != next.has_offset ||
      cur.filename != next.filename) {
    return false;
  }
  return !cur.has_offset || cur.offset + cur.length == next.offset;
}

// Prints one entry; `last` closes the JSON array. Fails for data without a host offset in
// human mode, which cannot name a location (qemu-compat.md §3.4).
bool print_entry(const std::string& output, const MapEntry& e, bool last) {
  if (output == "json") {
    std::printf("{ \"start\": %" PRIu64 ", \"length\": %" PRIu64 ", \"depth\": %" PRIu64
                ", \"present\": %s, \"zero\": %s, \"data\": %s",
                e.start, e.length, e.depth, e.present ? "true" : "false", e.zero ? "true" : "false",
                e.data ? "true" : "false");
    if (e.has_offset) std::printf(", \"offset\": %" PRIu64, e.offset);
    std::printf("}%s\n", last ? "]" : ",");
    return true;
  }
  if (e.data && !e.has_offset) {
    img_error("File contains external, encrypted or compressed clusters.");
    return false;
  }
  if (e.data && !e.zero) {
    std::printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n", e.start, e.length, e.offset,
                e.filename.c_str());
  }
  return true;
}

Task<Result<MapEntry>> map_extent_task(BlockBackend* backend, uint64_t offset, uint64_t bytes) {
  co_return co_await map_extent(&backend->root(), offset, bytes);
}

// Parses --start-offset/--max-length with qemu-img's message (qemu-compat.md §1.2).
bool parse_offset_arg(const char* text, const char* what, uint64_t& value) {
  Result<uint64_t> v = parse_size(text);
  if (!v || *v > uint64_t(INT64_MAX)) {
    img_error(std::string("Invalid ") + what +
              " specified. You may use k, M, G, T, P or E suffixes for");
    img_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
    return false;
  }
  value = *v;
  return true;
}

// Returns -1 to continue, else the exit status.
int parse_args(int argc, char** argv, MapArgs& args) {
  OptionParser parser;
  parser.help([] {
    std::printf(
        "qblock map [--image-opts] [-f fmt] [--start-offset=OFFSET] [--max-length=LEN] "
        "[--output=human|json] [-U] filename\n");
  });
  add_image_options(parser,
                    ImageOption::kFormat | ImageOption::kFormatLong | ImageOption::kImageOpts |
                        ImageOption::kObject | ImageOption::kForceShare,
                    &args.image);
  parser.value("output", &args.output);
  parser.with_value("start-offset", [&args](const char* value) {
    return parse_offset_arg(value, "start offset", args.start_offset) ? kContinue : 1;
  });
  parser.with_value("max-length", [&args](const char* value) {
    args.has_max_length = true;
    return parse_offset_arg(value, "max length", args.max_length) ? kContinue : 1;
  });
  if (int r = parser.parse(argc, argv); r != kContinue) return r;
  if (parser.operands().size() != 1) {
    img_usage_error("Expecting one image file name");
    return 1;
  }
  args.filename = parser.operands()[0];
  if (args.output != "human" && args.output != "json") {
    img_error("--output must be used with human or json as argument.");
    return 1;
  }
  return -1;
}

}  // namespace

int run_map(int argc, char** argv) {
  MapArgs args;
  if (int r = parse_args(argc, argv, args); r >= 0) return r;

  Result<std::unique_ptr<EventLoop>> loop = EventLoop::create();
  if (!loop) {
    img_error(loop.error().message());
    return 1;
  }
  OpenFlags flags;
  flags.read_only = true;
  flags.force_share = args.image.force_share;
  Result<std::unique_ptr<BlockBackend>> opened =
      open_image(**loop, args.filename, args.image, flags);
  if (!opened) return 1;
  std::unique_ptr<BlockBackend> backend = std::move(*opened);

  uint64_t end = backend->length();
  if (args.has_max_length && args.start_offset + args.max_length < end) {
    end = args.start_offset + args.max_length;
  }
  if (args.output == "json") {
    std::printf("[");
  } else {
    std::printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
  }
  int status = 0;
  MapEntry cur;
  cur.start = args.start_offset;
  while (cur.start + cur.length < end) {
    const uint64_t offset = cur.start + cur.length;
    Result<MapEntry> next = run_sync(**loop, map_extent_task(backend.get(), offset, end - offset));
    if (!next) {
      // As qemu-img 7.2: any failure of the walk is reported with the errno alone.
      img_error("Could not read file metadata: " + next.error().errno_text());
      status = 1;
      break;
    }
    if (mergeable(cur, *next)) {
      cur.length += next->length;
      continue;
    }
    if (cur.length > 0 && !print_entry(args.output, cur, false)) {
      status = 1;
      break;
    }
    cur = std::move(*next);
  }
  if (status == 0 && !print_entry(args.output, cur, true)) status = 1;
  Status closed = run_sync(**loop, close_image(backend.get()));
  (void)closed;
  return status;
}

}  // namespace qblock::tools
