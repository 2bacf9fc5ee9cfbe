// `qblock convert`: qemu-img convert (qemu-compat.md §3.5). Opens one or more source images
// (concatenated), creates a qcow2 or raw target with create_qcow2_image / create_raw_image (or
// opens an existing one with -n) and copies the content: the sources are walked by block status,
// extents that read as zeros are skipped on a target known to read as zeros (else written as
// efficient zeroes), data is copied in chunks of at most 2 MiB by -m concurrent coroutines,
// and runs of zeros inside data of at least -S bytes are left unwritten so the target stays
// sparse. Writes are issued in ascending order unless -W. -B/-F (or -o backing_file) leave
// what the source's top layer does not allocate to the target's backing file; -l reads the
// source's internal snapshot; -C copies data without zero detection (plain reads and writes:
// the target's contents and allocation are what qemu-img's copy offloading gives); --salvage
// turns sectors that cannot be read into zeros with a warning each. With -c the copy goes by whole
// target clusters: every cluster that holds data is read, skipped when all zero, and written
// with RequestFlag::kWriteCompressed (the qcow2 driver compresses the clusters of a request on
// the loop's worker threads and stores a cluster that does not shrink uncompressed).
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qblock/block_backend.h"
#include "qblock/commands.h"
#include "qblock/convert_common.h"
#include "qblock/dirty_bitmaps.h"
#include "qblock/event_loop.h"
#include "qblock/image_options.h"
#include "qblock/img_common.h"
#include "qblock/iovec.h"
#include "qblock/options.h"
#include "qblock/snapshot_option.h"
#include "qblock/snapshot_param.h"
#include "qblock/sync.h"

namespace qblock::tools {

namespace {

// Largest data chunk one coroutine reads and writes at a time (QEMU's convert buffer).
constexpr uint64_t kChunkBytes = 2 << 20;
// -S: multiples of 512 up to 16 MiB; 0 disables zero detection.
constexpr uint64_t kMaxSparse = 16 << 20;
constexpr int kMaxCoroutines = 16;
// --salvage retries a failed read in units of this size.
constexpr uint64_t kSectorBytes = 512;

struct ConvertArgs {
  std::vector<std::string> sources;
  std::string target;
  ImageArgs image;  // the source images' shared options (-f, --image-opts, -U, -T, --object)
  std::string out_format = "raw";
  std::string options;
  std::string backing;
  std::string backing_fmt;
  std::string cache = "unsafe";
  bool compress = false;
  bool progress = false;
  bool quiet = false;
  bool no_create = false;
  bool target_is_zero = false;
  bool target_image_opts = false;
  bool out_of_order = false;
  bool copy_offload = false;  // -C
  bool salvage = false;
  bool bitmaps = false;              // --bitmaps: copy the source's persistent bitmaps
  bool skip_broken_bitmaps = false;  // --skip-broken-bitmaps: leave inconsistent ones out
  bool out_format_given = false;     // -O (clashes with --target-image-opts)
  uint64_t sparse = 4096;
  bool sparse_given = false;  // -S (clashes with -C)
  int coroutines = 8;
  SnapshotParam snapshot;  // -l
};

// qemu-img's progress lines (qemu-compat.md §1.5): printed when the value moved by more than
// one point, or is 0 or 100. Single precision, as 7.2 accumulates it.
class Progress {
 public:
  explicit Progress(bool enabled) : enabled_(enabled) {}
  void add(float delta) {
    if (!enabled_) return;
    current_ += delta;
    if (current_ > last_ + 1.0f || current_ < last_ - 1.0f || current_ == 100.0f ||
        current_ == 0.0f) {
      print();
    }
  }
  void finish() {
    if (!enabled_) return;
    current_ = 100.0f;
    print();
  }
  void end() {
    if (enabled_) std::printf("\n");
  }

