// `qblock create`: qemu-img create's command line, messages and exit codes
// (qemu-compat.md §3.1) for the qcow2 and raw formats. The image is written by
// create_qcow2_image / create_raw_image (qblock/image.h).

#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qblock/block_backend.h"
#include "qblock/commands.h"
#include "qblock/convert_common.h"
#include "qblock/event_loop.h"
#include "qblock/image.h"
#include "qblock/image_options.h"
#include "qblock/img_common.h"
#include "qblock/luks_image.h"
#include "qblock/options.h"

namespace qblock::tools {

namespace {

using OptionList = std::vector<std::pair<std::string, std::string>>;

enum class OptType { kStr, kSize, kNum, kBool };
struct OptDesc {
  const char* name;
  OptType type;
  const char* help;
};

// qemu-img's qcow2 create options in print order (qemu-compat.md §3.1); encryption and data
// files are listed for `-o help` but refused on use.
const std::vector<OptDesc>& qcow2_opts() {
  static const std::vector<OptDesc> kOpts = {
      {"encryption", OptType::kBool,
       "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)"},
      {"encrypt.format", OptType::kStr, "Encrypt the image, format choices: 'aes', 'luks'"},
      {"encrypt.key-secret", OptType::kStr,
       "ID of secret providing qcow AES key or LUKS passphrase"},
      {"encrypt.cipher-alg", OptType::kStr, "Name of encryption cipher algorithm"},
      {"encrypt.cipher-mode", OptType::kStr, "Name of encryption cipher mode"},
      {"encrypt.ivgen-alg", OptType::kStr, "Name of IV generator algorithm"},
      {"encrypt.ivgen-hash-alg", OptType::kStr, "Name of IV generator hash algorithm"},
      {"encrypt.hash-alg", OptType::kStr, "Name of encryption hash algorithm"},
      {"encrypt.iter-time", OptType::kNum, "Time to spend in PBKDF in milliseconds"},
      {"cluster_size", OptType::kSize, "qcow2 cluster size"},
      {"extended_l2", OptType::kBool, "Extended L2 tables"},
      {"preallocation", OptType::kStr,
       "Preallocation mode (allowed values: off, metadata, falloc, full)"},
      {"compression_type", OptType::kStr, "Compression method used for image cluster compression"},
      {"size", OptType::kSize, "Virtual disk size"},
      {"backing_file", OptType::kStr, "File name of a base image"},
      {"backing_fmt", OptType::kStr, "Image format of the base image"},
      {"compat", OptType::kStr, "Compatibility level (v2 [0.10] or v3 [1.1])"},
      {"data_file", OptType::kStr, "File name of an external data file"},
      {"data_file_raw", OptType::kBool, "The external data file must stay valid as a raw image"},
      {"lazy_refcounts", OptType::kBool, "Postpone refcount updates"},
      {"refcount_bits", OptType::kNum, "Width of a reference count entry in bits"},
  };
  return kOpts;
}

// The file protocol's create options, which both formats accept for their image file.
const OptDesc kNocowOpt{"nocow", OptType::kBool, "Turn off copy-on-write (valid only on btrfs)"};
const OptDesc kExtentSizeHintOpt{"extent_size_hint", OptType::kSize,
                                 "Extent size hint for the image file, 0 to disable"};

const std::vector<OptDesc>& raw_opts() {
  static const std::vector<OptDesc> kOpts = {
      {"size", OptType::kSize, "Virtual disk size"},
      {"preallocation", OptType::kStr, "Preallocation mode (allowed values: off, falloc, full)"},
  };
  return kOpts;
}

const std::vector<OptDesc>& luks_opts() {
  static const std::vector<OptDesc> kOpts = {
      {"size", OptType::kSize, "Virtual disk size"},
      {"key-secret", OptType::kStr, "ID of the secret that provides the keyslot passphrase"},
      {"cipher-alg", OptType::kStr, "Name of encryption cipher algorithm"},
      {"cipher-mode", OptType::kStr, "Name of encryption cipher mode"},
      {"ivgen-alg", OptType::kStr, "Name of IV generator algorithm"},
      {"ivgen-hash-alg", OptType::kStr, "Name of IV generator hash algorithm"},
      {"hash-alg", OptType::kStr, "Name of encryption hash algorithm"},
      {"iter-time", OptType::kNum, "Time to spend in PBKDF in milliseconds"},
  };
  return kOpts;
}

// The formats create knows.
bool is_create_format(std::string_view fmt) {
  return fmt == "qcow2" || fmt == "raw" || fmt == "luks";
}

// Every option `create -f fmt` accepts, in the order qemu-img 7.2 prints them in its
// "Formatting" line: the format's options merged with the file protocol's.
const std::vector<OptDesc>& accepted_opts(std::string_view fmt) {
  static const std::vector<OptDesc> kQcow2 = [] {
    std::vector<OptDesc> list = qcow2_opts();
    list.push_back(kNocowOpt);
    list.push_back(kExtentSizeHintOpt);
    return list;
  }();
  static const std::vector<OptDesc> kRaw = {raw_opts()[0], kNocowOpt, raw_opts()[1],
                                            kExtentSizeHintOpt};
  static const std::vector<OptDesc> kLuks = [] {
    std::vector<OptDesc> list = luks_opts();
    list.push_back(kNocowOpt);
    list.push_back(raw_opts()[1]);  // preallocation, from the file protocol
    list.push_back(kExtentSizeHintOpt);
    return list;
  }();
  if (fmt == "luks") return kLuks;
  return fmt == "qcow2" ? kQcow2 : kRaw;
}

// Defaults printed in the "Formatting" line even when not given (the starred options).
const char* default_value(std::string_view fmt, std::string_view name) {
  if (fmt != "qcow2") return nullptr;
  if (name == "cluster_size") return "65536";
  if (name == "extended_l2") return "off";
  if (name == "compression_type") return "zlib";
  if (name == "lazy_refcounts") return "off";
  if (name == "refcount_bits") return "16";
  return nullptr;
}

const char* type_text(OptType t) {
  switch (t) {
    case OptType::kStr: return "str";
    case OptType::kSize: return "size";
    case OptType::kNum: return "num";
    case OptType::kBool: return "bool (on/off)";
  }
  return "";
}

void print_option_help(std::string_view fmt, bool with_protocol) {
  std::vector<OptDesc> list = fmt == "qcow2"  ? qcow2_opts()
                              : fmt == "luks" ? luks_opts()
                                              : raw_opts();
  if (with_protocol) {
    list.push_back(kExtentSizeHintOpt);
    list.push_back(kNocowOpt);
  }
  std::sort(list.begin(), list.end(),
            [](const OptDesc& a, const OptDesc& b) { return std::strcmp(a.name, b.name) < 0; });
  if (with_protocol) {
    std::printf("Supported options:\n");
  } else {
    std::printf("Supported %.*s options:\n", static_cast<int>(fmt.size()), fmt.data());
  }
  for (const OptDesc& d : list) {
    std::string left = std::string(d.name) + "=<" + type_text(d.type) + ">";
    std::printf("  %-22s - %s\n", left.c_str(), d.help);
  }
  if (!with_protocol) {
    std::printf(
        "\nThe protocol level may support further options.\n"
        "Specify the target filename to include those options.\n");
  }
}

struct ParsedOpts {
  std::vector<std::pair<std::string, std::string>> values;  // in option order, last wins
  const std::string* get(std::string_view key) const {
    const std::string* v = nullptr;
    for (const auto& [k, val] : values) {
      if (k == key) v = &val;
    }
    return v;
  }
  void set(std::string key, std::string value) { values.emplace_back(std::move(key), value); }
};

std::optional<bool> parse_bool(std::string_view v) {
  if (v == "on" || v == "yes" || v == "true" || v == "y") return true;
  if (v == "off" || v == "no" || v == "false" || v == "n") return false;
  return std::nullopt;
}

// QemuOpts' checks done while parsing -o: unknown keys and malformed typed values.
Status check_opts(const std::vector<OptDesc>& descs, const OptionList& list, ParsedOpts& out) {
  for (const auto& [key, value] : list) {
    const OptDesc* desc = nullptr;
    for (const OptDesc& d : descs) {
      if (key == d.name) desc = &d;
    }
    if (!desc) return fail(Error::with_message(EINVAL, "Invalid parameter '" + key + "'"));
    std::string stored = value;
    if (desc->type == OptType::kBool && !parse_bool(value)) {
      return fail(Error::with_message(EINVAL, "Parameter '" + key + "' expects 'on' or 'off'"));
    }
    if (desc->type == OptType::kSize) {
      Result<uint64_t> v = parse_size(value);
      if (!v) {
        return fail(Error::with_message(
            EINVAL, "Parameter '" + key +
                        "' expects a non-negative number below 2^64\nOptional suffix k, M, G, "
                        "T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, "
                        "respectively."));
      }
      stored = std::to_string(*v);
    }
    if (desc->type == OptType::kNum) {
      char* end = nullptr;
      errno = 0;
      std::strtoull(value.c_str(), &end, 0);
      if (value.empty() || *end || errno) {
        return fail(Error::with_message(EINVAL, "Parameter '" + key + "' expects a number"));
      }
    }
    out.set(key, stored);
  }
  return ok();
}

std::string formatting_line(const std::string& filename, std::string_view fmt,
                            const ParsedOpts& opts) {
  std::string line = "Formatting '" + filename + "', fmt=" + std::string(fmt);
  for (const OptDesc& d : accepted_opts(fmt)) {
    const std::string* v = opts.get(d.name);
    const char* def = default_value(fmt, d.name);
    if (v) {
      line += " " + std::string(d.name) + "=" + *v;
    } else if (def) {
      line += " " + std::string(d.name) + "=" + def;
    }
  }
  return line;
}

Task<Result<std::string>> probe_format(EventLoop* loop, std::string filename) {
  BackendOptions bo;
  bo.filename = std::move(filename);
  bo.flags.read_only = true;
  Result<std::unique_ptr<BlockBackend>> b = co_await BlockBackend::open(*loop, std::move(bo));
  if (!b) co_return fail(b.error());
  std::string name = (*b)->root().driver_name();
  Status closed = co_await (*b)->close();
  (void)closed;
  co_return name;
}

Task<Result<uint64_t>> backing_length(EventLoop* loop, std::string filename, std::string fmt) {
  BackendOptions bo;
  bo.filename = std::move(filename);
  bo.format = std::move(fmt);
  bo.flags.read_only = true;
  Result<std::unique_ptr<BlockBackend>> b = co_await BlockBackend::open(*loop, std::move(bo));
  if (!b) co_return fail(b.error());
  uint64_t length = (*b)->length();
  Status closed = co_await (*b)->close();
  (void)closed;
  co_return length;
}

// Maps the parsed option values to the qcow2 creator (shared with convert's -o), plus size.
Result<Qcow2CreateOptions> to_qcow2_options(const ParsedOpts& p) {
  TargetOptions target;
  target.values = p.values;
  Result<Qcow2CreateOptions> o = to_create_options(target);
  if (!o) return o;
  if (const std::string* v = p.get("size")) o->size = std::stoull(*v);
  return o;
}

// Maps the parsed option values to the luks creator (shared with convert's -o).
Result<LuksImageOptions> to_luks_options(const ParsedOpts& p) {
  TargetOptions target;
  target.values = p.values;
  return to_luks_create_options(target);
}

int fail_with(const std::string& filename, const Error& e) {
  img_error(filename + ": " + e.message());
  return 1;
}

}  // namespace

int run_create(int argc, char** argv) {
  std::string fmt = "raw";
  std::string base_filename, base_fmt, options;
  bool quiet = false, unsafe = false;
  ImageArgs objects;  // create opens no image; only --object is shared
  OptionParser parser;
  parser.help([] {
    std::printf(
        "qblock create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] "
        "[-o options] filename [size]\n");
  });
  add_image_options(parser, ImageOption::kObject, &objects);
  parser.value('F', &base_fmt).value('b', &base_filename).value('f', &fmt);
  parser.with_value('o', [&options](const char* value) {
    if (!options.empty()) options += ",";
    options += value;
    return kContinue;
  });
  parser.flag('q', &quiet).flag('u', &unsafe);
  if (int r = parser.parse(argc, argv); r != kContinue) return r;
  const std::vector<std::string>& operands = parser.operands();
  std::size_t next = 0;
  for (const auto& [k, v] : parse_option_list(options)) {
    if ((k == "help" || k == "?") && operands.empty() && is_create_format(fmt)) {
      print_option_help(fmt, false);
      return 0;
    }
  }
  if (next >= operands.size()) {
    img_usage_error("Expecting image file name");
    return 1;
  }
  const std::string filename = operands[next++];
  std::optional<uint64_t> img_size;
  if (next < operands.size()) {
    Result<uint64_t> s = parse_size(operands[next++]);
    if (!s || *s > uint64_t{INT64_MAX}) {
      img_error("Invalid image size specified. You may use k, M, G, T, P or E suffixes for");
      img_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
      return 1;
    }
    img_size = *s;
  }
  if (next != operands.size()) {
    img_usage_error("Unexpected argument: " + operands[next]);
    return 1;
  }
  OptionList list = parse_option_list(options);
  for (const auto& [k, v] : list) {
    if (k == "help" || k == "?") {
      if (!is_create_format(fmt)) break;
      print_option_help(fmt, !filename.empty());
      return 0;
    }
  }
  if (!is_create_format(fmt)) {
    img_error(filename + ": Unknown file format '" + fmt + "'");
    return 1;
  }
  ParsedOpts parsed;
  if (Status s = check_opts(accepted_opts(fmt), list, parsed); !s) {
    return fail_with(filename, s.error());
  }
  if (!base_filename.empty()) parsed.set("backing_file", base_filename);
  if (!base_fmt.empty()) parsed.set("backing_fmt", base_fmt);
  if (img_size) {
    if (parsed.get("size")) {
      return fail_with(filename,
                       Error::with_message(EINVAL, "The image size must be specified only once"));
    }
    parsed.set("size", std::to_string(*img_size));
  }
  Result<std::unique_ptr<EventLoop>> loop = EventLoop::create();
  if (!loop) return fail_with(filename, loop.error());

  const std::string* backing = parsed.get("backing_file");
  const std::string* backing_fmt = parsed.get("backing_fmt");
  if (backing && fmt == "qcow2") {
    if (*backing == filename) {
      return fail_with(filename, Error::with_message(EINVAL,
                                                     "Error: Trying to create an image with the "
                                                     "same filename as the backing file"));
    }
    if (!unsafe) {
      if (!backing_fmt) {
        Result<std::string> probed =
            run_sync(**loop, probe_format(loop->get(), combine_path(filename, *backing)));
        if (!probed) {
          return fail_with(filename, Error::with_message(probed.error().errnum(),
                                                         probed.error().message() +
                                                             "\nCould not open backing image."));
        }
        // qemu-compat.md §3.1: 7.2 omits the final newline here; qblock ends the line.
        return fail_with(filename, Error::with_message(EINVAL,
                                                       "Backing file specified without backing "
                                                       "format\nDetected format of " +
                                                           *probed + "."));
      }
      Result<uint64_t> length = run_sync(
          **loop, backing_length(loop->get(), combine_path(filename, *backing), *backing_fmt));
      if (!length) {
        return fail_with(filename, Error::with_message(length.error().errnum(),
                                                       length.error().message() +
                                                           "\nCould not open backing image."));
      }
      if (!parsed.get("size")) parsed.set("size", std::to_string(*length));
    }
  }
  if (!parsed.get("size")) {
    return fail_with(filename,
                     Error::with_message(EINVAL, "Image creation needs a size parameter"));
  }
  if (!quiet) {
    std::printf("%s\n", formatting_line(filename, fmt, parsed).c_str());
    std::fflush(stdout);
  }
  FileCreateOptions file;
  if (const std::string* v = parsed.get("extent_size_hint"))
    file.extent_size_hint = std::stoull(*v);
  if (const std::string* v = parsed.get("nocow")) file.nocow = *parse_bool(*v);
  const ImgWarnings warnings;
  Status created;
  if (fmt == "raw") {
    PreallocMode mode = PreallocMode::kOff;
    if (const std::string* v = parsed.get("preallocation")) {
      Result<PreallocMode> m = parse_prealloc_mode(*v);
      // The raw driver's own wording (qemu-img 7.2), unlike qcow2's.
      if (!m)
        return fail_with(filename, Error::with_message(EINVAL, "invalid parameter value: " + *v));
      mode = *m;
    }
    created = run_sync(
        **loop, create_raw_image(**loop, filename, std::stoull(*parsed.get("size")), mode, file));
  } else if (fmt == "luks") {
    Result<LuksImageOptions> o = to_luks_options(parsed);
    if (!o) return fail_with(filename, o.error());
    o->filename = filename;
    created = run_sync(**loop, create_luks_image(**loop, std::move(*o)));
  } else {
    Result<Qcow2CreateOptions> o = to_qcow2_options(parsed);
    if (!o) return fail_with(filename, o.error());
    o->filename = filename;
    o->unsafe_backing = true;  // the backing file was checked above
    o->file = file;
    created = run_sync(**loop, create_qcow2_image(**loop, std::move(*o)));
  }
  if (!created && created.error().errnum() == EFBIG) {
    // qemu-img create words every EFBIG so (a preallocation past `ulimit -f` among them), with
    // a hint for formats that have a cluster size.
    img_error(filename + ": The image size is too large for file format '" + fmt + "'" +
              (fmt == "qcow2" ? " (try using a larger cluster size)" : ""));
    return 1;
  }
  if (!created) return fail_with(filename, created.error());
  return 0;
}

}  // namespace qblock::tools
