// `qblock commit`: qemu-img commit's command line, messages and exit codes (qemu-compat.md
// §3.10). The copy is commit_image (qblock/jobs.h); this file parses, finds -b in the backing
// chain and prints.
#include <limits.h>
#include <stdlib.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "qblock/block_backend.h"
#include "qblock/commands.h"
#include "qblock/event_loop.h"
#include "qblock/image_options.h"
#include "qblock/img_common.h"
#include "qblock/img_progress.h"
#include "qblock/jobs.h"
#include "qblock/options.h"

namespace qblock::tools {

namespace {

struct CommitArgs {
  ImageArgs image;
  std::string filename;
  std::string cache = "writeback";  // BDRV_DEFAULT_CACHE
  std::optional<std::string> base;
  uint64_t rate_limit = 0;
  bool drop = false;
  bool progress = false;
  bool quiet = false;
};

// Returns -1 to continue, else the exit status.
int parse_args(int argc, char** argv, CommitArgs& args) {
  OptionParser parser;
  parser.help([] {
    std::printf(
        "qblock commit [--object objectdef] [--image-opts] [-q] [-f fmt] [-t cache] [-b base] "
        "[-r rate_limit] [-d] [-p] filename\n");
  });
  add_image_options(parser, ImageOption::kFormat | ImageOption::kImageOpts | ImageOption::kObject,
                    &args.image);
  parser.value('t', &args.cache).flag('d', &args.drop).flag('p', &args.progress);
  parser.flag('q', &args.quiet);
  parser.with_value('b', [&args](const char* value) {
    args.base = value;
    // qemu-img: -b implies -d (emptying the top would hide the images in between).
    args.drop = true;
    return kContinue;
  });
  parser.with_value('r', [&args](const char* value) {
    Result<uint64_t> rate = parse_size(value);
    if (!rate || *rate > uint64_t{INT64_MAX}) {
      img_error("Invalid rate limit specified. You may use k, M, G, T, P or E suffixes for");
      img_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
      return 1;
    }
    args.rate_limit = *rate;
    return kContinue;
  });
  if (int r = parser.parse(argc, argv); r != kContinue) return r;
  if (parser.operands().size() != 1) {
    img_usage_error("Expecting one image file name");
    return 1;
  }
  args.filename = parser.operands()[0];
  if (args.quiet) args.progress = false;
  return -1;
}

std::string real_path(const std::string& name) {
  char buf[PATH_MAX];
  if (::realpath(name.c_str(), buf) == nullptr) return {};
  return buf;
}

// The depth of `name` in the backing chain below `top` (1: its backing file), found as
// qemu-img finds it: `name` is taken relative to the directory of each image whose backing
// file is compared; 0 if it is not there.
uint32_t find_in_chain(BlockNode& top, const std::string& name) {
  uint32_t depth = 0;
  for (BlockNode* layer = &top; BlockNode* backing = layer->child(ChildRole::kBacking);
       layer = backing) {
    ++depth;
    const std::string wanted = real_path(combine_path(layer->filename(), name));
    if (!wanted.empty() && wanted == real_path(backing->filename())) return depth;
  }
  return 0;
}

Task<Status> commit_task(EventLoop* loop, BlockBackend* top, CommitOptions options) {
  co_return co_await commit_image(*loop, *top, std::move(options));
}

Task<Status> close_task(BlockBackend* backend) { co_return co_await backend->close(); }

}  // namespace

int run_commit(int argc, char** argv) {
  CommitArgs args;
  if (int r = parse_args(argc, argv, args); r >= 0) return r;
  OpenFlags flags;
  flags.discard = DiscardMode::kUnmap;  // BDRV_O_UNMAP
  if (!apply_cache_mode(args.cache, flags)) {
    img_error("Invalid cache option: " + args.cache);
    return 1;
  }
  Result<std::unique_ptr<EventLoop>> loop = EventLoop::create();
  if (!loop) {
    img_error(loop.error().message());
    return 1;
  }
  Result<std::unique_ptr<BlockBackend>> opened =
      open_image(**loop, args.filename, args.image, flags);
  if (!opened) return 1;
  std::unique_ptr<BlockBackend> top = std::move(*opened);
  if (top->probed_raw()) warn_probed_raw(args.filename);
  auto finish = [&](int status) {
    Status closed = run_sync(**loop, close_task(top.get()));
    if (!closed && status == 0) {
      img_error(closed.error().message());
      status = 1;
    }
    return status;
  };

  if (!top->root().child(ChildRole::kBacking)) {
    img_error("Image does not have a backing file");
    return finish(1);
  }
  CommitOptions options;
  if (args.base) {
    options.base_depth = find_in_chain(top->root(), *args.base);
    if (options.base_depth == 0) {
      img_error("Did not find '" + *args.base + "' in the backing chain of '" + args.filename +
                "'");
      return finish(1);
    }
  }
  options.rate_limit = args.rate_limit;
  options.empty_top = !args.drop;
  ImgProgress progress(args.progress, 1.0f);
  progress.set(0);
  options.progress = [&progress](uint64_t done, uint64_t total) {
    progress.set(total ? static_cast<float>(done) * 100.0f / static_cast<float>(total) : 100.0f);
  };
  Status s = run_sync(**loop, commit_task(loop->get(), top.get(), std::move(options)));
  if (s) progress.set(100);
  progress.end();
  if (!s) {
    img_error(s.error().message());
    return finish(1);
  }
  int status = finish(0);
  if (status == 0 && !args.quiet) std::printf("Image committed.\n");
  return status;
}

}  // namespace qblock::tools
