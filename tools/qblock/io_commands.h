// IoSession: the state of one `qblock io` process (the open image, the event loop, outstanding
// AIO) and the qemu-io command language run against it (qemu-compat.md §2.3-§2.8).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "qblock/block_backend.h"
#include "qblock/error.h"
#include "qblock/event_loop.h"

namespace qblock::tools {

// What to open: the invocation options or those of the `open` command (§2.1, §2.7 open).
struct OpenRequest {
  std::string path;        // positional file
  bool has_path = false;   // false: no path (`open -o ...` alone, --image-opts)
  std::string image_opts;  // --image-opts string (used when non-empty)
  std::string options;     // `open -o` options, comma-joined
  std::string format;      // -f
  std::string cache;       // -t / -n; empty: writeback
  std::string aio;         // -i / -k; empty: io_uring
  std::string discard;     // -d; empty: unmap (qemu-io's default)
  bool read_only = false;
  bool snapshot = false;
  bool copy_on_read = false;
  bool force_share = false;
};

bool valid_cache_mode(std::string_view mode);
bool valid_aio_mode(std::string_view mode);
bool valid_discard_mode(std::string_view mode);

// -s without an overlay format: copies image file `path` sparsely to a new temporary file
// and returns its name; the caller deletes it. Errors: open/copy failures.
Result<std::string> make_snapshot_copy(const std::string& path);

class IoSession {
 public:
  // Creates the event loop. `misalign`: offset I/O buffers by 16 bytes (-m).
  static Result<std::unique_ptr<IoSession>> create(bool misalign);
  ~IoSession();

  // Opens an image, printing qemu-io's messages (probe warning, "can't open ..."). Returns
  // false on failure.
  bool open_image(const OpenRequest& request);
  // Runs one command line; a failure sets failed().
  void run_line(std::string_view line);
  // Drains outstanding AIO and closes the image.
  void finish();

  bool quit_requested() const { return quit_; }
  bool failed() const { return failed_; }

  // Implementation state, public for the command functions in io_commands.cc.
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<BlockBackend> blk_;
  OpenRequest current_;        // how blk_ was opened (for reopen)
  std::string snapshot_path_;  // -s: the temporary copy blk_ works on, deleted at close
  bool misalign_ = false;
  int outstanding_ = 0;  // AIO requests in flight
  bool quit_ = false;
  bool failed_ = false;

  void drain();
  void close_image();
};

}  // namespace qblock::tools
