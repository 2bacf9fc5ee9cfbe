// Helpers shared by the qemu-img-style subcommands (`qblock create`, `qblock info`):
// qemu-img's human-readable sizes, its error prefix and its `-o` option lists
// (qemu-compat.md §1.1, §1.3(b), §3).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "qblock/block_backend.h"
#include "qblock/block_node.h"
#include "qblock/error.h"
#include "qblock/event_loop.h"
#include "qblock/image.h"
#include "qblock/messages.h"
#include "qblock/task.h"

namespace qblock::qcow2 {
struct Snapshot;
}

namespace qblock::tools {

// qemu-img's size_to_str (qemu-compat.md §1.3(b)): "0 B", "1.5 KiB", "0.977 MiB".
std::string size_to_str(uint64_t value);

// Prints "qemu-img: <text>\n" on stderr (after flushing stdout, so merged output keeps order).
void img_error(std::string_view text);

// While alive, the library's warnings (MessageLevel::kWarning) print as qemu-img's
// warn_report lines ("qemu-img: warning: TEXT"); the previous sink comes back afterwards.
class ImgWarnings {
 public:
  ImgWarnings();
  ~ImgWarnings();
  ImgWarnings(const ImgWarnings&) = delete;
  ImgWarnings& operator=(const ImgWarnings&) = delete;

 private:
  MessageSink previous_;
};

// Prints the getopt failure line and "Try 'qemu-img --help' for more information".
void img_usage_error(std::string_view text);

// A `-o` list "k=v,k2,k3=a,,b" as ordered (key, value) pairs; a bare key gets the value "on"
// (QemuOpts' implied boolean). ",," is a literal comma.
std::vector<std::pair<std::string, std::string>> parse_option_list(std::string_view text);

// QEMU's path_combine: `name` relative to the directory of `base` (a backing file name is
// relative to the image that names it); absolute names are returned as they are.
std::string combine_path(const std::string& base, const std::string& name);

// True for formats that can have a backing file (an extent they leave unallocated reads
// from the backing node).
bool supports_backing(const BlockNode& node);
// qemu-img 7.2's test for a qcow2 image made with preallocation=metadata (see img_common.cc).
bool metadata_preallocated(const BlockNode& node);
// For such images, refines `st` of a data extent with what the file says about the host range
// (holes read as zero), as qemu-img map and compare do; leaves other nodes' answers alone.
// Best effort: errors leave `st` as is. Serves as ChainStatusQuery::refine.
Task<Status> resolve_preallocated(BlockNode* node, BlockStatus* st);

// qemu-img's snapshot table (qemu-compat.md §3.12): the header line and one row per snapshot,
// as `info` and `snapshot -l` print it.
void print_snapshot_table(const std::vector<SnapshotInfo>& snapshots);

// Closes `backend`: its caches written back, its preallocated tail trimmed.
Task<Status> close_image(BlockBackend* backend);

// Closes `backend` at the end of a subcommand: a failure is printed as qemu-img prints it and
// turns a successful exit `status` into 1. Returns the exit status.
int close_image_at_exit(EventLoop& loop, BlockBackend& backend, int status);

}  // namespace qblock::tools