 private:
  void print() {
    last_ = current_;
    std::printf("    (%3.2f/100%%)\r", static_cast<double>(current_));
    std::fflush(stdout);
  }
  bool enabled_;
  float current_ = 0;
  float last_ = 0;
};

// Returns -1 to continue, else the exit status.
int parse_args(int argc, char** argv, ConvertArgs& args) {
  OptionParser parser;
  parser.help([] {
    std::printf(
        "qblock convert [--image-opts] [--target-image-opts] [--target-is-zero] [-U] [-C] [-c] "
        "[-p] [-q] [-n] [-f fmt] [-t cache] [-T src_cache] [-O output_fmt] "
        "[-B backing_file [-F backing_fmt]] [-o options] [-l snapshot_param] [-S sparse_size] "
        "[-m num_coroutines] [-W] [--salvage] filename [filename2 [...]] output_filename\n");
  });
  add_image_options(parser,
                    ImageOption::kFormat | ImageOption::kImageOpts | ImageOption::kObject |
                        ImageOption::kForceShare | ImageOption::kSourceCache,
                    &args.image);
  parser.with_value('O', [&args](const char* value) {
    args.out_format = value;
    args.out_format_given = true;
    return kContinue;
  });
  parser.value('B', &args.backing).value('F', &args.backing_fmt);
  parser.flag('c', &args.compress);
  parser.with_value('o', [&args](const char* value) {
    if (!args.options.empty()) args.options += ",";
    args.options += value;
    return kContinue;
  });
  parser.with_value('l', [&args](const char* value) {
    return parse_snapshot_option(value, args.snapshot) ? kContinue : 1;
  });
  parser.with_value('S', [&args](const char* value) {
    Result<uint64_t> s = parse_size(value);
    if (!s) {
      img_error(
          "Invalid buffer size for sparse output specified. You may use k, M, G, T, P or E "
          "suffixes for");
      img_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
      return 1;
    }
    if (*s % 512 || *s > kMaxSparse) {
      img_error(
          "Invalid buffer size for sparse output specified. Valid sizes are multiples of "
          "512 up to 16777216. Select 0 to disable sparse detection (fully allocates "
          "output).");
      return 1;
    }
    args.sparse = *s;
    args.sparse_given = true;
    return kContinue;
  });
  parser.flag('p', &args.progress).value('t', &args.cache).flag('q', &args.quiet);
  parser.flag('n', &args.no_create);
  parser.with_value('m', [&args](const char* value) {
    char* end = nullptr;
    errno = 0;
    long n = std::strtol(value, &end, 10);
    if (!*value || *end || errno || n < 1 || n > kMaxCoroutines) {
      img_error("Invalid number of coroutines. Allowed number of coroutines is between 1 and 16");
      return 1;
    }
    args.coroutines = static_cast<int>(n);
    return kContinue;
  });
  parser.flag('W', &args.out_of_order);
  parser.flag("target-image-opts", &args.target_image_opts);
  parser.flag("target-is-zero", &args.target_is_zero);
  parser.flag("salvage", &args.salvage);
  parser.flag("bitmaps", &args.bitmaps);
  parser.flag("skip-broken-bitmaps", &args.skip_broken_bitmaps);
  parser.flag('C', &args.copy_offload);
  // -r (rate limit) has no effect here.
  parser.ignored('r', true);
  if (int r = parser.parse(argc, argv); r != kContinue) return r;
  if (args.quiet) args.progress = false;
  if (args.copy_offload && args.compress) {
    img_error("Cannot enable copy offloading when -c is used");
    return 1;
  }
  if (args.copy_offload && args.sparse_given) {
    img_error("Cannot enable copy offloading when -S is used");
    return 1;
  }
  if (args.copy_offload && args.salvage) {
    img_error("Cannot use copy offloading in salvaging mode");
    return 1;
  }
  if (args.target_image_opts && !args.no_create) {
    img_error("--target-image-opts requires use of -n flag");
    return 1;
  }
  if (args.target_is_zero && !args.no_create) {
    img_error("--target-is-zero requires use of -n flag");
    return 1;
  }
  if (args.no_create && !args.options.empty()) {
    img_error("-o has no effect when skipping image creation");
    return 1;
  }
  const std::vector<std::string>& operands = parser.operands();
  if (operands.size() < 2) {
    img_error("Must specify image file name");
    return 1;
  }
  args.sources.assign(operands.begin(), operands.end() - 1);
  args.target = operands.back();
  return -1;
}

// How a chunk of the target is produced.
enum class ChunkKind {
  kData,     // read from the source and write (minus long zero runs)
  kZero,     // reads as zeros: nothing to do on a zeroed target, else write zeroes
  kBacking,  // left to the target's backing file
};

// Chunk::source of a chunk read by its target offset, across the sources (compressed mode).
constexpr std::size_t kAnySource = static_cast<std::size_t>(-1);

struct Chunk {
  uint64_t offset;  // in the target
  uint64_t bytes;
  std::size_t source;      // index into the sources, or kAnySource
  uint64_t source_offset;  // offset in that source
  ChunkKind kind;
};

struct Source {
  std::unique_ptr<BlockBackend> backend;
  std::string name;
};

// A qcow2 v3 node keeps persistent bitmaps (qcow2-format.md §14); nothing else does.
bool supports_persistent_bitmaps(const BlockNode& node) {
  if (node.driver_name() != "qcow2") return false;
  for (const auto& [k, v] : node.info().format_specific) {
    if (k == "compat") return v != "0.10";
  }
  return false;
}

// qemu-img 7.2's checks of --bitmaps before the target is made: one source that keeps
// bitmaps, none of them inconsistent unless --skip-broken-bitmaps. Prints the error.
bool check_source_bitmaps(const ConvertArgs& args, const std::vector<Source>& sources) {
  if (sources.size() > 1) {
    img_error("Copying bitmaps only possible with single source");
    return false;
  }
  BlockNode& source = sources[0].backend->root();
  if (!supports_persistent_bitmaps(source)) {
    img_error("Source lacks bitmap support");
    return false;
  }
  for (const DirtyBitmapInfo& b : dirty_bitmaps(source)) {
    if (b.persistent && b.inconsistent && !args.skip_broken_bitmaps) {
      img_error("Cannot copy inconsistent bitmap '" + b.name + "'");
      std::fprintf(stderr,
                   "Try --skip-broken-bitmaps, or use 'qemu-img bitmap --remove' to delete it\n");
      return false;
    }
  }
  return true;
}

// The source's persistent bitmaps onto the target, after the data (its writes must not
// dirty them): same names, granularities and enabled state, same dirty granules.
bool copy_bitmaps(const ConvertArgs& args, BlockNode& source, BlockNode& target) {
  (void)args;
  for (const DirtyBitmapInfo& b : dirty_bitmaps(source)) {
    if (!b.persistent) continue;
    if (b.inconsistent) {
      img_error("warning: Skipping inconsistent bitmap '" + b.name + "'");
      continue;
    }
    Status s =
        add_dirty_bitmap(target, b.name, b.granularity, BitmapPersistence::kPersistent,
                         b.recording ? BitmapRecording::kEnabled : BitmapRecording::kDisabled);
    if (s) s = merge_dirty_bitmap(target, b.name, source, b.name);
    if (!s) {
      img_error("Failed to populate bitmap " + b.name + ": " + s.error().message());
      return false;
    }
  }
  return true;
}

// The buffer compared with itself shifted by one byte: libc's memcmp does the scanning, fast
// in every build type (the zero test runs on the loop thread over every byte copied).
bool all_zero(const uint8_t* p, uint64_t n) {
  return n == 0 || (p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0);
}

// The copy: plans chunks from block status, then runs the coroutines. The caller owns the
// images and the loop.
class Converter {
 public:
  // `compress_cluster`: the target's cluster size with -c, else 0.
  Converter(EventLoop& loop, const ConvertArgs& args, std::vector<Source>& sources,
            BlockBackend& target, bool zero_init, bool target_has_backing, uint64_t align,
            uint64_t compress_cluster, Progress& progress)
      : args_(args),
        sources_(sources),
        target_(target),
        zero_init_(zero_init),
        target_has_backing_(target_has_backing),
        align_(align),
        compress_cluster_(compress_cluster),
        progress_(progress),
        turn_(loop) {}

