// `qblock bitmap`: qemu-img bitmap's command line, messages and exit codes. The actions run
// in command-line order on the image opened read-write (qblock/dirty_bitmaps.h); the first
// failing one stops the rest, and what the earlier ones did is stored when the image closes.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qblock/block_backend.h"
#include "qblock/commands.h"
#include "qblock/dirty_bitmaps.h"
#include "qblock/event_loop.h"
#include "qblock/image_options.h"
#include "qblock/img_common.h"
#include "qblock/options.h"

namespace qblock::tools {

namespace {

enum class Action : unsigned char { kAdd, kRemove, kClear, kEnable, kDisable, kMerge };

struct BitmapAction {
  Action action;
  std::string source;  // --merge's source bitmap
};

struct BitmapArgs {
  ImageArgs image;
  std::vector<BitmapAction> actions;
  std::optional<std::string> source_file;    // -b
  std::optional<std::string> source_format;  // -F
  uint64_t granularity = 0;                  // -g; 0: the default
  bool add = false;
  bool merge = false;
  std::string filename;
  std::string bitmap;
};

const char* action_name(Action a) {
  switch (a) {
    case Action::kAdd: return "add";
    case Action::kRemove: return "remove";
    case Action::kClear: return "clear";
    case Action::kEnable: return "enable";
    case Action::kDisable: return "disable";
    case Action::kMerge: return "merge";
  }
  return "";
}

// Returns kContinue to go on, else the exit status.
int parse_args(int argc, char** argv, BitmapArgs& args) {
  OptionParser parser;
  parser.help([] {
    std::printf(
        "qblock bitmap (--merge SOURCE | --add | --remove | --clear | --enable | --disable)... "
        "[-b source_file [-F source_fmt]] [-g granularity] [--object objectdef] "
        "[--image-opts | -f fmt] filename bitmap\n");
  });
  add_image_options(parser, ImageOption::kFormat | ImageOption::kImageOpts | ImageOption::kObject,
                    &args.image);
  auto simple = [&args](Action a) {
    return [&args, a](const char*) {
      if (a == Action::kAdd) args.add = true;
      args.actions.push_back({a, {}});
      return kContinue;
    };
  };
  parser.without_value("add", simple(Action::kAdd))
      .without_value("remove", simple(Action::kRemove))
      .without_value("clear", simple(Action::kClear))
      .without_value("enable", simple(Action::kEnable))
      .without_value("disable", simple(Action::kDisable))
      .with_value("merge",
                  [&args](const char* value) {
                    args.merge = true;
                    args.actions.push_back({Action::kMerge, value});
                    return kContinue;
                  })
      .with_value('b',
                  [&args](const char* value) {
                    args.source_file = value;
                    return kContinue;
                  })
      .with_value('F',
                  [&args](const char* value) {
                    args.source_format = value;
                    return kContinue;
                  })
      .with_value('g', [&args](const char* value) {
        Result<uint64_t> g = parse_size(value);
        if (!g) {
          img_error("Invalid granularity specified. You may use k, M, G, T, P or E suffixes for");
          img_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
          return 1;
        }
        args.granularity = *g;
        return kContinue;
      });
  if (int r = parser.parse(argc, argv); r != kContinue) return r;
  if (args.actions.empty()) {
    img_error("Need at least one of --add, --remove, --clear, --enable, --disable, or --merge");
    return 1;
  }
  if (args.granularity && !args.add) {
    img_error("granularity only supported with --add");
    return 1;
  }
  if (args.source_format && !args.source_file) {
    img_error("-F only supported with -b");
    return 1;
  }
  if (args.source_file && !args.merge) {
    img_error("Merge bitmap source file only supported with --merge");
    return 1;
  }
  if (parser.operands().size() != 2) {
    img_error("Expecting filename and bitmap name");
    return 1;
  }
  args.filename = parser.operands()[0];
  args.bitmap = parser.operands()[1];
  return kContinue;
}

Task<Status> remove_bitmap(BlockNode* node, std::string name) {
  co_return co_await remove_dirty_bitmap(*node, std::move(name));
}

Status run_action(EventLoop& loop, BlockNode& node, BlockNode& source_node, const BitmapArgs& args,
                  const BitmapAction& a) {
  switch (a.action) {
    case Action::kAdd: {
      std::optional<uint64_t> g;
      if (args.granularity) g = args.granularity;
      return add_dirty_bitmap(node, args.bitmap, g, BitmapPersistence::kPersistent,
                              BitmapRecording::kEnabled);
    }
    case Action::kRemove: return run_sync(loop, remove_bitmap(&node, args.bitmap));
    case Action::kClear: return clear_dirty_bitmap(node, args.bitmap);
    case Action::kEnable: return enable_dirty_bitmap(node, args.bitmap);
    case Action::kDisable: return disable_dirty_bitmap(node, args.bitmap);
    case Action::kMerge: return merge_dirty_bitmap(node, args.bitmap, source_node, a.source);
  }
  return ok();
}

}  // namespace

int run_bitmap(int argc, char** argv) {
  BitmapArgs args;
  if (int r = parse_args(argc, argv, args); r != kContinue) return r;
  Result<std::unique_ptr<EventLoop>> loop = EventLoop::create();
  if (!loop) {
    img_error(loop.error().message());
    return 1;
  }
  Result<std::unique_ptr<BlockBackend>> opened =
      open_image(**loop, args.filename, args.image, OpenFlags{});
  if (!opened) return 1;
  std::unique_ptr<BlockBackend> backend = std::move(*opened);
  std::unique_ptr<BlockBackend> source;
  if (args.source_file) {
    ImageArgs source_args;
    source_args.format = args.source_format;
    OpenFlags ro;
    ro.read_only = true;
    Result<std::unique_ptr<BlockBackend>> s =
        open_image(**loop, *args.source_file, source_args, ro);
    if (!s) {
      (void)run_sync(**loop, close_image(backend.get()));
      return 1;
    }
    source = std::move(*s);
  }
  BlockNode& node = backend->root();
  BlockNode& source_node = source ? source->root() : node;
  int status = 0;
  for (const BitmapAction& a : args.actions) {
    Status s = run_action(**loop, node, source_node, args, a);
    if (!s) {
      img_error(std::string("Operation ") + action_name(a.action) + " on bitmap " + args.bitmap +
                " failed: " + s.error().message());
      status = 1;
      break;
    }
  }
  if (source) (void)run_sync(**loop, close_image(source.get()));
  return close_image_at_exit(**loop, *backend, status);
}

}  // namespace qblock::tools
