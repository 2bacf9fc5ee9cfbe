// `qblock resize`: qemu-img resize's command line, messages and exit codes (qemu-compat.md
// §3.9) for raw and qcow2. The work is BlockNode::truncate on the opened image's root; the
// qcow2 driver's do_truncate grows and (with --shrink) shrinks.
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "qblock/block_backend.h"
#include "qblock/commands.h"
#include "qblock/event_loop.h"
#include "qblock/image_options.h"
#include "qblock/img_common.h"
#include "qblock/options.h"

namespace qblock::tools {

namespace {

struct ResizeArgs {
  ImageArgs image;
  std::string filename;
  std::string size_text;
  PreallocMode prealloc = PreallocMode::kOff;
  bool quiet = false;
  bool shrink = false;
};

Task<Status> truncate_image(BlockBackend* backend, uint64_t size, PreallocMode mode) {
  co_return co_await backend->truncate(size, mode);
}

// True if `text` (qemu_strtosz syntax) denotes a value that fits in 64 bits. parse_size()
// refuses everything from 2^63 on with ERANGE; 7.2 accepts sizes below 2^64 and only then
// finds the result negative ("New image size must be positive").
bool below_2_64(const std::string& text) {
  char* end = nullptr;
  long double v = std::strtold(text.c_str(), &end);
  if (end == text.c_str()) return false;
  int shift = 0;
  switch (*end) {
    case 'k':
    case 'K': shift = 10; break;
    case 'm':
    case 'M': shift = 20; break;
    case 'g':
    case 'G': shift = 30; break;
    case 't':
    case 'T': shift = 40; break;
    case 'p':
    case 'P': shift = 50; break;
    case 'e':
    case 'E': shift = 60; break;
    default: break;
  }
  return v * static_cast<long double>(uint64_t{1} << shift) < 18446744073709551616.0L;
}

void size_syntax_error() {
  img_error(
      "Parameter 'size' expects a non-negative number below 2^64\n"
      "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
      "and exabytes, respectively.");
}

// Returns -1 to continue, else the exit status. qemu-img takes the size off the end of argv
// before option parsing, so that "-1M" is not read as an option.
int parse_args(int argc, char** argv, ResizeArgs& args) {
  if (argc < 3) {
    img_usage_error("Not enough arguments");
    return 1;
  }
  args.size_text = argv[--argc];
  OptionParser parser;
  parser.help([] {
    std::printf(
        "qblock resize [--object objectdef] [--image-opts] [-f fmt] "
        "[--preallocation=prealloc] [-q] [--shrink] filename [+ | -]size\n");
  });
  add_image_options(parser, ImageOption::kFormat | ImageOption::kImageOpts | ImageOption::kObject,
                    &args.image);
  parser.with_value("preallocation", [&args](const char* value) {
    Result<PreallocMode> m = parse_prealloc_mode(value);
    if (!m) {
      img_error(std::string("Invalid preallocation mode '") + value + "'");
      return 1;
    }
    args.prealloc = *m;
    return kContinue;
  });
  parser.flag('q', &args.quiet).flag("shrink", &args.shrink);
  if (int r = parser.parse(argc, argv); r != kContinue) return r;
  if (parser.operands().size() != 1) {
    img_usage_error("Expecting image file name and size");
    return 1;
  }
  args.filename = parser.operands()[0];
  return -1;
}

// Prints qemu-img's message on failure.
Result<std::unique_ptr<BlockBackend>> open_writable(EventLoop& loop, const ResizeArgs& args) {
  Result<std::unique_ptr<BlockBackend>> opened =
      open_image(loop, args.filename, args.image, OpenFlags{});
  if (opened && (*opened)->probed_raw()) warn_probed_raw(args.filename);
  if (opened && args.prealloc != PreallocMode::kOff && (*opened)->root().driver_name() == "qcow2") {
    // A preallocating resize lays the file out as qemu-img's does (which has no preallocate
    // filter) only without the filter that would allocate ahead of the end of the file.
    Status closed = run_sync(loop, close_image(opened->get()));
    if (!closed) {
      img_error(closed.error().message());
      return fail(closed.error());
    }
    Options extra = Options::object();
    extra["prealloc"] = "off";
    opened = open_image(loop, args.filename, args.image, OpenFlags{}, OpenMessage::kQemuImg, extra);
  }
  return opened;
}

}  // namespace

int run_resize(int argc, char** argv) {
  ResizeArgs args;
  if (int r = parse_args(argc, argv, args); r >= 0) return r;

  // "+N" grows by N, "-N" shrinks by N; the rest is a size in qemu_strtosz syntax.
  int relative = 0;
  std::string text = args.size_text;
  if (!text.empty() && (text[0] == '+' || text[0] == '-')) {
    relative = text[0] == '+' ? 1 : -1;
    text.erase(0, 1);
  }
  uint64_t n = 0;
  Result<uint64_t> parsed = parse_size(text);
  if (parsed) {
    n = *parsed;
  } else if (parsed.error().errnum() == ERANGE && below_2_64(text)) {
    n = uint64_t{1} << 63;  // any value in [2^63, 2^64) ends as a negative size below
  } else if (parsed.error().errnum() == ERANGE) {
    img_error("Value '" + text + "' is out of range for parameter 'size'");
    return 1;
  } else {
    size_syntax_error();
    return 1;
  }
  Result<std::unique_ptr<EventLoop>> loop = EventLoop::create();
  if (!loop) {
    img_error(loop.error().message());
    return 1;
  }
  Result<std::unique_ptr<BlockBackend>> opened = open_writable(**loop, args);
  if (!opened) return 1;
  std::unique_ptr<BlockBackend> backend = std::move(*opened);

  // qemu-img computes in int64_t: a result at or beyond 2^63 is negative, hence refused.
  const int64_t current = static_cast<int64_t>(backend->length());
  int64_t total = static_cast<int64_t>(n);
  if (relative > 0) total = static_cast<int64_t>(uint64_t(current) + n);
  if (relative < 0) total = static_cast<int64_t>(uint64_t(current) - n);
  int status = 0;
  if (total <= 0) {
    img_error("New image size must be positive");
    status = 1;
  } else if (total <= current && args.prealloc != PreallocMode::kOff) {
    img_error("Preallocation can only be used for growing images");
    status = 1;
  } else if (total < current && !args.shrink) {
    img_error("Use the --shrink option to perform a shrink operation.");
    img_error(
        "warning: Shrinking an image will delete all data beyond the shrunken image's end. "
        "Before performing such an operation, make sure there is no important data there.");
    status = 1;
  } else {
    Status s = run_sync(**loop, truncate_image(backend.get(), uint64_t(total), args.prealloc));
    if (!s) {
      img_error(s.error().message());
      status = 1;
    } else if (!args.quiet) {
      std::printf("Image resized.\n");
    }
  }
  return close_image_at_exit(**loop, *backend, status);
}

}  // namespace qblock::tools
