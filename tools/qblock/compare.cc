// `qblock compare`: qemu-img compare (qemu-compat.md §3.6). Walks both images by block status
// across their backing chains, skips extents both read as zeros, reads and compares the rest in
// chunks of at most 2 MiB, and checks that the part beyond the shorter image reads as zeros.
#include <sys/stat.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qblock/block_backend.h"
#include "qblock/chain_status.h"
#include "qblock/commands.h"
#include "qblock/event_loop.h"
#include "qblock/image_options.h"
#include "qblock/img_common.h"
#include "qblock/options.h"

namespace qblock::tools {

namespace {

// Exit statuses (qemu-compat.md §3.6).
constexpr int kIdentical = 0;
constexpr int kDifferent = 1;
constexpr int kOpenError = 2;
constexpr int kStatusError = 3;
constexpr int kReadError = 4;

// qemu-img reads at most this much per image and step.
constexpr uint64_t kChunkBytes = 2 << 20;
// Mismatch offsets are reported at 512-byte sector granularity (qemu-compat.md §3.6).
constexpr uint64_t kSectorBytes = 512;

struct CompareArgs {
  ImageArgs image1;                    // the shared options; the format is the first image's
  std::optional<std::string> format2;  // -F
  std::string filename1;
  std::string filename2;
  bool strict = false;
  bool quiet = false;
  bool progress = false;
};

// Progress lines as qemu-img prints them (qemu-compat.md §1.5): a new line when the value
// moved by more than 2 points, or reached 0 or 100. Single precision, as 7.2 accumulates.
class Progress {
 public:
  explicit Progress(bool enabled) : enabled_(enabled) {}
  void add(float delta) {
    if (!enabled_) return;
    current_ += delta;
    if (current_ > last_ + 2.0f || current_ < last_ - 2.0f || current_ == 100.0f ||
        current_ == 0.0f) {
      last_ = current_;
      std::printf("    (%3.2f/100%%)\r", static_cast<double>(current_));
      std::fflush(stdout);
    }
  }
  void end() {
    if (enabled_) std::printf("\n");
  }

 private:
  bool enabled_;
  float current_ = 0;
  float last_ = 0;
};

// Status of a prefix of [offset, offset + bytes) across the backing chain of `top`: flags of
// the first layer that defines it; kStatusZero alone when no layer does.
Task<Result<BlockStatus>> image_status(BlockNode* top, uint64_t offset, uint64_t bytes) {
  ChainStatusQuery query;
  query.refine = resolve_preallocated;
  Task<Result<ChainStatus>> ask = chain_status(top, offset, bytes, query);
  Result<ChainStatus> chain = co_await std::move(ask);
  if (!chain) co_return tl::unexpected(chain.error());
  BlockStatus st = chain->status;
  // 7.2 marks an extent that reaches the end of the image, and -s compares that flag too: an
  // extent ending early on one side is a mismatch even if both read as zeros.
  if (offset + st.bytes == top->length()) st.flags |= kStatusEof;
  co_return st;
}

struct Image {
  std::unique_ptr<BlockBackend> backend;
  std::string name;
};

Task<Result<BlockStatus>> status_task(BlockBackend* backend, uint64_t offset, uint64_t bytes) {
  co_return co_await image_status(&backend->root(), offset, bytes);
}

Task<Status> read_task(BlockBackend* backend, uint64_t offset, IoVec qiov) {
  co_return co_await backend->read(offset, std::move(qiov));
}

// The comparison; the caller owns the images and the loop.
class Comparison {
 public:
  Comparison(EventLoop& loop, const CompareArgs& args, Image& a, Image& b)
      : loop_(loop), args_(args), a_(a), b_(b), progress_(args.progress && !args.quiet) {}

