// `qblock snapshot`: qemu-img snapshot's command line, list format, messages and exit codes
// (qemu-compat.md §3.12) over the public snapshot API (qblock/snapshot.h). -f is accepted as
// well, which 7.2's snapshot lacks.
#include "qblock/snapshot.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "qblock/block_backend.h"
#include "qblock/commands.h"
#include "qblock/event_loop.h"
#include "qblock/image_options.h"
#include "qblock/img_common.h"

namespace qblock::tools {

namespace {

enum class Action : unsigned char { kNone, kList, kApply, kCreate, kDelete };

struct SnapshotArgs {
  ImageArgs image;
  std::string filename;
  Action action = Action::kNone;
  std::string name;  // of -a, -c, -d
  bool quiet = false;
};

// Returns -1 to continue, else the exit status.
int parse_args(int argc, char** argv, SnapshotArgs& args) {
  OptionParser parser;
  parser.help([] {
    std::printf(
        "qblock snapshot [--object objectdef] [--image-opts] [-f fmt] [-U] [-q] "
        "[-l | -a snapshot | -c snapshot | -d snapshot] filename\n");
  });
  add_image_options(parser,
                    ImageOption::kFormat | ImageOption::kImageOpts | ImageOption::kObject |
                        ImageOption::kForceShare,
                    &args.image);
  // One action at most, as qemu-img: a second one (even the same) is refused.
  auto action = [&args](Action a) {
    return [&args, a](const char* value) {
      if (args.action != Action::kNone) {
        img_usage_error("Cannot mix '-l', '-a', '-c', '-d'");
        return 1;
      }
      args.action = a;
      if (value) args.name = value;
      return kContinue;
    };
  };
  parser.without_value('l', action(Action::kList))
      .with_value('a', action(Action::kApply))
      .with_value('c', action(Action::kCreate))
      .with_value('d', action(Action::kDelete))
      .flag('q', &args.quiet);
  if (int r = parser.parse(argc, argv); r != kContinue) return r;
  if (parser.operands().size() != 1) {
    img_usage_error("Expecting one image file name");
    return 1;
  }
  args.filename = parser.operands()[0];
  return -1;
}

Task<Result<std::vector<SnapshotInfo>>> list(BlockBackend* backend) {
  co_return co_await list_snapshots(backend->root());
}

Task<Status> act(BlockBackend* backend, Action action, std::string name) {
  switch (action) {
    case Action::kCreate: co_return co_await create_snapshot(backend->root(), std::move(name));
    case Action::kApply: co_return co_await apply_snapshot(backend->root(), std::move(name));
    case Action::kDelete: co_return co_await delete_snapshot(backend->root(), std::move(name));
    case Action::kNone:
    case Action::kList: break;
  }
  co_return ok();
}

// qemu-img's message for a failed action, in 7.2's words for each.
std::string failure_message(Action action, const std::string& name, const Error& e) {
  switch (action) {
    case Action::kCreate:
      return "Could not create snapshot '" + name + "': " + std::to_string(-e.errnum()) + " (" +
             std::strerror(e.errnum()) + ")";
    case Action::kApply:
      return "Could not apply snapshot '" + name + "': " +
             (e.errnum() == ENOTSUP ? std::string("Block driver does not support snapshots")
              : e.errnum() == EBUSY
                  ? e.message()  // "Device has active dirty bitmaps"
                  : "Failed to load snapshot: " + std::string(std::strerror(e.errnum())));
    case Action::kDelete:
      // 7.2 says "snapshot not found" for a format without snapshots as well.
      return "Could not delete snapshot '" + name + "': " +
             (e.errnum() == ENOENT || e.errnum() == ENOTSUP ? std::string("snapshot not found")
                                                            : e.message());
    case Action::kNone:
    case Action::kList: break;
  }
  return e.message();
}

}  // namespace

int run_snapshot(int argc, char** argv) {
  SnapshotArgs args;
  if (int r = parse_args(argc, argv, args); r >= 0) return r;
  Result<std::unique_ptr<EventLoop>> loop = EventLoop::create();
  if (!loop) {
    img_error(loop.error().message());
    return 1;
  }
  // -l opens read-only; no action at all lists too, but after a read-write open, as 7.2.
  OpenFlags flags;
  flags.read_only = args.action == Action::kList;
  flags.force_share = args.image.force_share;
  if (flags.force_share && !flags.read_only) {
    img_error("Could not open '" + args.filename +
              "': force-share=on can only be used with read-only images");
    return 1;
  }
  Result<std::unique_ptr<BlockBackend>> opened =
      open_image(**loop, args.filename, args.image, flags);
  if (!opened) return 1;
  std::unique_ptr<BlockBackend> backend = std::move(*opened);
  if (!flags.read_only && backend->probed_raw()) warn_probed_raw(args.filename);

  int status = 0;
  if (args.action == Action::kNone || args.action == Action::kList) {
    // Nothing at all for an image without snapshots, or a format without them.
    Result<std::vector<SnapshotInfo>> snapshots = run_sync(**loop, list(backend.get()));
    if (snapshots && !snapshots->empty()) {
      std::printf("Snapshot list:\n");
      print_snapshot_table(*snapshots);
    }
  } else {
    Status s = run_sync(**loop, act(backend.get(), args.action, args.name));
    if (!s) {
      // 7.2 opens a format without snapshots a second time to try its file: the probing
      // warning comes again.
      if (args.action == Action::kApply && s.error().errnum() == ENOTSUP && backend->probed_raw()) {
        warn_probed_raw(args.filename);
      }
      img_error(failure_message(args.action, args.name, s.error()));
      status = 1;
    }
  }
  return close_image_at_exit(**loop, *backend, status);
}

}  // namespace qblock::tools
