// `qblock measure`: qemu-img measure (qemu-compat.md §3.7). Computes the file size a qcow2 or
// raw image needs for a virtual size (--size) or for the content of an existing image: the
// metadata qcow2 would need when fully allocated, plus the data clusters the source uses.

#include <algorithm>
#include <cctype>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include "qblock/block_backend.h"
#include "qblock/commands.h"
#include "qblock/convert_common.h"
#include "qblock/dirty_bitmaps.h"
#include "qblock/event_loop.h"
#include "qblock/image_options.h"
#include "qblock/img_common.h"
#include "qblock/options.h"
#include "qblock/snapshot_option.h"

namespace qblock::tools {

namespace {

// QEMU's limit on the L1 table (qcow2-format.md §3.1): 32 MiB of entries.
constexpr uint64_t kMaxL1Bytes = 32 << 20;

uint64_t div_round_up(uint64_t a, uint64_t b) { return (a + b - 1) / b; }
uint64_t align_up(uint64_t a, uint64_t b) { return div_round_up(a, b) * b; }

// Refcount blocks plus refcount table clusters needed to give `clusters` other clusters a
// refcount, counting the refcount structures themselves (a fixed point: qcow2-format.md §5.3).
uint64_t refcount_clusters(uint64_t clusters, uint64_t cs, uint64_t refcount_bits) {
  const uint64_t per_block = cs * 8 / refcount_bits;
  const uint64_t per_table_cluster = cs / 8;
  uint64_t blocks = 0;
  uint64_t table = 0;
  for (;;) {
    const uint64_t new_blocks = div_round_up(clusters + blocks + table, per_block);
    const uint64_t new_table = div_round_up(new_blocks, per_table_cluster);
    if (new_blocks == blocks && new_table == table) break;
    blocks = new_blocks;
    table = new_table;
  }
  return blocks + table;
}

// Size of a qcow2 image of virtual size `size` with every cluster allocated: the header
// cluster, L2 tables for the whole disk (whole tables), an L1 table of whole clusters, the
// refcount structures and the data. Observed to match qemu-img 7.2 (qemu-compat.md §3.7).
uint64_t qcow2_full_size(uint64_t size, uint64_t cs, uint64_t refcount_bits, bool extended_l2) {
  const uint64_t entry = extended_l2 ? 16 : 8;
  const uint64_t data = align_up(size, cs);
  uint64_t meta = cs;  // header
  const uint64_t l2_entries = align_up(data / cs, cs / entry);
  meta += l2_entries * entry;
  const uint64_t l1_entries = align_up(l2_entries * entry / cs, cs / 8);
  meta += l1_entries * 8;
  meta += refcount_clusters(meta / cs + data / cs, cs, refcount_bits) * cs;
  return meta + data;
}

// True for a well-formed size of 2^63 bytes or more that still fits 64 bits ("9E"): qemu-img
// parses it, then rejects it with its own message. (parse_size refuses such values.)
bool size_beyond_int64(const std::string& text) {
  char* end = nullptr;
  const long double v = std::strtold(text.c_str(), &end);
  if (end == text.c_str() || text[0] == '-' || text.find_first_of("xX") != std::string::npos) {
    return false;
  }
  long double mult = 1;
  const std::string suffix = end;
  const std::string units = "bkmgtpe";
  if (suffix.size() == 1) {
    const std::size_t i = units.find(static_cast<char>(std::tolower(suffix[0])));
    if (i == std::string::npos) return false;
    for (std::size_t k = 1; k <= i; ++k) mult *= 1024;
  } else if (!suffix.empty()) {
    return false;
  }
  const long double bytes = v * mult;
  return bytes >= 9223372036854775808.0L && bytes < 18446744073709551616.0L;
}

struct MeasureArgs {
  ImageArgs image;
  std::string out_format = "raw";
  std::string options;
  std::string filename;
  bool json = false;
  std::optional<uint64_t> size;
  std::optional<SnapshotParam> snapshot;  // -l
};

// Returns -1 to continue, else the exit status.
int parse_args(int argc, char** argv, MeasureArgs& args) {
  OptionParser parser;
  parser.help([] {
    std::printf(
        "qblock measure [--output=human|json] [-O output_fmt] [-o options] [--size N | "
        "[--image-opts] [-f fmt] filename]\n");
  });
  add_image_options(parser,
                    ImageOption::kFormat | ImageOption::kImageOpts | ImageOption::kObject |
                        ImageOption::kForceShare,
                    &args.image);
  parser.value('O', &args.out_format);
  parser.with_value('o', [&args](const char* value) {
    if (!args.options.empty()) args.options += ",";
    args.options += value;
    return kContinue;
  });
  parser.with_value('l', [&args](const char* value) {
    SnapshotParam param;
    if (!parse_snapshot_option(value, param)) return 1;
    args.snapshot = std::move(param);
    return kContinue;
  });
  parser.with_value("output", [&args](const char* value) {
    if (std::string(value) == "json") {
      args.json = true;
    } else if (std::string(value) == "human") {
      args.json = false;
    } else {
      img_error("--output must be used with human or json as argument.");
      return 1;
    }
    return kContinue;
  });
  parser.with_value("size", [&args](const char* value) {
    Result<uint64_t> s = parse_size(value);
    if (!s && size_beyond_int64(value)) {
      img_error("Invalid image size specified. Must be between 0 and 9223372036854775807.");
      return 1;
    }
    if (!s) {
      img_error("Invalid image size specified. You may use k, M, G, T, P or E suffixes for");
      img_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
      return 1;
    }
    if (*s > uint64_t{INT64_MAX}) {
      img_error("Invalid image size specified. Must be between 0 and 9223372036854775807.");
      return 1;
    }
    args.size = *s;
    return kContinue;
  });
  // 7.2 prints its whole help text on stdout and exits 0 for a getopt failure; qblock
  // reports the error (the parser's default).
  if (int r = parser.parse(argc, argv); r != kContinue) return r;
  const std::vector<std::string>& operands = parser.operands();
  if (!operands.empty()) args.filename = operands[0];
  if (operands.size() > 1) {
    img_error("At most one filename argument is allowed.");
    return 1;
  }
  if (args.size && !args.filename.empty()) {
    img_error("--size N cannot be used together with a filename.");
    return 1;
  }
  if (!args.size && args.filename.empty()) {
    img_error("Either --size N or one filename must be specified.");
    return 1;
  }
  if (args.size && (args.image.image_opts || args.image.format || args.snapshot)) {
    img_error("--image-opts, -f, and -l require a filename argument.");
    return 1;
  }
  return -1;
}

// What the source contributes: its virtual size, the bytes of target clusters its data
// touches, and whether it is a qcow2 v3 image (which can carry persistent bitmaps).
struct SourceUsage {
  uint64_t size = 0;
  uint64_t data_bytes = 0;
  bool qcow2_v3 = false;
};

Task<Status> close_source(BlockBackend* backend) { co_return co_await backend->close(); }

// Counts the data of `node` in units of `granularity`: each data extent is extended to whole
// units, as the target would allocate them. Zero and unallocated extents cost nothing.
Task<Result<uint64_t>> count_data(BlockNode* node, uint64_t granularity) {
  const uint64_t size = node->length();
  uint64_t counted_end = 0;  // data before this offset is already counted
  uint64_t total = 0;
  uint64_t offset = 0;
  while (offset < size) {
    Task<Result<BlockStatus>> query = source_status(node, offset, size - offset, false);
    Result<BlockStatus> st = co_await std::move(query);
    if (!st) co_return fail(st.error());
    const uint64_t end = offset + st->bytes;
    const uint32_t kData = kStatusData | kStatusAllocated;
    if ((st->flags & kData) == kData && !(st->flags & kStatusZero)) {
      const uint64_t start = std::max(offset / granularity * granularity, counted_end);
      const uint64_t stop = align_up(end, granularity);
      if (stop > start) total += stop - start;
      counted_end = std::max(counted_end, stop);
    }
    offset = end;
  }
  co_return total;
}

}  // namespace

int run_measure(int argc, char** argv) {
  MeasureArgs args;
  if (int r = parse_args(argc, argv, args); r >= 0) return r;
  Result<std::unique_ptr<EventLoop>> loop = EventLoop::create();
  if (!loop) {
    img_error(loop.error().message());
    return 1;
  }
  std::unique_ptr<BlockBackend> source;
  if (!args.filename.empty()) {
    OpenFlags flags;
    flags.read_only = true;
    flags.force_share = args.image.force_share;
    Result<std::unique_ptr<BlockBackend>> opened =
        open_image(**loop, args.filename, args.image, flags);
    if (!opened) return 1;
    source = std::move(*opened);
    // 7.2 loads the snapshot right after the open, before looking at the output format.
    if (args.snapshot && !load_snapshot_option(**loop, *args.snapshot, source->root())) {
      Status closed = run_sync(**loop, close_source(source.get()));
      (void)closed;
      return 1;
    }
  }
  auto finish = [&](int status) {
    if (source) {
      Status closed = run_sync(**loop, close_source(source.get()));
      (void)closed;
    }
    return status;
  };
  if (!is_target_format(args.out_format)) {
    img_error("Unknown file format '" + args.out_format + "'");
    return finish(1);
  }
  Result<TargetOptions> opts = check_target_options(args.out_format, args.options);
  if (!opts) {
    img_error(opts.error().message());
    img_error("Invalid options for file format '" + args.out_format + "'");
    return finish(1);
  }

  // The target's layout parameters, checked in qemu-img's order with measure's own texts.
  uint64_t cs = 65536;
  uint64_t refcount_bits = 16;
  bool extended_l2 = false;
  PreallocMode prealloc = PreallocMode::kOff;
  uint64_t luks_area = 0;  // bytes of an encrypt.format=luks target's LUKS header area
  if (args.out_format == "qcow2") {
    // qcow2-format.md §9.3: a LUKS image holds its header and key slots in clusters of
    // their own, which measure counts in both sizes.
    TargetOptions crypt_opts;
    for (const auto& [k, v] : opts->values) {
      if (k.starts_with("encrypt")) crypt_opts.values.emplace_back(k, v);
    }
    Result<Qcow2CreateOptions> create = to_create_options(crypt_opts);
    if (!create) {
      img_error(create.error().message());
      return finish(1);
    }
    if (!create->encrypt_format.empty() && !create->encrypt.key_secret) {
      img_error("Parameter 'encrypt.key-secret' is required for cipher");
      return finish(1);
    }
    if (create->encrypt_format == "luks") {
      Result<uint64_t> area = luks_header_bytes(create->encrypt);
      if (!area) {
        img_error(area.error().message());
        return finish(1);
      }
      luks_area = *area;
    }
    if (const std::string* v = opts->get("cluster_size")) cs = std::stoull(*v);
    if (cs < 512 || cs > (2 << 20) || (cs & (cs - 1))) {
      img_error("Cluster size must be a power of two between 512 and 2048k");
      return finish(1);
    }
    if (const std::string* v = opts->get("extended_l2");
        v && (*v == "on" || *v == "yes" || *v == "true" || *v == "y")) {
      extended_l2 = true;
    }
    if (extended_l2 && cs < 16384) {
      img_error(
          "Extended L2 entries are only supported with cluster sizes of at least 16384 "
          "bytes");
      return finish(1);
    }
    bool v2 = false;
    if (const std::string* v = opts->get("compat")) {
      if (*v == "0.10") {
        v2 = true;
      } else if (*v != "1.1") {
        img_error("Invalid compatibility level: '" + *v + "'");
        return finish(1);
      }
    }
    if (const std::string* v = opts->get("refcount_bits")) {
      refcount_bits = std::stoull(*v, nullptr, 0);
    }
    if (refcount_bits == 0 || refcount_bits > 64 || (refcount_bits & (refcount_bits - 1))) {
      img_error("Refcount width must be a power of two and may not exceed 64 bits");
      return finish(1);
    }
    if (v2 && refcount_bits != 16) {
      img_error(
          "Different refcount widths than 16 bits require compatibility level 1.1 or above "
          "(use compat=1.1 or greater)");
      return finish(1);
    }
    if (const std::string* v = opts->get("preallocation")) {
      Result<PreallocMode> m = parse_prealloc_mode(*v);
      if (!m) {
        img_error("invalid parameter value: " + *v);
        return finish(1);
      }
      prealloc = *m;
    }
  }

  SourceUsage usage;
  if (source) {
    usage.size = source->length();
    BlockNode& root = source->root();
    if (root.driver_name() == "qcow2") {
      for (const auto& [k, v] : root.info().format_specific) {
        if (k == "compat" && v == "1.1") usage.qcow2_v3 = true;
      }
    }
    if (args.out_format == "qcow2") {
      Result<uint64_t> data = run_sync(**loop, count_data(&root, cs));
      if (!data) {
        img_error("Unable to get block status: " + data.error().message());
        return finish(1);
      }
      usage.data_bytes = *data;
    }
  } else {
    usage.size = *args.size;
  }

  uint64_t required = 0;
  uint64_t fully_allocated = 0;
  if (args.out_format == "raw") {
    // A raw image is its content, whole sectors (qemu-compat.md §3.7).
    required = fully_allocated = align_up(usage.size, 512);
  } else {
    const uint64_t entry = extended_l2 ? 16 : 8;
    const uint64_t l1_entries = div_round_up(usage.size, cs * (cs / entry));
    if (l1_entries > kMaxL1Bytes / 8) {
      img_error("The image size is too large (try using a larger cluster size)");
      return finish(1);
    }
    fully_allocated = qcow2_full_size(usage.size, cs, refcount_bits, extended_l2);
    if (prealloc == PreallocMode::kFalloc || prealloc == PreallocMode::kFull) {
      required = fully_allocated;
    } else {
      required = fully_allocated - align_up(usage.size, cs) + usage.data_bytes;
    }
    fully_allocated += align_up(luks_area, cs);
    required += align_up(luks_area, cs);
  }
  // Persistent bitmaps are only reported for a qcow2 v3 source measured for a qcow2 target,
  // as qemu-img 7.2 sizes them: each bitmap wholly allocated in target clusters, its table,
  // and the directory.
  const bool bitmaps = source && usage.qcow2_v3 && args.out_format == "qcow2";
  uint64_t bitmaps_size = 0;
  if (bitmaps) {
    uint64_t directory = 0;
    for (const DirtyBitmapInfo& b : dirty_bitmaps(source->root())) {
      if (!b.persistent) continue;
      const uint64_t bytes = div_round_up(div_round_up(usage.size, b.granularity), 8);
      const uint64_t clusters = div_round_up(bytes, cs);
      bitmaps_size += clusters * cs + align_up(clusters * 8, cs);
      directory += align_up(24 + b.name.size(), 8);
    }
    bitmaps_size += align_up(directory, cs);
  }
  if (args.json) {
    std::printf("{\n");
    if (bitmaps) std::printf("    \"bitmaps\": %" PRIu64 ",\n", bitmaps_size);
    std::printf("    \"required\": %" PRIu64 ",\n    \"fully-allocated\": %" PRIu64 "\n}\n",
                required, fully_allocated);
  } else {
    std::printf("required size: %" PRIu64 "\nfully allocated size: %" PRIu64 "\n", required,
                fully_allocated);
    if (bitmaps) std::printf("bitmaps size: %" PRIu64 "\n", bitmaps_size);
  }
  return finish(0);
}

}  // namespace qblock::tools
