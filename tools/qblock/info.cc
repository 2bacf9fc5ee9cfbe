// `qblock info`: qemu-img info (qemu-compat.md §3.2) for raw and qcow2 images, human and JSON
// output, with --backing-chain. qcow2 images are described from their header alone
// (block/formats/qcow2/header.h); the qcow2 driver is not needed.
#include <sys/stat.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "block/driver.h"
#include "block/formats/qcow2/bitmaps.h"
#include "block/formats/qcow2/header.h"
#include "block/formats/qcow2/snapshot.h"
#include "qblock/commands.h"
#include "qblock/event_loop.h"
#include "qblock/image_options.h"
#include "qblock/img_common.h"

namespace qblock::tools {

namespace {

using Json = nlohmann::ordered_json;

// Incompatible features qblock's qcow2 support knows (qcow2-format.md §2.3).
constexpr uint64_t kKnownIncompatible = 0x1f;

struct ImageInfo {
  std::string filename;
  std::string format;
  uint64_t virtual_size = 0;
  uint64_t actual_size = 0;
  std::optional<qcow2::Header> header;  // qcow2 only
  std::vector<qcow2::Snapshot> snapshots;
  std::vector<qcow2::Bitmap> bitmaps;  // consistent persistent bitmaps
  std::string full_backing;            // resolved backing path
};

// The first bytes of the file (up to 2 MiB, the largest cluster) and its length.
Task<Result<std::pair<std::vector<uint8_t>, uint64_t>>> read_head(EventLoop* loop,
                                                                  std::string filename) {
  Options options = Options::object();
  options["driver"] = "file";
  options["filename"] = filename;
  OpenFlags flags;
  flags.read_only = true;
  Result<NodePtr> node = co_await open_node(*loop, std::move(options), flags, "file");
  if (!node) co_return fail(node.error());
  const uint64_t length = (*node)->length();
  std::vector<uint8_t> buf(std::min<uint64_t>(length, 2 << 20), 0);
  IoVec qiov(buf.data(), buf.size());
  Status read = co_await (*node)->read(0, std::move(qiov));
  Status closed = co_await (*node)->close();
  if (!read) co_return fail(read.error());
  (void)closed;
  co_return std::make_pair(std::move(buf), length);
}

// What a qcow2 image keeps beyond its header: internal snapshots (qcow2-format.md §8.1) and
// persistent bitmaps (§14).
struct Qcow2Tables {
  std::vector<qcow2::Snapshot> snapshots;
  std::vector<qcow2::Bitmap> bitmaps;
};

Task<Result<Qcow2Tables>> read_tables(EventLoop* loop, std::string filename, qcow2::Header header) {
  Options options = Options::object();
  options["driver"] = "file";
  options["filename"] = filename;
  OpenFlags flags;
  flags.read_only = true;
  flags.force_share = true;
  Result<NodePtr> node = co_await open_node(*loop, std::move(options), flags, "file");
  if (!node) co_return fail(node.error());
  Qcow2Tables tables;
  Status result = ok();
  if (header.nb_snapshots) {
    Task<Result<qcow2::SnapshotTable>> read = qcow2::read_snapshot_table(**node, header);
    Result<qcow2::SnapshotTable> table = co_await std::move(read);
    if (table) {
      tables.snapshots = std::move(table->snapshots);
    } else {
      result = fail(table.error());
    }
  }
  if (result) {
    Task<Result<qcow2::BitmapDirectory>> read = qcow2::read_bitmap_directory(**node, header);
    Result<qcow2::BitmapDirectory> dir = co_await std::move(read);
    if (dir) {
      tables.bitmaps = std::move(dir->bitmaps);
    } else {
      result = fail(dir.error());
    }
  }
  Status closed = co_await (*node)->close();
  (void)closed;
  if (!result) co_return fail(result.error());
  co_return tables;
}

// QEMU's pretty printer puts an empty array's brackets on two lines.
std::string qemu_json(const std::string& dumped) {
  std::string out;
  std::size_t start = 0;
  while (start < dumped.size()) {
    std::size_t end = dumped.find('\n', start);
    if (end == std::string::npos) end = dumped.size();
    std::string line = dumped.substr(start, end - start);
    const std::size_t open = line.find("[]");
    if (open != std::string::npos && open + 2 >= line.size() - 1) {
      const std::size_t indent = line.find_first_not_of(' ');
      out += line.substr(0, open + 1) + "\n" + std::string(indent, ' ') + line.substr(open + 1);
    } else {
      out += line;
    }
    if (end < dumped.size()) out += '\n';
    start = end + 1;
  }
  return out;
}

Result<ImageInfo> describe(EventLoop& loop, const std::string& filename, std::string format) {
  Result<std::pair<std::vector<uint8_t>, uint64_t>> head =
      run_sync(loop, read_head(&loop, filename));
  if (!head) return fail(head.error());
  const std::vector<uint8_t>& buf = head->first;
  ImageInfo info;
  info.filename = filename;
  struct stat st;
  if (::stat(filename.c_str(), &st) == 0) info.actual_size = uint64_t(st.st_blocks) * 512;
  if (format.empty()) {
    format = buf.size() >= 8 && buf[0] == 0x51 && buf[1] == 0x46 && buf[2] == 0x49 && buf[3] == 0xfb
                 ? "qcow2"
                 : "raw";
  }
  info.format = format;
  if (format == "raw") {
    // QEMU reports the raw length rounded up to whole sectors (observed with qemu-img 7.2).
    info.virtual_size = (head->second + 511) / 512 * 512;
    return info;
  }
  if (format != "qcow2") {
    return fail(Error::with_message(EINVAL, "Unknown driver '" + format + "'"));
  }
  Result<qcow2::Header> h = qcow2::parse_header(buf.data(), buf.size());
  if (!h) return fail(h.error());
  if (uint64_t unknown = h->incompatible_features & ~kKnownIncompatible) {
    return fail(Error::with_message(ENOTSUP, qcow2::unsupported_features_message(*h, unknown)));
  }
  info.virtual_size = h->size / 512 * 512;
  if (!h->backing_file.empty()) info.full_backing = combine_path(filename, h->backing_file);
  if (h->nb_snapshots || h->bitmaps) {
    Result<Qcow2Tables> tables = run_sync(loop, read_tables(&loop, filename, *h));
    if (!tables) return fail(tables.error());
    info.snapshots = std::move(tables->snapshots);
    info.bitmaps = std::move(tables->bitmaps);
  }
  info.header = std::move(*h);
  return info;
}

Json to_json(const ImageInfo& i) {
  Json j = Json::object();
  if (!i.snapshots.empty()) {
    Json list = Json::array();
    for (const qcow2::Snapshot& snap : i.snapshots) {
      Json e = Json::object();
      if (snap.icount) e["icount"] = *snap.icount;
      e["vm-clock-nsec"] = snap.vm_clock_nsec % 1000000000;
      e["name"] = snap.name;
      e["date-sec"] = snap.date_sec;
      e["date-nsec"] = snap.date_nsec;
      e["vm-clock-sec"] = snap.vm_clock_nsec / 1000000000;
      e["id"] = snap.id;
      e["vm-state-size"] = snap.vm_state_size;
      list.push_back(std::move(e));
    }
    j["snapshots"] = std::move(list);
  }
  const qcow2::Header* h = i.header ? &*i.header : nullptr;
  if (h && !h->backing_format.empty()) j["backing-filename-format"] = h->backing_format;
  j["virtual-size"] = i.virtual_size;
  j["filename"] = i.filename;
  if (h) j["cluster-size"] = h->cluster_size();
  j["format"] = i.format;
  j["actual-size"] = i.actual_size;
  if (h) {
    Json data = Json::object();
    data["compat"] = h->version >= 3 ? "1.1" : "0.10";
    data["compression-type"] = h->compression_type ? "zstd" : "zlib";
    if (h->version >= 3) {
      data["lazy-refcounts"] = (h->compatible_features & qcow2::kCompatLazyRefcounts) != 0;
    }
    if (!i.bitmaps.empty()) {
      Json list = Json::array();
      for (const qcow2::Bitmap& b : i.bitmaps) {
        Json flags = Json::array();
        if (b.flags & qcow2::kBitmapInUse) flags.push_back("in-use");
        if (b.flags & qcow2::kBitmapAuto) flags.push_back("auto");
        list.push_back(Json{{"flags", flags},
                            {"name", b.name},
                            {"granularity", uint64_t{1} << b.granularity_bits}});
      }
      data["bitmaps"] = std::move(list);
    }
    data["refcount-bits"] = h->refcount_bits();
    if (h->version >= 3) {
      data["corrupt"] = (h->incompatible_features & qcow2::kIncompatCorrupt) != 0;
      data["extended-l2"] = h->extended_l2();
    }
    j["format-specific"] = Json{{"type", "qcow2"}, {"data", data}};
    if (!h->backing_file.empty()) {
      j["full-backing-filename"] = i.full_backing;
      j["backing-filename"] = h->backing_file;
    }
    if (h->crypt_method) j["encrypted"] = true;
  }
  j["dirty-flag"] = h && (h->incompatible_features & qcow2::kIncompatDirty) != 0;
  return j;
}

void print_human(const ImageInfo& i) {
  const qcow2::Header* h = i.header ? &*i.header : nullptr;
  std::printf("image: %s\n", i.filename.c_str());
  std::printf("file format: %s\n", i.format.c_str());
  std::printf("virtual size: %s (%llu bytes)\n", size_to_str(i.virtual_size).c_str(),
              static_cast<unsigned long long>(i.virtual_size));
  std::printf("disk size: %s\n", size_to_str(i.actual_size).c_str());
  if (!h) return;
  if (h->crypt_method) std::printf("encrypted: yes\n");
  std::printf("cluster_size: %llu\n", static_cast<unsigned long long>(h->cluster_size()));
  if (h->incompatible_features & qcow2::kIncompatDirty) std::printf("cleanly shut down: no\n");
  if (!h->backing_file.empty()) {
    if (i.full_backing != h->backing_file) {
      std::printf("backing file: %s (actual path: %s)\n", h->backing_file.c_str(),
                  i.full_backing.c_str());
    } else {
      std::printf("backing file: %s\n", h->backing_file.c_str());
    }
  }
  if (!h->backing_format.empty()) {
    std::printf("backing file format: %s\n", h->backing_format.c_str());
  }
  if (!i.snapshots.empty()) {
    std::printf("Snapshot list:\n");
    print_snapshot_table(i.snapshots);
  }
  std::printf("Format specific information:\n");
  std::printf("    compat: %s\n", h->version >= 3 ? "1.1" : "0.10");
  std::printf("    compression type: %s\n", h->compression_type ? "zstd" : "zlib");
  if (h->version >= 3) {
    std::printf("    lazy refcounts: %s\n",
                h->compatible_features & qcow2::kCompatLazyRefcounts ? "true" : "false");
  }
  if (!i.bitmaps.empty()) {
    std::printf("    bitmaps:\n");
    for (std::size_t n = 0; n < i.bitmaps.size(); ++n) {
      const qcow2::Bitmap& b = i.bitmaps[n];
      std::printf("        [%zu]:\n            flags:\n", n);
      int k = 0;
      if (b.flags & qcow2::kBitmapInUse) std::printf("                [%d]: in-use\n", k++);
      if (b.flags & qcow2::kBitmapAuto) std::printf("                [%d]: auto\n", k++);
      std::printf("            name: %s\n            granularity: %llu\n", b.name.c_str(),
                  static_cast<unsigned long long>(uint64_t{1} << b.granularity_bits));
    }
  }
  std::printf("    refcount bits: %u\n", h->refcount_bits());
  if (h->version >= 3) {
    std::printf("    corrupt: %s\n",
                h->incompatible_features & qcow2::kIncompatCorrupt ? "true" : "false");
    std::printf("    extended l2: %s\n", h->extended_l2() ? "true" : "false");
  }
}

}  // namespace

int run_info(int argc, char** argv) {
  ImageArgs image;
  std::string output = "human";
  bool chain = false;
  OptionParser parser;
  parser.help([] {
    std::printf(
        "qblock info [-f fmt] [--output=human|json] [--backing-chain] [-U] "
        "filename\n");
  });
  // No --image-opts yet: the image is described from its header, read by file name.
  add_image_options(parser,
                    ImageOption::kFormat | ImageOption::kFormatLong | ImageOption::kObject |
                        ImageOption::kForceShare,
                    &image);
  parser.value("output", &output).flag("backing-chain", &chain);
  if (int r = parser.parse(argc, argv); r != kContinue) return r;
  if (parser.operands().size() != 1) {
    img_usage_error("Expecting one image file name");
    return 1;
  }
  if (output != "human" && output != "json") {
    img_error("--output must be used with human or json as argument.");
    return 1;
  }
  Result<std::unique_ptr<EventLoop>> loop = EventLoop::create();
  if (!loop) {
    img_error(loop.error().message());
    return 1;
  }
  std::vector<ImageInfo> infos;
  std::string filename = parser.operands()[0];
  std::string fmt = image.format_name();
  for (;;) {
    Result<ImageInfo> info = describe(**loop, filename, fmt);
    if (!info) {
      // 7.2 repeats the prefix for file-level failures ("Could not open 'x': Could not open
      // 'x': No such file or directory"), qemu-compat.md §3.
      img_error("Could not open '" + filename + "': " + info.error().message());
      return 1;
    }
    infos.push_back(std::move(*info));
    const ImageInfo& last = infos.back();
    if (!chain || !last.header || last.header->backing_file.empty()) break;
    filename = last.full_backing;
    fmt = last.header->backing_format;
  }
  if (output == "json") {
    Json out = Json::array();
    for (const ImageInfo& i : infos) out.push_back(to_json(i));
    std::printf("%s\n", qemu_json((chain ? out : out[0]).dump(4)).c_str());
    return 0;
  }
  for (std::size_t k = 0; k < infos.size(); ++k) {
    if (k) std::printf("\n");
    print_human(infos[k]);
  }
  return 0;
}

}  // namespace qblock::tools
