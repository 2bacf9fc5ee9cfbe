// `qblock amend`: qemu-img amend's command line, option checks, messages, progress and exit
// codes (qemu-compat.md §3.8). The image is opened read-write; the changes themselves are
// amend_image() (qblock/image.h), which the qcow2 driver carries out.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "qblock/block_backend.h"
#include "qblock/commands.h"
#include "qblock/event_loop.h"
#include "qblock/image.h"
#include "qblock/image_options.h"
#include "qblock/img_common.h"
#include "qblock/options.h"

namespace qblock::tools {

namespace {

enum class OptType { kStr, kSize, kNum, kBool };
struct AmendOpt {
  const char* name;
  OptType type;
  const char* help;
};

// qcow2's amend options as `-o help` lists them (sorted by name, as QEMU prints them).
constexpr AmendOpt kAmendOpts[] = {
    {"backing_file", OptType::kStr, "File name of a base image"},
    {"backing_fmt", OptType::kStr, "Image format of the base image"},
    {"compat", OptType::kStr, "Compatibility level (v2 [0.10] or v3 [1.1])"},
    {"data_file", OptType::kStr, "File name of an external data file"},
    {"data_file_raw", OptType::kBool, "The external data file must stay valid as a raw image"},
    {"encrypt.iter-time", OptType::kNum, "Time to spend in PBKDF in milliseconds"},
    {"encrypt.keyslot", OptType::kNum, "Select a single keyslot to modify explicitly"},
    {"encrypt.new-secret", OptType::kStr,
     "New secret to set in the matching keyslots. Empty string to erase"},
    {"encrypt.old-secret", OptType::kStr, "Select all keyslots that match this password"},
    {"encrypt.state", OptType::kStr, "Select new state of affected keyslots (active/inactive)"},
    {"lazy_refcounts", OptType::kBool, "Postpone refcount updates"},
    {"refcount_bits", OptType::kNum, "Width of a reference count entry in bits"},
    {"size", OptType::kSize, "Virtual disk size"},
};

// qcow2 creation options that amend refuses with "This option is only supported for image
// creation".
constexpr const char* kCreateOnly[] = {
    "encryption",          "encrypt.format",    "encrypt.key-secret",     "encrypt.cipher-alg",
    "encrypt.cipher-mode", "encrypt.ivgen-alg", "encrypt.ivgen-hash-alg", "encrypt.hash-alg",
    "cluster_size",        "extended_l2",       "preallocation",          "compression_type",
};

const char* type_text(OptType t) {
  switch (t) {
    case OptType::kStr: return "str";
    case OptType::kSize: return "size";
    case OptType::kNum: return "num";
    case OptType::kBool: return "bool (on/off)";
  }
  return "";
}

void print_amend_help() {
  std::printf("Amend options for 'qcow2':\n");
  for (const AmendOpt& d : kAmendOpts) {
    std::string left = std::string(d.name) + "=<" + type_text(d.type) + ">";
    std::printf("  %-22s - %s\n", left.c_str(), d.help);
  }
}

std::optional<bool> parse_bool(std::string_view v) {
  if (v == "on" || v == "yes" || v == "true" || v == "y") return true;
  if (v == "off" || v == "no" || v == "false" || v == "n") return false;
  return std::nullopt;
}

std::optional<uint64_t> parse_number(const std::string& v) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long n = std::strtoull(v.c_str(), &end, 0);
  if (v.empty() || *end || errno) return std::nullopt;
  return n;
}

// QemuOpts' parse of the -o list against the amend options: the first unknown key or
// malformed value stops it. Prints the error and returns false.
bool parse_amend_options(const std::string& text, Qcow2AmendOptions& out) {
  for (const auto& [key, value] : parse_option_list(text)) {
    const AmendOpt* desc = nullptr;
    for (const AmendOpt& d : kAmendOpts) {
      if (key == d.name) desc = &d;
    }
    if (!desc) {
      std::string message = "Invalid parameter '" + key + "'";
      const std::string& unknown = key;  // clang 14 cannot capture a structured binding
      const bool create_only = std::any_of(std::begin(kCreateOnly), std::end(kCreateOnly),
                                           [&unknown](const char* n) { return unknown == n; });
      if (create_only) message += "\nThis option is only supported for image creation";
      img_error(message);
      return false;
    }
    const std::string name = desc->name;
    switch (desc->type) {
      case OptType::kBool: {
        std::optional<bool> b = parse_bool(value);
        if (!b) {
          img_error("Parameter '" + name + "' expects 'on' or 'off'");
          return false;
        }
        if (name == "lazy_refcounts") out.lazy_refcounts = *b;
        if (name == "data_file_raw") out.data_file_raw = *b;
        break;
      }
      case OptType::kNum: {
        std::optional<uint64_t> n = parse_number(value);
        if (!n) {
          img_error("Parameter '" + name + "' expects a number");
          return false;
        }
        if (name == "refcount_bits") out.refcount_bits = *n;
        if (name == "encrypt.keyslot") out.encrypt_keyslot = *n;
        if (name == "encrypt.iter-time") out.encrypt_iter_time = *n;
        if (name.rfind("encrypt.", 0) == 0) out.encryption = true;
        break;
      }
      case OptType::kSize: {
        Result<uint64_t> v = parse_size(value);
        if (!v) {
          img_error("Parameter '" + name +
                    "' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, "
                    "P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, "
                    "respectively.");
          return false;
        }
        out.size = *v;
        break;
      }
      case OptType::kStr:
        if (name == "compat") out.compat = value;
        if (name == "backing_file") out.backing_file = value;
        if (name == "backing_fmt") out.backing_fmt = value;
        if (name == "data_file") out.data_file = value;
        if (name == "encrypt.state") out.encrypt_state = value;
        if (name == "encrypt.new-secret") out.encrypt_new_secret = value;
        if (name == "encrypt.old-secret") out.encrypt_old_secret = value;
        if (name.rfind("encrypt.", 0) == 0) out.encryption = true;
        break;
    }
  }
  return true;
}

// QEMU's check of an -o argument: a list may not end in an unescaped comma.
bool valid_option_list(std::string_view text) {
  std::size_t commas = 0;
  while (commas < text.size() && text[text.size() - 1 - commas] == ',') ++commas;
  return commas % 2 == 0;
}

bool has_help_option(const std::string& text) {
  for (const auto& [key, value] : parse_option_list(text)) {
    if (key == "help" || key == "?") return true;
  }
  return false;
}

struct AmendArgs {
  ImageArgs image;
  std::string options;
  std::string cache = "writeback";
  bool progress = false;
  bool quiet = false;
  bool force = false;
  std::vector<std::string> operands;
};

// Returns -1 to continue, else the exit status.
int parse_args(int argc, char** argv, AmendArgs& args) {
  OptionParser parser;
  parser.help([] {
    std::printf(
        "qblock amend [--object objectdef] [--image-opts] [-p] [-q] [-f fmt] [-t cache] "
        "[--force] -o options filename\n");
  });
  add_image_options(parser, ImageOption::kFormat | ImageOption::kImageOpts | ImageOption::kObject,
                    &args.image);
  parser.with_value('o', [&args](const char* value) {
    if (!valid_option_list(value)) {
      img_error(std::string("Invalid option list: ") + value);
      return 1;
    }
    if (!args.options.empty()) args.options += ",";
    args.options += value;
    return kContinue;
  });
  parser.value('t', &args.cache);
  parser.flag('p', &args.progress).flag('q', &args.quiet).flag("force", &args.force);
  if (int r = parser.parse(argc, argv); r != kContinue) return r;
  if (args.options.empty()) {
    img_usage_error("Must specify options (-o)");
    return 1;
  }
  if (args.quiet) args.progress = false;
  args.operands = parser.operands();
  return -1;
}

// qemu-img's progress line (qemu-compat.md §1.5).
void print_progress(double percent) { std::printf("    (%3.2f/100%%)\r", percent); }

Task<Status> amend(BlockBackend* backend, Qcow2AmendOptions options, AmendProgress progress) {
  co_return co_await amend_image(backend->root(), std::move(options), std::move(progress));
}

// Everything after the progress output starts: every way out of here is followed by the
// progress output's final newline, as in qemu-img.
int open_and_amend(const AmendArgs& args) {
  if (args.operands.size() != 1) {
    img_error("Expecting one image file name");
    return 1;
  }
  const std::string& filename = args.operands[0];
  OpenFlags flags;
  if (!apply_cache_mode(args.cache, flags)) {
    img_error("Invalid cache option: " + args.cache);
    return 1;
  }
  Result<std::unique_ptr<EventLoop>> loop = EventLoop::create();
  if (!loop) {
    img_error(loop.error().message());
    return 1;
  }
  Result<std::unique_ptr<BlockBackend>> opened = open_image(**loop, filename, args.image, flags);
  if (!opened) return 1;
  std::unique_ptr<BlockBackend> backend = std::move(*opened);
  if (backend->probed_raw()) warn_probed_raw(filename);

  int status = 0;
  Qcow2AmendOptions options;
  const std::string& driver = backend->root().driver_name();
  if (driver != "qcow2") {
    img_error("Format driver '" + driver + "' does not support option amendment");
    status = 1;
  } else if (has_help_option(args.options)) {
    print_amend_help();
  } else if (!parse_amend_options(args.options, options)) {
    status = 1;
  } else {
    options.force = args.force;
    AmendProgress progress;
    if (args.progress) {
      print_progress(0);
      progress = print_progress;
    }
    Status s = run_sync(**loop, amend(backend.get(), std::move(options), std::move(progress)));
    if (args.progress) print_progress(100);
    if (!s) {
      img_error(s.error().message());
      status = 1;
    }
  }
  return close_image_at_exit(**loop, *backend, status);
}

}  // namespace

int run_amend(int argc, char** argv) {
  AmendArgs args;
  if (int r = parse_args(argc, argv, args); r >= 0) return r;
  const int status = open_and_amend(args);
  if (args.progress) std::printf("\n");
  return status;
}

}  // namespace qblock::tools