  // Plans the chunks (first pass) and copies them. Prints qemu-img's error on failure.
  Task<Status> run() {
    Task<Status> plan_task = plan();
    Status planned = co_await std::move(plan_task);
    if (!planned) co_return planned;
    std::vector<Task<Status>> workers;
    for (int i = 0; i < args_.coroutines; ++i) workers.push_back(worker());
    Task<std::vector<Status>> all = when_all(std::move(workers));
    std::vector<Status> results = co_await std::move(all);
    for (const Status& s : results) {
      if (!s) co_return s;
    }
    co_return ok();
  }

 private:
  // Walks every source by block status and splits the result into chunks.
  Task<Status> plan() {
    uint64_t target_offset = 0;
    for (std::size_t i = 0; i < sources_.size(); ++i) {
      BlockNode* node = &sources_[i].backend->root();
      const uint64_t size = sources_[i].backend->length();
      // What a source without a backing file leaves unallocated reads as zeros: the target's
      // backing file must not show through there.
      const bool source_has_backing = node->child(ChildRole::kBacking) != nullptr;
      uint64_t offset = 0;
      while (offset < size) {
        Task<Result<BlockStatus>> query =
            source_status(node, offset, size - offset, target_has_backing_);
        Result<BlockStatus> st = co_await std::move(query);
        if (!st) {
          img_error("error while reading block status at offset " + std::to_string(offset) + ": " +
                    std::strerror(st.error().errnum()));
          co_return fail(st.error());
        }
        ChunkKind kind = ChunkKind::kData;
        if (st->flags & kStatusZero) {
          kind = ChunkKind::kZero;
        } else if (!(st->flags & kStatusData)) {
          // Only possible with target_has_backing: unallocated in the top layer.
          kind = source_has_backing ? ChunkKind::kBacking : ChunkKind::kZero;
        }
        // -S 0: the target is fully allocated, zeros are copied as data.
        if (args_.sparse == 0 && kind == ChunkKind::kZero) kind = ChunkKind::kData;
        add_extent(i, offset, st->bytes, target_offset + offset, kind);
        offset += st->bytes;
      }
      target_offset += size;
    }
    if (compress_cluster_) to_clusters(target_offset);
    co_return ok();
  }