  int run() {
    const uint64_t size1 = a_.backend->length();
    const uint64_t size2 = b_.backend->length();
    const uint64_t common = std::min(size1, size2);
    const uint64_t total = std::max(size1, size2);
    buf1_.resize(kChunkBytes);
    buf2_.resize(kChunkBytes);
    progress_.add(0);
    int r = compare_common(size1, size2, common, total);
    if (r < 0 && size1 != size2) r = check_tail(size1 > size2 ? a_ : b_, common, total);
    if (r < 0) {
      message("Images are identical.\n");
      r = kIdentical;
    }
    progress_.end();
    return r;
  }

 private:
  // Each step returns -1 to go on, else the exit status.
  int compare_common(uint64_t size1, uint64_t size2, uint64_t common, uint64_t total) {
    if (args_.strict && size1 != size2) {
      message("Strict mode: Image size mismatch!\n");
      return kDifferent;
    }
    uint64_t offset = 0;
    while (offset < common) {
      Result<BlockStatus> s1 =
          run_sync(loop_, status_task(a_.backend.get(), offset, size1 - offset));
      if (!s1) return status_failed(a_);
      Result<BlockStatus> s2 =
          run_sync(loop_, status_task(b_.backend.get(), offset, size2 - offset));
      if (!s2) return status_failed(b_);
      uint64_t chunk = std::min(s1->bytes, s2->bytes);
      const bool allocated1 = (s1->flags & kStatusAllocated) != 0;
      const bool allocated2 = (s2->flags & kStatusAllocated) != 0;
      constexpr uint32_t kCompared =
          kStatusData | kStatusZero | kStatusOffsetValid | kStatusAllocated | kStatusEof;
      if (args_.strict && (s1->flags & kCompared) != (s2->flags & kCompared)) {
        message("Strict mode: Offset " + std::to_string(offset) + " block status mismatch!\n");
        return kDifferent;
      }
      if ((s1->flags & kStatusZero) && (s2->flags & kStatusZero)) {
        // Both read as zeros.
      } else if (allocated1 == allocated2) {
        if (allocated1) {
          chunk = std::min(chunk, kChunkBytes);
          if (int r = read(a_, offset, chunk, buf1_); r >= 0) return r;
          if (int r = read(b_, offset, chunk, buf2_); r >= 0) return r;
          if (std::memcmp(buf1_.data(), buf2_.data(), chunk) != 0) {
            uint64_t i = 0;
            while (buf1_[i] == buf2_[i]) ++i;
            mismatch(offset + i / kSectorBytes * kSectorBytes);
            return kDifferent;
          }
        }
      } else {
        // Only one side has something here: it must read as zeros.
        chunk = std::min(chunk, kChunkBytes);
        if (int r = check_zero(allocated1 ? a_ : b_, offset, chunk); r >= 0) return r;
      }
      offset += chunk;
      progress_.add(static_cast<float>(chunk) / static_cast<float>(total) * 100);
    }
    return -1;
  }

  // The area of the longer image beyond the shorter one must read as zeros.
  int check_tail(Image& over, uint64_t offset, uint64_t total) {
    message("Warning: Image size mismatch!\n");
    while (offset < total) {
      Result<BlockStatus> st =
          run_sync(loop_, status_task(over.backend.get(), offset, total - offset));
      if (!st) return status_failed(over);
      uint64_t chunk = st->bytes;
      if ((st->flags & kStatusAllocated) && !(st->flags & kStatusZero)) {
        chunk = std::min(chunk, kChunkBytes);
        if (int r = check_zero(over, offset, chunk); r >= 0) return r;
      }
      offset += chunk;
      progress_.add(static_cast<float>(chunk) / static_cast<float>(total) * 100);
    }
    return -1;
  }

  int check_zero(Image& image, uint64_t offset, uint64_t bytes) {
    if (int r = read(image, offset, bytes, buf1_); r >= 0) return r;
    for (uint64_t i = 0; i < bytes; ++i) {
      if (buf1_[i] != 0) {
        mismatch(offset + i / kSectorBytes * kSectorBytes);
        return kDifferent;
      }
    }
    return -1;
  }

