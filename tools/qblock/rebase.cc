// `qblock rebase`: qemu-img rebase's command line, messages and exit codes (qemu-compat.md
// §3.11). The copy of the safe mode is rebase_copy and the header rewrite change_backing_file
// (qblock/jobs.h); this file parses, opens the images and prints.
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "qblock/block_backend.h"
#include "qblock/commands.h"
#include "qblock/event_loop.h"
#include "qblock/image.h"
#include "qblock/image_options.h"
#include "qblock/img_common.h"
#include "qblock/img_progress.h"
#include "qblock/jobs.h"

namespace qblock::tools {

namespace {

struct RebaseArgs {
  ImageArgs image;
  std::string filename;
  std::string cache = "writeback";  // BDRV_DEFAULT_CACHE
  std::optional<std::string> backing;
  std::optional<std::string> backing_format;
  bool unsafe = false;
  bool progress = false;
  bool quiet = false;
};

// The format names qemu-img 7.2 knows (bdrv_find_format); -F with another name is refused
// before any image is opened for it.
bool known_format(const std::string& name) {
  static const char* const kFormats[] = {"blkdebug",
                                         "blklogwrites",
                                         "blkverify",
                                         "bochs",
                                         "cloop",
                                         "compress",
                                         "copy-before-write",
                                         "copy-on-read",
                                         "dmg",
                                         "file",
                                         "ftp",
                                         "ftps",
                                         "host_cdrom",
                                         "host_device",
                                         "http",
                                         "https",
                                         "iscsi",
                                         "luks",
                                         "nbd",
                                         "null-aio",
                                         "null-co",
                                         "nvme",
                                         "parallels",
                                         "preallocate",
                                         "qcow",
                                         "qcow2",
                                         "qed",
                                         "quorum",
                                         "raw",
                                         "rbd",
                                         "replication",
                                         "snapshot-access",
                                         "ssh",
                                         "throttle",
                                         "vdi",
                                         "vhdx",
                                         "vmdk",
                                         "vpc",
                                         "vvfat"};
  for (const char* f : kFormats) {
    if (name == f) return true;
  }
  return false;
}

// Returns -1 to continue, else the exit status.
int parse_args(int argc, char** argv, RebaseArgs& args) {
  OptionParser parser;
  parser.help([] {
    std::printf(
        "qblock rebase [--object objectdef] [--image-opts] [-U] [-q] [-f fmt] [-t cache] "
        "[-T src_cache] [-p] [-u] -b backing_file [-F backing_fmt] filename\n");
  });
  add_image_options(parser,
                    ImageOption::kFormat | ImageOption::kImageOpts | ImageOption::kObject |
                        ImageOption::kForceShare | ImageOption::kSourceCache,
                    &args.image);
  parser.value('t', &args.cache).flag('u', &args.unsafe).flag('p', &args.progress);
  parser.flag('q', &args.quiet);
  parser.with_value('b', [&args](const char* value) {
    args.backing = value;
    return kContinue;
  });
  parser.with_value('F', [&args](const char* value) {
    args.backing_format = value;
    return kContinue;
  });
  if (int r = parser.parse(argc, argv); r != kContinue) return r;
  if (args.quiet) args.progress = false;
  if (parser.operands().size() != 1) {
    img_usage_error("Expecting one image file name");
    return 1;
  }
  if (!args.unsafe && !args.backing) {
    img_usage_error("Must specify backing file (-b) or use unsafe mode (-u)");
    return 1;
  }
  args.filename = parser.operands()[0];
  return -1;
}

Task<Result<std::unique_ptr<BlockBackend>>> open_task(EventLoop* loop, BackendOptions options) {
  co_return co_await BlockBackend::open(*loop, std::move(options));
}

Task<Status> copy_task(BlockBackend* image, RebaseOptions options) {
  co_return co_await rebase_copy(*image, std::move(options));
}

Task<Status> change_task(BlockBackend* image, std::string file, std::string format) {
  co_return co_await change_backing_file(image->root(), std::move(file), std::move(format));
}

Task<Status> close_task(BlockBackend* backend) { co_return co_await backend->close(); }

Task<Result<ImageInfo>> info_task(EventLoop* loop, std::string filename) {
  co_return co_await read_image_info(*loop, std::move(filename), "");
}

// Whether the image's format takes a "backing" option (qcow2: the only format with a backing
// file), from -f, the driver of --image-opts, or the file's magic.
bool has_backing_option(EventLoop& loop, const RebaseArgs& args) {
  if (args.image.format) return *args.image.format == "qcow2";
  if (args.image.image_opts) return args.filename.find("driver=qcow2") != std::string::npos;
  Result<ImageInfo> info = run_sync(loop, info_task(&loop, args.filename));
  return !info || info->format == "qcow2";
}

// Everything after the image is open; returns the exit status.
int rebase(EventLoop& loop, BlockBackend& image, const RebaseArgs& args, const OpenFlags& src,
           ImgProgress& progress) {
  if (args.backing_format && !known_format(*args.backing_format)) {
    img_error("Invalid format name: '" + *args.backing_format + "'");
    return 1;
  }
  const std::string backing = args.backing.value_or("");
  std::unique_ptr<BlockBackend> new_backing;
  auto close_new_backing = [&] {
    if (new_backing) (void)run_sync(loop, close_task(new_backing.get()));
  };
  if (!args.unsafe) {
    if (!backing.empty()) {
      // A relative name is relative to the image's directory, as in the header.
      BackendOptions options;
      options.filename = combine_path(image.root().filename(), backing);
      options.format = args.backing_format.value_or("");
      options.flags = src;
      options.flags.read_only = true;
      options.flags.force_share = args.image.force_share;
      Result<std::unique_ptr<BlockBackend>> opened =
          run_sync(loop, open_task(&loop, std::move(options)));
      if (!opened) {
        img_error("Could not open new backing file '" + backing + "': " + opened.error().message());
        return 1;
      }
      new_backing = std::move(*opened);
    }
    RebaseOptions options;
    options.new_backing = new_backing.get();
    options.progress = [&progress](float delta) { progress.add(delta); };
    Status s = run_sync(loop, copy_task(&image, std::move(options)));
    if (!s) {
      img_error("Error while writing to COW image: " + s.error().errno_text());
      close_new_backing();
      return 1;
    }
  }
  close_new_backing();
  progress.set(100);
  if (!backing.empty() && !args.backing_format) {
    img_error("Could not change the backing file to '" + backing +
              "': backing format must be specified");
    return 1;
  }
  Status s = run_sync(loop, change_task(&image, backing, args.backing_format.value_or("")));
  if (!s) {
    img_error("Could not change the backing file to '" + backing + "': " + s.error().errno_text());
    return 1;
  }
  return 0;
}

}  // namespace

int run_rebase(int argc, char** argv) {
  RebaseArgs args;
  if (int r = parse_args(argc, argv, args); r >= 0) return r;
  ImgProgress progress(args.progress, 2.0f);
  progress.set(0);
  OpenFlags flags;
  if (!apply_cache_mode(args.cache, flags)) {
    img_error("Invalid cache option: " + args.cache);
    progress.end();
    return 1;
  }
  OpenFlags src;
  src.read_only = true;
  if (!apply_source_cache(args.image, src)) {
    progress.end();
    return 1;
  }
  Result<std::unique_ptr<EventLoop>> loop = EventLoop::create();
  if (!loop) {
    img_error(loop.error().message());
    return 1;
  }
  // -u: the old backing file is not opened (it may be gone).
  Options extra = Options::object();
  if (args.unsafe && has_backing_option(**loop, args)) extra["backing"] = nullptr;
  Result<std::unique_ptr<BlockBackend>> opened =
      open_image(**loop, args.filename, args.image, flags, OpenMessage::kQemuImg, extra);
  if (!opened) {
    progress.end();
    return 1;
  }
  std::unique_ptr<BlockBackend> image = std::move(*opened);
  if (image->probed_raw()) warn_probed_raw(args.filename);
  int status = rebase(**loop, *image, args, src, progress);
  Status closed = run_sync(**loop, close_task(image.get()));
  if (!closed && status == 0) {
    img_error(closed.error().message());
    status = 1;
  }
  progress.end();
  return status;
}

}  // namespace qblock::tools