  // Compressed mode: the plan in whole target clusters. A cluster lying entirely in one zero
  // or backing extent keeps that kind; every other cluster is data (compressed writes are of
  // whole clusters), read by its target offset across the sources.
  void to_clusters(uint64_t total) {
    const uint64_t cs = compress_cluster_;
    std::vector<Chunk> planned = std::move(chunks_);
    chunks_.clear();
    data_bytes_ = 0;
    std::size_t e = 0;
    uint64_t pos = 0;
    while (pos < total) {
      while (planned[e].offset + planned[e].bytes <= pos) ++e;
      const Chunk& ext = planned[e];
      const uint64_t ext_end = ext.offset + ext.bytes;
      const uint64_t cluster_end = std::min(total, pos + cs);
      ChunkKind kind = ChunkKind::kData;
      uint64_t end = cluster_end;
      if (ext_end >= cluster_end) {
        // The extent covers the whole cluster, and the clusters after it it fully covers.
        kind = ext.kind;
        end = ext_end == total ? total : std::max(cluster_end, ext_end / cs * cs);
      }
      if (kind == ChunkKind::kData) {
        // Merge with the data chunk before, up to the chunk size.
        while (pos < end) {
          if (!chunks_.empty() && chunks_.back().kind == ChunkKind::kData &&
              chunks_.back().offset + chunks_.back().bytes == pos &&
              chunks_.back().bytes < chunk_limit()) {
            const uint64_t take = std::min(end - pos, chunk_limit() - chunks_.back().bytes);
            chunks_.back().bytes += take;
            pos += take;
          } else {
            const uint64_t take = std::min(end - pos, chunk_limit());
            chunks_.push_back(Chunk{pos, take, kAnySource, pos, kind});
            pos += take;
          }
        }
        continue;
      }
      chunks_.push_back(Chunk{pos, end - pos, kAnySource, pos, kind});
      pos = end;
    }
    // The target's size is a multiple of 512: a last partial cluster is written up to it
    // (read_target pads with zeros).
    if (!chunks_.empty() && target_.length() > total && target_.length() - total < 512) {
      chunks_.back().bytes += target_.length() - total;
    }
    data_bytes_ = 0;
    for (const Chunk& c : chunks_) {
      if (c.kind == ChunkKind::kData) data_bytes_ += c.bytes;
    }
  }

  // Reads [offset, offset + bytes) of the concatenated sources into `buf`; beyond their end
  // it reads zeros.
  Task<Status> read_target(uint64_t offset, uint8_t* buf, uint64_t bytes) {
    uint64_t base = 0;
    for (Source& source : sources_) {
      const uint64_t size = source.backend->length();
      if (bytes > 0 && offset < base + size) {
        const uint64_t take = std::min(bytes, base + size - offset);
        Task<Status> read = source.backend->read(offset - base, IoVec(buf, take));
        Status s = co_await std::move(read);
        if (!s) {
          img_error("error while reading at byte " + std::to_string(offset - base) + ": " +
                    std::strerror(s.error().errnum()));
          co_return s;
        }
        offset += take;
        buf += take;
        bytes -= take;
      }
      base += size;
    }
    std::memset(buf, 0, bytes);
    co_return ok();
  }

  // Data extents become chunks of at most chunk_limit() bytes, one extent at a time as
  // qemu-img does (its progress advances per chunk); zero and backing extents are merged.
  void add_extent(std::size_t source, uint64_t source_offset, uint64_t bytes,
                  uint64_t target_offset, ChunkKind kind) {
    if (kind != ChunkKind::kData) {
      if (!chunks_.empty()) {
        Chunk& last = chunks_.back();
        if (last.kind == kind && last.source == source &&
            last.source_offset + last.bytes == source_offset) {
          last.bytes += bytes;
          return;
        }
      }
      chunks_.push_back(Chunk{target_offset, bytes, source, source_offset, kind});
      return;
    }
    data_bytes_ += bytes;
    while (bytes > 0) {
      const uint64_t take = std::min(bytes, chunk_limit());
      chunks_.push_back(Chunk{target_offset, take, source, source_offset, kind});
      source_offset += take;
      target_offset += take;
      bytes -= take;
    }
  }

  uint64_t chunk_limit() const { return std::max(kChunkBytes, align_); }

  // One copy coroutine: takes the next chunk, reads it, waits for its turn (unless -W) and
  // writes it.
  Task<Status> worker() {
    // Aligned for O_DIRECT (-t/-T none): an unaligned buffer would be bounced on every I/O.
    AlignedBuffer buf(chunk_limit());
    for (;;) {
      if (failed_ || next_chunk_ >= chunks_.size()) co_return ok();
      const std::size_t index = next_chunk_++;
      const Chunk chunk = chunks_[index];
      Status s = ok();
      if (chunk.kind == ChunkKind::kData) {
        // As 7.2: the progress moves when a chunk is taken, before it is read; with -c
        // qemu-img copies (and reports) one cluster at a time.
        if (data_bytes_ > 0) {
          const uint64_t step = compress_cluster_ ? compress_cluster_ : chunk.bytes;
          for (uint64_t done = 0; done < chunk.bytes; done += step) {
            const uint64_t n = std::min(step, chunk.bytes - done);
            progress_.add(static_cast<float>(n) / static_cast<float>(data_bytes_) * 100);
          }
        }
        Task<Status> read = read_chunk(chunk, buf.data());
        s = co_await std::move(read);
      }
      if (!args_.out_of_order) {
        while (!failed_ && next_write_ != index) co_await turn_.wait();
      }
      bool passed = false;  // the turn went to the next chunk before the write finished
      if (s && !failed_) {
        Task<Status> write = write_chunk(chunk, buf.data(), &passed);
        s = co_await std::move(write);
      }
      if (!s) failed_ = true;
      if (!passed) pass_turn();
      if (!s) co_return s;
    }
  }