  int read(Image& image, uint64_t offset, uint64_t bytes, std::vector<uint8_t>& buf) {
    Status s = run_sync(loop_, read_task(image.backend.get(), offset, IoVec(buf.data(), bytes)));
    if (s) return -1;
    img_error("Error while reading offset " + std::to_string(offset) + " of " + image.name + ": " +
              std::strerror(s.error().errnum()));
    return kReadError;
  }

  int status_failed(const Image& image) {
    img_error("Sector allocation test failed for " + image.name);
    return kStatusError;
  }

  void mismatch(uint64_t offset) {
    message("Content mismatch at offset " + std::to_string(offset) + "!\n");
  }

  void message(const std::string& text) {
    if (!args_.quiet) std::printf("%s", text.c_str());
  }

  EventLoop& loop_;
  const CompareArgs& args_;
  Image& a_;
  Image& b_;
  Progress progress_;
  std::vector<uint8_t> buf1_;
  std::vector<uint8_t> buf2_;
};

// Returns -1 to continue, else the exit status.
int parse_args(int argc, char** argv, CompareArgs& args) {
  OptionParser parser;
  parser.help([] {
    std::printf(
        "qblock compare [--image-opts] [-f fmt] [-F fmt] [-T src_cache] [-p] [-q] [-s] [-U] "
        "filename1 filename2\n");
  });
  // -f is the first image's format, -F the second's. qemu-img compare exits 2 for a bad
  // --object, as for its other errors.
  args.image1.object_error_exit = 2;
  add_image_options(parser,
                    ImageOption::kFormat | ImageOption::kImageOpts | ImageOption::kObject |
                        ImageOption::kForceShare | ImageOption::kSourceCache,
                    &args.image1);
  parser.with_value('F', [&args](const char* value) {
    args.format2 = value;
    return kContinue;
  });
  parser.flag('p', &args.progress).flag('q', &args.quiet).flag('s', &args.strict);
  if (int r = parser.parse(argc, argv); r != kContinue) return r;
  if (parser.operands().size() != 2) {
    img_usage_error("Expecting two image file names");
    return 1;
  }
  args.filename1 = parser.operands()[0];
  args.filename2 = parser.operands()[1];
  // -T is validated as qemu-img does; the cache mode does not change the result.
  OpenFlags cache;
  if (!apply_source_cache(args.image1, cache)) return kOpenError;
  return -1;
}

// Opens one image read-only with `format` (-f or -F); prints qemu-img's message on failure.
Result<std::unique_ptr<BlockBackend>> open_one(EventLoop& loop, const CompareArgs& args,
                                               const std::string& filename,
                                               const std::optional<std::string>& format) {
  OpenFlags flags;
  flags.read_only = true;
  flags.force_share = args.image1.force_share;
  ImageArgs image = args.image1;
  image.format = format;
  return open_image(loop, filename, image, flags);
}

}  // namespace

int run_compare(int argc, char** argv) {
  CompareArgs args;
  if (int r = parse_args(argc, argv, args); r >= 0) return r;
  Result<std::unique_ptr<EventLoop>> loop = EventLoop::create();
  if (!loop) {
    img_error(loop.error().message());
    return kOpenError;
  }
  Image a{nullptr, args.filename1};
  Image b{nullptr, args.filename2};
  Result<std::unique_ptr<BlockBackend>> opened = open_one(**loop, args, a.name, args.image1.format);
  if (!opened) return kOpenError;
  a.backend = std::move(*opened);
  opened = open_one(**loop, args, b.name, args.format2);
  if (!opened) {
    Status closed = run_sync(**loop, close_image(a.backend.get()));
    (void)closed;
    return kOpenError;
  }
  b.backend = std::move(*opened);
  int r = Comparison(**loop, args, a, b).run();
  Status closed1 = run_sync(**loop, close_image(a.backend.get()));
  Status closed2 = run_sync(**loop, close_image(b.backend.get()));
  (void)closed1;
  (void)closed2;
  return r;
}

}  // namespace qblock::tools
