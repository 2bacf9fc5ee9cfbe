// `qblock dd`: qemu-img dd (qemu-compat.md §3.13). Copies `count` blocks of `bs` bytes from
// the input image, starting `skip` blocks in, into a new output image of format -O (raw by
// default) made for the purpose, block by block, zeros included, with qemu-img 7.2's operand
// syntax, messages and size rule: `count` limits the input from its start, and `skip` is taken
// off that (count=3 skip=1 copies blocks 1 and 2), a skip past the end leaves an empty output.
#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qblock/block_backend.h"
#include "qblock/commands.h"
#include "qblock/convert_common.h"
#include "qblock/event_loop.h"
#include "qblock/image.h"
#include "qblock/image_options.h"
#include "qblock/img_common.h"
#include "qblock/iovec.h"
#include "qblock/options.h"
#include "qblock/sync.h"

namespace qblock::tools {

namespace {

// The most one read and one write move at a time: whole blocks, at least one.
constexpr uint64_t kMaxChunk = 1 << 20;
constexpr uint64_t kMaxBlockSize = 2147483647;  // INT_MAX, qemu-img's limit for bs

struct DdArgs {
  ImageArgs image;
  std::string out_format = "raw";
  uint64_t block_size = 512;
  std::optional<uint64_t> count;
  std::optional<uint64_t> skip;
  std::optional<std::string> input;
  std::optional<std::string> output;
};

// A bs/count/skip value as qemu-img's cvtnum reads it, with its two messages. Prints the
// message and returns nullopt when the text is not a size or lies outside [min, max].
std::optional<uint64_t> dd_number(std::string_view name, std::string_view text, uint64_t min,
                                  uint64_t max) {
  Result<uint64_t> value = parse_size(text);
  if (!value) {
    img_error("Invalid " + std::string(name) +
              " specified. You may use k, M, G, T, P or E suffixes for");
    img_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
    return std::nullopt;
  }
  if (*value < min || *value > max) {
    img_error("Invalid " + std::string(name) + " specified. Must be between " +
              std::to_string(min) + " and " + std::to_string(max) + ".");
    return std::nullopt;
  }
  return *value;
}

// One KEY=VALUE operand, in command-line order (the last of a kind wins). Returns false after
// printing the error.
bool parse_operand(const std::string& operand, DdArgs& args) {
  const std::size_t eq = operand.find('=');
  const std::string key = operand.substr(0, eq);
  if (eq == std::string::npos) {
    img_error("unrecognized operand " + key);
    return false;
  }
  const std::string value = operand.substr(eq + 1);
  if (key == "if") {
    args.input = value;
  } else if (key == "of") {
    args.output = value;
  } else if (key == "bs") {
    std::optional<uint64_t> bs = dd_number("bs", value, 1, kMaxBlockSize);
    if (!bs) return false;
    args.block_size = *bs;
  } else if (key == "count") {
    args.count = dd_number("count", value, 0, INT64_MAX);
    if (!args.count) return false;
  } else if (key == "skip") {
    args.skip = dd_number("skip", value, 0, INT64_MAX);
    if (!args.skip) return false;
  } else {
    img_error("unrecognized operand " + key);
    return false;
  }
  return true;
}

// Returns kContinue, else the exit status.
int parse_args(int argc, char** argv, DdArgs& args) {
  OptionParser parser;
  parser.help([] {
    std::printf(
        "qblock dd [--image-opts] [-U] [-f fmt] [-O output_fmt] [bs=block_size] "
        "[count=blocks] [skip=blocks] if=input of=output\n");
  });
  add_image_options(parser,
                    ImageOption::kFormat | ImageOption::kImageOpts | ImageOption::kObject |
                        ImageOption::kForceShare,
                    &args.image);
  parser.value('O', &args.out_format);
  if (int r = parser.parse(argc, argv); r != kContinue) return r;
  for (const std::string& operand : parser.operands()) {
    if (!parse_operand(operand, args)) return 1;
  }
  if (!args.input || !args.output) {
    img_error("Must specify both input and output files");
    return 1;
  }
  return kContinue;
}

// The output's size and where in the input it starts, by qemu-img's rule (see the top).
// Prints qemu-img's warning for a skip past the end, which leaves an empty output.
std::pair<uint64_t, uint64_t> output_extent(const DdArgs& args, uint64_t input_length) {
  const uint64_t bs = args.block_size;
  uint64_t size = input_length;
  if (args.count && *args.count <= INT64_MAX / bs && size > *args.count * bs) {
    size = *args.count * bs;
  }
  if (!args.skip) return {size, 0};
  if (*args.skip > INT64_MAX / bs || size < *args.skip * bs) {
    img_error(*args.input + ": cannot skip to specified offset");
    return {0, 0};
  }
  return {size - *args.skip * bs, *args.skip * bs};
}

Task<Status> create_output(EventLoop& loop, const DdArgs& args, uint64_t size) {
  if (args.out_format == "raw") {
    co_return co_await create_raw_image(loop, *args.output, size, PreallocMode::kOff);
  }
  Qcow2CreateOptions options;
  options.filename = *args.output;
  options.size = size;
  co_return co_await create_qcow2_image(loop, std::move(options));
}

// Copies [skip, skip + size) of the input to [0, size) of the output, whole blocks at a time.
// Prints qemu-img's message for a failed read or write.
Task<bool> copy_blocks(BlockBackend& input, BlockBackend& output, uint64_t block_size,
                       uint64_t skip, uint64_t size) {
  const uint64_t chunk = std::max(block_size, kMaxChunk / block_size * block_size);
  AlignedBuffer buffer(std::min(chunk, size));  // aligned for O_DIRECT: never bounced
  for (uint64_t pos = 0; pos < size;) {
    const uint64_t n = std::min(chunk, size - pos);
    Status read = co_await input.read(skip + pos, IoVec(buffer.data(), n));
    if (!read) {
      img_error("error while reading from input image file: " + read.error().message());
      co_return false;
    }
    Status written = co_await output.write(pos, IoVec(buffer.data(), n));
    if (!written) {
      img_error("error while writing to output image file: " + written.error().message());
      co_return false;
    }
    pos += n;
  }
  co_return true;
}

Task<Status> close_backend(BlockBackend* backend) { co_return co_await backend->close(); }

int dd(EventLoop& loop, const DdArgs& args, std::unique_ptr<BlockBackend>& input,
       std::unique_ptr<BlockBackend>& output) {
  OpenFlags in_flags;
  in_flags.read_only = true;
  in_flags.force_share = args.image.force_share;
  Result<std::unique_ptr<BlockBackend>> opened =
      open_image(loop, *args.input, args.image, in_flags);
  if (!opened) return 1;
  input = std::move(*opened);
  if (!is_target_format(args.out_format)) {
    img_error("Unknown file format");
    return 1;
  }
  const auto [size, skip] = output_extent(args, input->length());
  Status created = run_sync(loop, create_output(loop, args, size));
  if (!created) {
    img_error(*args.output + ": error while creating output image: " + created.error().message());
    return 1;
  }
  ImageArgs out_args;
  out_args.format = args.out_format;
  Result<std::unique_ptr<BlockBackend>> out = open_image(loop, *args.output, out_args, OpenFlags{});
  if (!out) return 1;
  output = std::move(*out);
  if (!run_sync(loop, copy_blocks(*input, *output, args.block_size, skip, size))) return 1;
  Status closed = run_sync(loop, close_backend(output.get()));
  output.reset();
  if (!closed) {
    img_error("error while closing " + *args.output + ": " + closed.error().message());
    return 1;
  }
  return 0;
}

}  // namespace

int run_dd(int argc, char** argv) {
  DdArgs args;
  if (int r = parse_args(argc, argv, args); r != kContinue) return r;
  Result<std::unique_ptr<EventLoop>> loop = EventLoop::create();
  if (!loop) {
    img_error(loop.error().message());
    return 1;
  }
  std::unique_ptr<BlockBackend> input;
  std::unique_ptr<BlockBackend> output;
  const int r = dd(**loop, args, input, output);
  for (std::unique_ptr<BlockBackend>* b : {&output, &input}) {
    if (*b) (void)run_sync(**loop, close_backend(b->get()));
  }
  return r;
}

}  // namespace qblock::tools