  // Reads a data chunk. With --salvage a failed read is retried sector by sector, and each
  // sector that still fails reads as zeros, with qemu-img's warning.
  Task<Status> read_chunk(const Chunk& chunk, uint8_t* buf) {
    if (chunk.source == kAnySource) {
      Task<Status> read = read_target(chunk.offset, buf, chunk.bytes);
      co_return co_await std::move(read);
    }
    BlockBackend* source = sources_[chunk.source].backend.get();
    Task<Status> read = source->read(chunk.source_offset, IoVec(buf, chunk.bytes));
    Status s = co_await std::move(read);
    if (s) co_return s;
    if (!args_.salvage) {
      img_error("error while reading at byte " + std::to_string(chunk.source_offset) + ": " +
                std::strerror(s.error().errnum()));
      co_return s;
    }
    for (uint64_t pos = 0; pos < chunk.bytes;) {
      const uint64_t offset = chunk.source_offset + pos;
      const uint64_t n =
          std::min<uint64_t>(chunk.bytes - pos, kSectorBytes - offset % kSectorBytes);
      Task<Status> sector = source->read(offset, IoVec(buf + pos, n));
      Status r = co_await std::move(sector);
      if (!r) {
        // -q silences these warnings too, as in 7.2.
        if (!args_.quiet) {
          img_error("warning: error while reading offset " + std::to_string(offset) + ": " +
                    std::strerror(r.error().errnum()));
        }
        std::memset(buf + pos, 0, n);
      }
      pos += n;
    }
    co_return ok();
  }

  // Lets the next chunk (in order) write.
  void pass_turn() {
    ++next_write_;
    turn_.wake_all();
  }

  // The last of a chunk's concurrent compressed writes: once the others have entered the
  // target (and taken their place in its allocation order), the next chunk may start its own.
  Task<Status> pass_turn_early(bool* passed) {
    pass_turn();
    *passed = true;
    co_return ok();
  }

  // Writes a chunk. In-order compressed mode may pass the turn on early (setting *passed).
  Task<Status> write_chunk(Chunk chunk, const uint8_t* buf, bool* passed) {
    switch (chunk.kind) {
      case ChunkKind::kBacking: co_return ok();
      case ChunkKind::kZero: {
        if (zero_init_) co_return ok();
        Task<Status> zero = write_zeroes(chunk.offset, chunk.bytes);
        co_return co_await std::move(zero);
      }
      case ChunkKind::kData: break;
    }
    if (compress_cluster_) {
      Task<Status> write = write_compressed(chunk, buf, passed);
      co_return co_await std::move(write);
    }
    // -C copies data as it is, without looking for zeros.
    if (args_.sparse == 0 || args_.copy_offload || chunk.bytes < args_.sparse) {
      Task<Status> write = write_data(chunk.offset, buf, chunk.bytes);
      co_return co_await std::move(write);
    }
    // Zero detection in units aligned to `align_` (a target cluster or the sparse size):
    // runs of zero units of at least -S bytes are not written.
    uint64_t pos = 0;
    uint64_t pending = 0;  // start of data not yet written
    while (pos < chunk.bytes) {
      const uint64_t unit_end =
          std::min(chunk.bytes, ((chunk.offset + pos) / align_ + 1) * align_ - chunk.offset);
      if (!all_zero(buf + pos, unit_end - pos)) {
        pos = unit_end;
        continue;
      }
      // A run of zero units.
      uint64_t run_end = unit_end;
      while (run_end < chunk.bytes) {
        const uint64_t next_end =
            std::min(chunk.bytes, ((chunk.offset + run_end) / align_ + 1) * align_ - chunk.offset);
        if (!all_zero(buf + run_end, next_end - run_end)) break;
        run_end = next_end;
      }
      if (run_end - pos >= args_.sparse) {
        if (pos > pending) {
          Task<Status> write = write_data(chunk.offset + pending, buf + pending, pos - pending);
          Status s = co_await std::move(write);
          if (!s) co_return s;
        }
        if (!zero_init_) {
          Task<Status> zero = write_zeroes(chunk.offset + pos, run_end - pos);
          Status s = co_await std::move(zero);
          if (!s) co_return s;
        }
        pending = run_end;
      }
      pos = run_end;
    }
    if (chunk.bytes > pending) {
      Task<Status> write = write_data(chunk.offset + pending, buf + pending, chunk.bytes - pending);
      co_return co_await std::move(write);
    }
    co_return ok();
  }

