// Shared qemu-img-style helpers (see img_common.h).
#include "qblock/img_common.h"

#include <sys/stat.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <ctime>

#include "qblock/options.h"

namespace qblock::tools {

std::string size_to_str(uint64_t value) {
  static const char* const kSuffixes[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  // The unit keeps the number below 1000 (not 1024), then "%0.3g" (qemu-compat.md §1.3(b)).
  int exponent = 0;
  std::frexp(static_cast<double>(value) / (1000.0 / 1024.0), &exponent);
  int i = (exponent - 1) / 10;
  if (i < 0) i = 0;
  if (i > 6) i = 6;
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%0.3g %s", static_cast<double>(value) / std::ldexp(1.0, 10 * i),
                kSuffixes[i]);
  return buf;
}

void img_error(std::string_view text) {
  std::fflush(stdout);
  std::fprintf(stderr, "qemu-img: %.*s\n", static_cast<int>(text.size()), text.data());
}

ImgWarnings::ImgWarnings()
    : previous_(set_message_sink([](MessageLevel level, std::string_view text) {
        if (level == MessageLevel::kWarning) {
          img_error("warning: " + std::string(text));
        } else {
          print_message(level, text);
        }
      })) {}

ImgWarnings::~ImgWarnings() { set_message_sink(std::move(previous_)); }

void img_usage_error(std::string_view text) {
  img_error(text);
  std::fprintf(stderr, "Try 'qemu-img --help' for more information\n");
}

std::vector<std::pair<std::string, std::string>> parse_option_list(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  std::string item;
  std::vector<std::string> items;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == ',') {
      if (i + 1 < text.size() && text[i + 1] == ',') {
        item += ',';
        ++i;
        continue;
      }
      items.push_back(std::move(item));
      item.clear();
      continue;
    }
    item += text[i];
  }
  items.push_back(std::move(item));
  for (std::string& it : items) {
    if (it.empty()) continue;
    std::size_t eq = it.find('=');
    if (eq == std::string::npos) {
      out.emplace_back(it, "on");
    } else {
      out.emplace_back(it.substr(0, eq), it.substr(eq + 1));
    }
  }
  return out;
}

std::string combine_path(const std::string& base, const std::string& name) {
  if (name.empty() || name[0] == '/') return name;
  std::size_t slash = base.rfind('/');
  if (slash == std::string::npos) return name;
  return base.substr(0, slash + 1) + name;
}

// Formats that can have a backing file: an extent they leave unallocated reads from the
// backing node, or as zeros when there is none or it ends before the extent.
bool supports_backing(const BlockNode& node) { return node.driver_name() == "qcow2"; }

// qcow2 images created with preallocation=metadata have data clusters that are holes in the
// file; 7.2 asks the file about those and reports them as zero. It detects such images by
// their allocation: fewer clusters on disk than 9/10 of those the image claims. The public API
// does not expose refcounts, so the file length stands in for the refcounted clusters.
bool metadata_preallocated(const BlockNode& node) {
  const BlockNode* file = node.child(ChildRole::kFile);
  const uint64_t cluster_size = node.info().cluster_size;
  struct stat st;
  if (!file || cluster_size == 0 || ::stat(file->filename().c_str(), &st) != 0) return false;
  const uint64_t claimed = (file->length() + cluster_size - 1) / cluster_size;
  const uint64_t on_disk = uint64_t(st.st_blocks) * 512 / cluster_size;
  // Both margins are needed: small images whose last cluster is partly written have a
  // couple of clusters more claimed than on disk (observed with qemu-img 7.2).
  return claimed >= std::max(on_disk * 10 / 9, on_disk + 2);
}

// Adds kStatusZero to data that `node` maps to a hole of its file, and shortens `st` to the
// hole or data run there (see metadata_preallocated).
Task<Status> resolve_preallocated(BlockNode* node, BlockStatus* st) {
  const uint32_t kNeeded = kStatusData | kStatusOffsetValid;
  if (!supports_backing(*node) || (st->flags & kNeeded) != kNeeded || (st->flags & kStatusZero) ||
      !st->file || st->file == node || !metadata_preallocated(*node)) {
    co_return ok();
  }
  Task<Result<BlockStatus>> query =
      st->file->block_status(st->host_offset, st->bytes, WantZero::kYes);
  Result<BlockStatus> inner = co_await std::move(query);
  if (!inner) co_return ok();  // as 7.2: the answer about the file is only a refinement
  if (inner->flags & kStatusEof) {
    st->flags |= kStatusZero;
  } else {
    st->bytes = std::min(st->bytes, inner->bytes);
    st->flags |= inner->flags & kStatusZero;
  }
  co_return ok();
}

void print_snapshot_table(const std::vector<SnapshotInfo>& snapshots) {
  std::printf("%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT");
  for (const SnapshotInfo& snap : snapshots) {
    char date[32];
    const time_t when = snap.date_sec;
    struct tm local;
    localtime_r(&when, &local);
    std::strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", &local);
    const uint64_t secs = snap.vm_clock_nsec / 1000000000;
    char clock[48];
    std::snprintf(clock, sizeof clock, "%02" PRIu64 ":%02" PRIu64 ":%02" PRIu64 ".%03" PRIu64,
                  secs / 3600, secs / 60 % 60, secs % 60, snap.vm_clock_nsec / 1000000 % 1000);
    const std::string icount = snap.icount ? std::to_string(*snap.icount) : "";
    std::printf("%-9s %-16s %8s%20s%13s%11s\n", snap.id.c_str(), snap.name.c_str(),
                size_to_str(snap.vm_state_size).c_str(), date, clock, icount.c_str());
  }
}

Task<Status> close_image(BlockBackend* backend) { co_return co_await backend->close(); }

int close_image_at_exit(EventLoop& loop, BlockBackend& backend, int status) {
  Status closed = run_sync(loop, close_image(&backend));
  if (!closed && status == 0) {
    img_error(closed.error().message());
    status = 1;
  }
  return status;
}

}  // namespace qblock::tools
