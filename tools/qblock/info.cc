// `qblock info`: qemu-img info (qemu-compat.md §3.2) for raw and qcow2 images, human and JSON
// output, with --backing-chain. Images are described from their metadata alone
// (read_image_info, qblock/image.h); the qcow2 driver is not needed.
#include <sys/stat.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "qblock/commands.h"
#include "qblock/event_loop.h"
#include "qblock/image.h"
#include "qblock/image_options.h"
#include "qblock/img_common.h"
#include "qblock/info_luks.h"
#include "qblock/json_output.h"

namespace qblock::tools {

namespace {

using Json = nlohmann::ordered_json;

// An image of the chain, as info prints it.
struct ChainImage {
  std::string filename;
  uint64_t actual_size = 0;  // bytes allocated on disk
  // An NBD export: QEMU knows neither its disk size ("unavailable", no "actual-size") nor,
  // without a format above it, its dirty flag (no "dirty-flag").
  bool remote = false;
  ImageInfo info;
  std::string full_backing;  // resolved backing path
};

Result<ChainImage> describe(EventLoop& loop, const std::string& filename, std::string format) {
  Result<ImageInfo> info = run_sync(loop, read_image_info(loop, filename, std::move(format)));
  if (!info) return fail(info.error());
  ChainImage image;
  image.filename = filename;
  struct stat st;
  if (::stat(filename.c_str(), &st) == 0) image.actual_size = uint64_t(st.st_blocks) * 512;
  image.remote = filename.rfind("nbd:", 0) == 0 || filename.rfind("nbd+", 0) == 0;
  image.remote = image.remote || info->remote;
  if (!info->display_filename.empty()) image.filename = info->display_filename;
  if (info->qcow2 && !info->qcow2->backing_file.empty()) {
    image.full_backing = combine_path(filename, info->qcow2->backing_file);
  }
  image.info = std::move(*info);
  return image;
}

// The image given with --image-opts or as a "json:{...}" filename: the graph is opened (so
// any driver tree works, and qemu-img's open messages apply), then the format node's file is
// described from its metadata. Errors are reported here.
Result<ChainImage> describe_opened(EventLoop& loop, const std::string& filename,
                                   const ImageArgs& args) {
  OpenFlags flags;
  flags.read_only = true;
  flags.force_share = args.force_share;
  flags.no_io = true;  // as qemu-img info: an encrypted image needs no key to be described
  Result<std::unique_ptr<BlockBackend>> backend = open_image(loop, filename, args, flags);
  if (!backend) return fail(backend.error());
  BlockNode& root = (*backend)->root();
  const std::string driver = root.driver_name();
  BlockNode* file = root.child(ChildRole::kFile);
  const bool format = (driver == "qcow2" || driver == "raw" || driver == "luks") && file;
  Result<ImageInfo> info =
      run_sync(loop, read_image_info(format ? *file : root, format ? driver : "raw"));
  ChainImage image;
  image.filename = root.filename();
  // An export opened through options (driver=nbd, tls-creds=...) is as remote as a URI.
  image.remote = (format ? file : &root)->driver_name() == "nbd";
  if (info) {
    if (!format) info->format = driver;
    // A raw window (offset/size) is not the whole file.
    if (format && driver == "raw") info->virtual_size = (root.length() + 511) / 512 * 512;
    struct stat st;
    const std::string path = format ? file->filename() : image.filename;
    if (::stat(path.c_str(), &st) == 0) image.actual_size = uint64_t(st.st_blocks) * 512;
    if (info->qcow2 && !info->qcow2->backing_file.empty()) {
      image.full_backing = combine_path(image.filename, info->qcow2->backing_file);
    }
    image.info = std::move(*info);
  }
  Status closed = run_sync(loop, (*backend)->close());
  if (!info) {
    img_error("Could not open '" + filename + "': " + info.error().message());
    return fail(info.error());
  }
  if (!closed) {
    img_error(closed.error().message());
    return fail(closed.error());
  }
  return image;
}

Json to_json(const ChainImage& i) {
  Json j = Json::object();
  const Qcow2Info* h = i.info.qcow2 ? &*i.info.qcow2 : nullptr;
  const std::vector<SnapshotInfo>& snapshots = h ? h->snapshots : i.info.file_snapshots;
  if (!snapshots.empty()) {
    Json list = Json::array();
    for (const SnapshotInfo& snap : snapshots) {
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
  if (h && !h->backing_format.empty()) j["backing-filename-format"] = h->backing_format;
  j["virtual-size"] = i.info.virtual_size;
  j["filename"] = i.filename;
  if (h) j["cluster-size"] = h->cluster_size;
  if (!h && i.info.file_cluster_size) j["cluster-size"] = i.info.file_cluster_size;
  j["format"] = i.info.format;
  if (!i.remote) j["actual-size"] = i.actual_size;
  if (h) {
    Json data = Json::object();
    data["compat"] = h->version >= 3 ? "1.1" : "0.10";
    data["compression-type"] = h->compression_type ? "zstd" : "zlib";
    if (h->version >= 3) {
      data["lazy-refcounts"] = h->lazy_refcounts;
    }
    if (!h->bitmaps.empty()) {
      Json list = Json::array();
      for (const BitmapInfo& b : h->bitmaps) {
        Json flags = Json::array();
        if (b.in_use) flags.push_back("in-use");
        if (b.auto_enabled) flags.push_back("auto");
        list.push_back(Json{{"flags", flags}, {"name", b.name}, {"granularity", b.granularity}});
      }
      data["bitmaps"] = std::move(list);
    }
    data["refcount-bits"] = h->refcount_bits;
    if (h->has_data_file && !h->data_file.empty()) data["data-file"] = h->data_file;
    if (h->encrypted) {
      data["encrypt"] = h->luks ? luks_info_json(*h->luks, LuksInfoIn::kQcow2Encrypt)
                                : Json{{"format", h->encrypt_format}};
    }
    if (h->has_data_file) data["data-file-raw"] = h->data_file_raw;
    if (h->version >= 3) {
      data["corrupt"] = h->corrupt;
      data["extended-l2"] = h->extended_l2;
    }
    j["format-specific"] = Json{{"type", "qcow2"}, {"data", data}};
    if (!h->backing_file.empty()) {
      j["full-backing-filename"] = i.full_backing;
      j["backing-filename"] = h->backing_file;
    }
    if (h->encrypted) j["encrypted"] = true;
  }
  if (i.info.luks) {
    j["format-specific"] = luks_info_json(*i.info.luks);
    j["encrypted"] = true;
  }
  if (h || !i.remote || !i.info.display_filename.empty()) j["dirty-flag"] = h && h->dirty;
  return j;
}

void print_human(const ChainImage& i) {
  const Qcow2Info* h = i.info.qcow2 ? &*i.info.qcow2 : nullptr;
  std::printf("image: %s\n", i.filename.c_str());
  std::printf("file format: %s\n", i.info.format.c_str());
  std::printf("virtual size: %s (%llu bytes)\n", size_to_str(i.info.virtual_size).c_str(),
              static_cast<unsigned long long>(i.info.virtual_size));
  std::printf("disk size: %s\n", i.remote ? "unavailable" : size_to_str(i.actual_size).c_str());
  if (!h && i.info.file_cluster_size) {
    std::printf("cluster_size: %llu\n", static_cast<unsigned long long>(i.info.file_cluster_size));
  }
  if (!h && !i.info.file_snapshots.empty()) {
    std::printf("Snapshot list:\n");
    print_snapshot_table(i.info.file_snapshots);
  }
  if (i.info.luks) {
    std::printf("encrypted: yes\nFormat specific information:\n");
    print_luks_info(*i.info.luks);
  }
  if (!h) return;
  if (h->encrypted) std::printf("encrypted: yes\n");
  std::printf("cluster_size: %llu\n", static_cast<unsigned long long>(h->cluster_size));
  if (h->dirty) std::printf("cleanly shut down: no\n");
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
  if (!h->snapshots.empty()) {
    std::printf("Snapshot list:\n");
    print_snapshot_table(h->snapshots);
  }
  std::printf("Format specific information:\n");
  std::printf("    compat: %s\n", h->version >= 3 ? "1.1" : "0.10");
  std::printf("    compression type: %s\n", h->compression_type ? "zstd" : "zlib");
  if (h->version >= 3) {
    std::printf("    lazy refcounts: %s\n", h->lazy_refcounts ? "true" : "false");
  }
  if (!h->bitmaps.empty()) {
    std::printf("    bitmaps:\n");
    for (std::size_t n = 0; n < h->bitmaps.size(); ++n) {
      const BitmapInfo& b = h->bitmaps[n];
      std::printf("        [%zu]:\n            flags:\n", n);
      int k = 0;
      if (b.in_use) std::printf("                [%d]: in-use\n", k++);
      if (b.auto_enabled) std::printf("                [%d]: auto\n", k++);
      std::printf("            name: %s\n            granularity: %llu\n", b.name.c_str(),
                  static_cast<unsigned long long>(b.granularity));
    }
  }
  std::printf("    refcount bits: %u\n", h->refcount_bits);
  if (h->has_data_file && !h->data_file.empty()) {
    std::printf("    data file: %s\n", h->data_file.c_str());
  }
  if (h->encrypted) {
    std::printf("    encrypt:\n");
    if (h->luks) {
      print_luks_info(*h->luks, LuksInfoIn::kQcow2Encrypt, "        ");
    } else {
      std::printf("        format: %s\n", h->encrypt_format.c_str());
    }
  }
  if (h->has_data_file) {
    std::printf("    data file raw: %s\n", h->data_file_raw ? "true" : "false");
  }
  if (h->version >= 3) {
    std::printf("    corrupt: %s\n", h->corrupt ? "true" : "false");
    std::printf("    extended l2: %s\n", h->extended_l2 ? "true" : "false");
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
  // A plain file name is described from its header alone (no driver opened, so damaged
  // images are shown as qemu-img shows them); a "json:" name or --image-opts opens the graph.
  add_image_options(parser,
                    ImageOption::kFormat | ImageOption::kFormatLong | ImageOption::kObject |
                        ImageOption::kForceShare | ImageOption::kImageOpts,
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
  std::vector<ChainImage> infos;
  std::string filename = parser.operands()[0];
  std::string fmt = image.format_name();
  // A chain that comes back to an image it has passed (by name, as 7.2 compares, or by
  // inode) is refused instead of walked for ever.
  std::set<std::string> seen_names;
  std::set<std::pair<dev_t, ino_t>> seen_files;
  for (;;) {
    struct stat st {};
    const bool is_file = ::stat(filename.c_str(), &st) == 0;
    if (!seen_names.insert(filename).second ||
        (is_file && !seen_files.insert({st.st_dev, st.st_ino}).second)) {
      img_error("Backing file '" + filename + "' creates an infinite loop.");
      return 1;
    }
    const bool opened_graph =
        infos.empty() && (image.image_opts || filename.rfind("json:", 0) == 0);
    if (opened_graph && !check_image_opts_exclusive(image)) return 1;
    Result<ChainImage> info =
        opened_graph ? describe_opened(**loop, filename, image) : describe(**loop, filename, fmt);
    if (!info && opened_graph) return 1;  // reported by describe_opened
    if (!info) {
      // 7.2 repeats the prefix for file-level failures ("Could not open 'x': Could not open
      // 'x': No such file or directory"), qemu-compat.md §3.
      img_error("Could not open '" + filename + "': " + info.error().message());
      return 1;
    }
    infos.push_back(std::move(*info));
    const ChainImage& last = infos.back();
    if (!chain || !last.info.qcow2 || last.info.qcow2->backing_file.empty()) break;
    filename = last.full_backing;
    fmt = last.info.qcow2->backing_format;
  }
  if (output == "json") {
    Json out = Json::array();
    for (const ChainImage& i : infos) out.push_back(to_json(i));
    std::printf("%s\n", qemu_json(chain ? out : out[0]).c_str());
    return 0;
  }
  for (std::size_t k = 0; k < infos.size(); ++k) {
    if (k) std::printf("\n");
    print_human(infos[k]);
  }
  return 0;
}

}  // namespace qblock::tools