  // Compressed mode: the chunk's clusters that are not all zero (all of them with -S 0) go
  // out compressed, a run of them in one request; all-zero clusters are left to a zeroed
  // target, else written as zeroes. In order (no -W) on a zeroed target the runs are issued
  // together and the turn passes on as soon as they have entered the target: the qcow2 driver
  // compresses them on its workers while the next chunks are read and compressed, and
  // allocates in the order the requests entered, which is guest order (qemu-img's layout).
  // The end of the run of compression clusters starting at `pos` (< `bytes`) of `buf` that are
  // all zero (with -S) or all not; `*zero` says which.
  uint64_t compressed_run_end(const uint8_t* buf, uint64_t pos, uint64_t bytes, bool* zero) const {
    const uint64_t cs = compress_cluster_;
    auto zero_at = [&](uint64_t at) {
      return args_.sparse != 0 && all_zero(buf + at, std::min(cs, bytes - at));
    };
    *zero = zero_at(pos);
    uint64_t end = pos + std::min(cs, bytes - pos);
    while (end < bytes && zero_at(end) == *zero) end += std::min(cs, bytes - end);
    return end;
  }

  Task<Status> write_compressed(Chunk chunk, const uint8_t* buf, bool* passed) {
    if (!args_.out_of_order && zero_init_) {
      std::vector<Task<Status>> writes;
      std::vector<uint64_t> offsets;
      for (uint64_t pos = 0; pos < chunk.bytes;) {
        bool zero = false;
        const uint64_t end = compressed_run_end(buf, pos, chunk.bytes, &zero);
        if (!zero) {
          writes.push_back(target_.write(chunk.offset + pos,
                                         IoVec(const_cast<uint8_t*>(buf + pos), end - pos),
                                         RequestFlag::kWriteCompressed));
          offsets.push_back(chunk.offset + pos);
        }
        pos = end;
      }
      writes.push_back(pass_turn_early(passed));
      Task<std::vector<Status>> all = when_all(std::move(writes));
      std::vector<Status> done = co_await std::move(all);
      for (std::size_t i = 0; i < offsets.size(); ++i) {
        if (!done[i]) {
          write_failed(offsets[i], done[i].error());
          co_return done[i];
        }
      }
      co_return ok();
    }
    uint64_t pos = 0;
    while (pos < chunk.bytes) {
      bool zero = false;
      const uint64_t end = compressed_run_end(buf, pos, chunk.bytes, &zero);
      Status s = ok();
      if (!zero) {
        Task<Status> write =
            target_.write(chunk.offset + pos, IoVec(const_cast<uint8_t*>(buf + pos), end - pos),
                          RequestFlag::kWriteCompressed);
        s = co_await std::move(write);
        if (!s) write_failed(chunk.offset + pos, s.error());
      } else if (!zero_init_) {
        Task<Status> zero_write = write_zeroes(chunk.offset + pos, end - pos);
        s = co_await std::move(zero_write);
      }
      if (!s) co_return s;
      pos = end;
    }
    co_return ok();
  }

  Task<Status> write_data(uint64_t offset, const uint8_t* buf, uint64_t bytes) {
    Task<Status> write = target_.write(offset, IoVec(const_cast<uint8_t*>(buf), bytes));
    Status s = co_await std::move(write);
    if (!s) write_failed(offset, s.error());
    co_return s;
  }

  Task<Status> write_zeroes(uint64_t offset, uint64_t bytes) {
    Task<Status> zero = target_.write_zeroes(offset, bytes, RequestFlag::kMayUnmap);
    Status s = co_await std::move(zero);
    if (!s) write_failed(offset, s.error());
    co_return s;
  }

  void write_failed(uint64_t offset, const Error& e) {
    img_error("error while writing at byte " + std::to_string(offset) + ": " +
              std::strerror(e.errnum()));
  }

  const ConvertArgs& args_;
  std::vector<Source>& sources_;
  BlockBackend& target_;
  const bool zero_init_;
  const bool target_has_backing_;
  const uint64_t align_;
  const uint64_t compress_cluster_;
  Progress& progress_;
  std::vector<Chunk> chunks_;
  uint64_t data_bytes_ = 0;  // bytes of data chunks: the 100% of the progress
  std::size_t next_chunk_ = 0;
  std::size_t next_write_ = 0;  // chunk whose turn it is to write (in-order mode)
  bool failed_ = false;
  WaitQueue turn_;
};

uint64_t pow2_floor(uint64_t v) {
  uint64_t p = 1;
  while (p * 2 <= v) p *= 2;
  return p;
}

// Creates the target image. Prints qemu-img's message and returns false on failure.
bool create_target(EventLoop& loop, const ConvertArgs& args, const TargetOptions& opts,
                   uint64_t size) {
  auto failed = [&](const Error& e) {
    img_error(args.target + ": error while converting " + args.out_format + ": " + e.message());
    return false;
  };
  if (args.out_format == "raw") {
    PreallocMode mode = PreallocMode::kOff;
    if (const std::string* v = opts.get("preallocation")) {
      Result<PreallocMode> m = parse_prealloc_mode(*v);
      if (!m) return failed(Error::with_message(EINVAL, "invalid parameter value: " + *v));
      mode = *m;
    }
    Status created = run_sync(loop, create_raw_image(loop, args.target, size, mode));
    return created ? true : failed(created.error());
  }
  if (args.out_format == "luks") {
    Result<LuksImageOptions> o = to_luks_create_options(opts);
    if (!o) return failed(o.error());
    o->filename = args.target;
    o->size = size;
    Status created = run_sync(loop, create_luks_image(loop, std::move(*o)));
    return created ? true : failed(created.error());
  }
  Result<Qcow2CreateOptions> o = to_create_options(opts);
  if (!o) return failed(o.error());
  if (o->backing_file.empty() && !o->backing_fmt.empty()) {
    return failed(
        Error::with_message(EINVAL, "Backing format cannot be used without backing file"));
  }
  o->filename = args.target;
  o->size = size;
  // The backing file is opened with the target, as qemu-img does after creating it.
  o->unsafe_backing = true;
  if (Status v = validate_qcow2_create_options(*o); !v) return failed(v.error());
  Status created = run_sync(loop, create_qcow2_image(loop, std::move(*o)));
  return created ? true : failed(created.error());
}

// Prints why -c cannot be done for a target of `format` (only qcow2 writes compressed
// clusters). Returns true when it refused.
bool refuse_compression(const std::string& format) {
  if (format == "qcow2") return false;
  img_error("Compression not supported for this file format");
  return true;
}

// Converts. `half_made` tells the caller that a failure from here on leaves a target of this
// run's making that cannot be opened or holds part of the copy.
int convert(EventLoop& loop, const ConvertArgs& args, std::vector<Source>& sources,
            std::unique_ptr<BlockBackend>& target, bool& half_made, Progress& progress) {
  OpenFlags src_flags;
  src_flags.read_only = true;
  src_flags.force_share = args.image.force_share;
  if (!apply_source_cache(args.image, src_flags)) return 1;
  uint64_t total = 0;
  for (const std::string& name : args.sources) {
    Result<std::unique_ptr<BlockBackend>> opened = open_image(loop, name, args.image, src_flags);
    if (!opened) return 1;
    total += (*opened)->length();
    sources.push_back(Source{std::move(*opened), name});
  }
  if (args.bitmaps && !check_source_bitmaps(args, sources)) return 1;
  if (args.snapshot.id || args.snapshot.name || args.snapshot.id_or_name) {
    if (sources.size() > 1) {
      img_error("No support for concatenating multiple snapshot");
      return 1;
    }
    if (!load_snapshot_option(loop, args.snapshot, sources[0].backend->root())) return 1;
  }
  // 7.2 reports this and then ends with exit status 0, the target untouched.
  if (args.no_create && args.target_is_zero && !args.backing.empty()) {
    img_error("Cannot use --target-is-zero when the destination image has a backing file");
    return 0;
  }
  // With -n the target is what it is: the checks that concern its creation are skipped.
  bool target_has_backing = !args.backing.empty();
  if (!args.no_create) {
    if (!is_target_format(args.out_format) && args.out_format != "luks") {
      img_error("Unknown file format '" + args.out_format + "'");
      return 1;
    }
    Result<TargetOptions> opts = check_target_options(args.out_format, args.options);
    if (!opts) {
      img_error(opts.error().message());
      return 1;
    }
    // -B and -F are set over -o's backing_file and backing_fmt, which a raw target lacks.
    if (!args.backing.empty() && args.out_format != "qcow2") {
      img_error("Backing file not supported for file format '" + args.out_format + "'");
      return 1;
    }
    if (args.compress && refuse_compression(args.out_format)) return 1;
    if (args.compress && (opts->get("encryption") || opts->get("encrypt.format"))) {
      img_error("Compression and encryption not supported at the same time");
      return 1;
    }
    if (args.compress) {
      const std::string* prealloc = opts->get("preallocation");
      if (prealloc && *prealloc != "off") {
        img_error("Compression and preallocation not supported at the same time");
        return 1;
      }
    }
    if (!args.backing_fmt.empty() && args.out_format != "qcow2") {
      img_error("Backing file format not supported for file format '" + args.out_format + "'");
      return 1;
    }
    if (!args.backing.empty()) opts->values.emplace_back("backing_file", args.backing);
    if (!args.backing_fmt.empty()) opts->values.emplace_back("backing_fmt", args.backing_fmt);
    const std::string* backing_file = opts->get("backing_file");
    const std::string* backing_fmt = opts->get("backing_fmt");
    if (backing_file && !backing_fmt) {
      img_error("Use of backing file requires explicit backing format");
      return 1;
    }
    if (backing_file) target_has_backing = true;
    if (!create_target(loop, args, *opts, total)) return 1;
  }
  // 7.2 looks at the target's cache mode only once the target exists.
  OpenFlags dst_flags;
  if (!apply_cache_mode(args.cache, dst_flags)) {
    img_error("Invalid cache option: " + args.cache);
    return 1;
  }

  // Up to here a created target is a valid empty image, which qemu-img leaves as well.
  half_made = !args.no_create;
  ImageArgs target_args;
  target_args.image_opts = args.target_image_opts;
  // --target-image-opts names the driver in the options; -O with it is refused on opening.
  if (!args.target_image_opts || args.out_format_given) target_args.format = args.out_format;
  std::string target_name = args.target;
  if (!args.no_create && args.out_format == "luks" && !args.target_image_opts) {
    // The new volume is opened with the secret it was created with, as qemu-img does.
    Result<TargetOptions> o = check_target_options("luks", args.options);
    const std::string* secret = o ? o->get("key-secret") : nullptr;
    std::string escaped;
    for (char c : args.target) escaped += c == ',' ? std::string(",,") : std::string(1, c);
    target_name = "driver=luks,key-secret=" + (secret ? *secret : std::string()) +
                  ",file.filename=" + escaped;
    target_args.image_opts = true;
    target_args.format.reset();
  }
  if (!args.no_create && args.out_format == "qcow2" && !args.target_image_opts) {
    // An encrypted target too (qcow2-format.md §9): opened with its -o key.
    Result<TargetOptions> o = check_target_options("qcow2", args.options);
    const std::string* secret = o ? o->get("encrypt.key-secret") : nullptr;
    if (secret) {
      std::string escaped;
      for (char c : args.target) escaped += c == ',' ? std::string(",,") : std::string(1, c);
      target_name = "driver=qcow2,encrypt.key-secret=" + *secret + ",file.filename=" + escaped;
      target_args.image_opts = true;
      target_args.format.reset();
    }
  }
  Result<std::unique_ptr<BlockBackend>> opened =
      open_image(loop, target_name, target_args, dst_flags);
  if (!opened) return 1;
  target = std::move(*opened);
  if (target->probed_raw()) warn_probed_raw(target->root().filename());
  if (args.bitmaps && !supports_persistent_bitmaps(target->root())) {
    img_error("Format driver '" + target->root().driver_name() + "' does not support bitmaps");
    return 1;
  }
  if (args.no_create && args.compress && refuse_compression(target->root().driver_name())) {
    return 1;
  }
  if (args.no_create && target->length() < total) {
    img_error("output file is smaller than input file");
    return 1;
  }
  // A fresh target without a backing file reads as zeros, so zeros need not be written.
  // Not a new luks volume: its unwritten payload decrypts to noise, not zeros.
  const bool fresh_zeros = !args.no_create && !target_has_backing && args.out_format != "luks";
  const bool zero_init = fresh_zeros || args.target_is_zero;
  // Zero detection granularity: whole target clusters for qcow2, else the sparse size.
  uint64_t align = std::max<uint64_t>(512, pow2_floor(args.sparse ? args.sparse : 512));
  const NodeInfo target_info = target->root().info();
  const uint64_t cluster = target_info.cluster_size;
  // With extended L2 entries (qcow2-format.md §7) a zero run left unwritten stays an
  // unallocated subcluster, as after qemu-img's 4 KiB zero detection: subcluster units.
  const bool extended_l2 =
      std::find(target_info.format_specific.begin(), target_info.format_specific.end(),
                std::pair<std::string, std::string>{"extended l2", "true"}) !=
      target_info.format_specific.end();
  const uint64_t unit = extended_l2 ? cluster / 32 : cluster;
  if (target->root().driver_name() == "qcow2" && unit > align) align = unit;

  const uint64_t compress_cluster = args.compress ? cluster : 0;
  Converter converter(loop, args, sources, *target, zero_init, target_has_backing, align,
                      compress_cluster, progress);
  Status copied = run_sync(loop, converter.run());
  if (!copied) return 1;
  progress.finish();
  if (args.bitmaps && !copy_bitmaps(args, sources[0].backend->root(), target->root())) return 1;
  Status closed = run_sync(loop, close_image(target.get()));
  target.reset();
  if (!closed) {
    img_error("error while closing " + args.target + ": " + closed.error().message());
    return 1;
  }
  return 0;
}

}  // namespace

int run_convert(int argc, char** argv) {
  ConvertArgs args;
  if (int r = parse_args(argc, argv, args); r >= 0) return r;
  Result<std::unique_ptr<EventLoop>> loop = EventLoop::create();
  if (!loop) {
    img_error(loop.error().message());
    return 1;
  }
  Progress progress(args.progress);
  progress.add(0);
  std::vector<Source> sources;
  std::unique_ptr<BlockBackend> target;
  bool half_made = false;
  int r = convert(**loop, args, sources, target, half_made, progress);
  if (target) {
    Status closed = run_sync(**loop, close_image(target.get()));
    (void)closed;
  }
  // A target this run made and could not complete would pass for a converted image: it goes.
  if (r != 0 && half_made) ::unlink(args.target.c_str());
  for (Source& s : sources) {
    Status closed = run_sync(**loop, close_image(s.backend.get()));
    (void)closed;
  }
  progress.end();
  return r;
}

}  // namespace qblock::tools
