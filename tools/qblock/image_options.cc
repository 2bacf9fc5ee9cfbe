// The shared option parser and image opener of the image subcommands (see image_options.h).
#include "qblock/image_options.h"

#include <getopt.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "qblock/img_common.h"
#include "qblock/options.h"
#include "qblock/user_objects.h"

namespace qblock::tools {

namespace {

// getopt_long's value for the i-th long-only option; above every short letter.
constexpr int kLongOnlyBase = 256;

// qemu-img's words for a getopt failure (qemu-compat.md §1.1).
int report_like_qemu_img(char kind, const char* word) {
  img_usage_error(kind == ':' ? std::string("missing argument for option '") + word + "'"
                              : std::string("unrecognized option '") + word + "'");
  return 1;
}

Task<Result<std::unique_ptr<BlockBackend>>> open_backend(EventLoop* loop, BackendOptions options) {
  co_return co_await BlockBackend::open(*loop, std::move(options));
}

// QemuOpts' deprecation warning for each item of an --image-opts string after the first
// (which is the implied "file") that has no '=': a short-form boolean, taken as "on".
void warn_short_form_booleans(const std::string& text) {
  bool first = true;
  for (std::size_t pos = 0; pos <= text.size();) {
    std::size_t end = pos;
    while (end < text.size()) {
      if (text[end] == ',' && end + 1 < text.size() && text[end + 1] == ',') {
        end += 2;
        continue;
      }
      if (text[end] == ',') break;
      ++end;
    }
    const std::string item = text.substr(pos, end - pos);
    if (!first && !item.empty() && item.find('=') == std::string::npos) {
      std::fflush(stdout);
      std::fprintf(stderr,
                   "qemu-img: warning: short-form boolean option '%s' deprecated\n"
                   "Please use %s=on instead\n",
                   item.c_str(), item.c_str());
    }
    first = false;
    pos = end + 1;
  }
}

}  // namespace

OptionParser& OptionParser::add(OptionName name, bool takes_value, Handler handler) {
  entries_.push_back(Entry{name, takes_value, std::move(handler)});
  return *this;
}

OptionParser& OptionParser::help(std::function<void()> print) {
  return add({'h', "help"}, false, [print = std::move(print)](const char*) {
    print();
    return 0;
  });
}

OptionParser& OptionParser::flag(OptionName name, bool* target) {
  return add(name, false, [target](const char*) {
    *target = true;
    return kContinue;
  });
}

OptionParser& OptionParser::value(OptionName name, std::string* target) {
  return add(name, true, [target](const char* v) {
    *target = v;
    return kContinue;
  });
}

OptionParser& OptionParser::with_value(OptionName name, Handler handler) {
  return add(name, true, std::move(handler));
}

OptionParser& OptionParser::without_value(OptionName name, Handler handler) {
  return add(name, false, std::move(handler));
}

OptionParser& OptionParser::ignored(OptionName name, bool takes_value) {
  return add(name, takes_value, [](const char*) { return kContinue; });
}

OptionParser& OptionParser::on_error(std::function<int(char kind, const char* word)> report) {
  report_ = std::move(report);
  return *this;
}

OptionParser& OptionParser::report_with_getopt(std::string program) {
  getopt_program_ = std::move(program);
  return *this;
}

OptionParser& OptionParser::stop_at_first_operand() {
  stop_at_first_operand_ = true;
  return *this;
}

int OptionParser::parse(int argc, char** argv) {
  // '+' stops at the first operand; a leading ':' keeps getopt quiet and tells a missing
  // argument (':') from an unknown option ('?').
  std::string shorts = stop_at_first_operand_ ? "+" : "";
  if (!getopt_program_) shorts += ':';
  std::vector<option> longs;
  std::vector<int> codes;
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    const Entry& e = entries_[i];
    const int code = e.name.short_name ? e.name.short_name : kLongOnlyBase + static_cast<int>(i);
    codes.push_back(code);
    if (e.name.short_name) {
      shorts += e.name.short_name;
      if (e.takes_value) shorts += ':';
    }
    if (e.name.long_name) {
      longs.push_back(
          option{e.name.long_name, e.takes_value ? required_argument : no_argument, nullptr, code});
    }
  }
  longs.push_back(option{nullptr, 0, nullptr, 0});

  // getopt permutes the array it is given and names argv[0] in its own messages.
  std::vector<char*> args(argv, argv + argc);
  std::string program = getopt_program_.value_or("");
  if (getopt_program_ && !args.empty()) args[0] = program.data();
  args.push_back(nullptr);

  ::optind = 0;  // glibc: a full reset, so each parse starts from argv[1]
  ::opterr = getopt_program_ ? 1 : 0;
  const auto report = report_ ? report_ : report_like_qemu_img;
  for (;;) {
    const int c = getopt_long(argc, args.data(), shorts.c_str(), longs.data(), nullptr);
    if (c == -1) break;
    if (c == ':' || c == '?') return report(static_cast<char>(c), args[::optind - 1]);
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      if (codes[i] != c) continue;
      if (const int r = entries_[i].handler(::optarg); r != kContinue) return r;
      break;
    }
  }
  operands_.assign(args.begin() + ::optind, args.begin() + argc);
  return kContinue;
}

void add_image_options(OptionParser& parser, ImageOption which, ImageArgs* args) {
  if (has(which, ImageOption::kFormat)) {
    const OptionName name =
        has(which, ImageOption::kFormatLong) ? OptionName('f', "format") : OptionName('f');
    parser.with_value(name, [args](const char* v) {
      args->format = v;
      return kContinue;
    });
  }
  if (has(which, ImageOption::kImageOpts)) parser.flag("image-opts", &args->image_opts);
  if (has(which, ImageOption::kObject)) {
    // As QEMU's tools, each object is created as its option is parsed, and a bad one ends
    // the program there.
    parser.with_value("object", [args](const char* v) {
      args->objects.emplace_back(v);
      if (Status added = user_objects().add(v); !added) {
        std::fprintf(stderr, "%s: %s\n", args->tool, added.error().message().c_str());
        return args->object_error_exit;
      }
      return kContinue;
    });
  }
  if (has(which, ImageOption::kForceShare)) parser.flag({'U', "force-share"}, &args->force_share);
  if (has(which, ImageOption::kSourceCache)) {
    parser.with_value('T', [args](const char* v) {
      args->source_cache = v;
      return kContinue;
    });
  }
}

bool check_image_opts_exclusive(const ImageArgs& args) {
  if (!args.image_opts || !args.format) return true;
  img_error("--image-opts and --format are mutually exclusive");
  return false;
}

bool apply_source_cache(const ImageArgs& args, OpenFlags& flags) {
  if (!args.source_cache || apply_cache_mode(*args.source_cache, flags)) return true;
  img_error("Invalid source cache option: " + *args.source_cache);
  return false;
}

Result<std::unique_ptr<BlockBackend>> open_image(EventLoop& loop, const std::string& filename,
                                                 const ImageArgs& args, const OpenFlags& flags,
                                                 OpenMessage message, const Options& extra) {
  if (!check_image_opts_exclusive(args)) {
    return fail(Error::invalid("--image-opts and --format are mutually exclusive"));
  }
  BackendOptions options;
  options.format = args.format_name();
  options.flags = flags;
  if (args.image_opts) {
    warn_short_form_booleans(filename);
    Result<Options> tree = parse_key_value_options(filename, "file");
    if (!tree) {
      img_error(tree.error().message());
      return fail(tree.error());
    }
    options.tree = std::move(*tree);
  } else {
    options.filename = filename;
  }
  for (auto it = extra.begin(); it != extra.end(); ++it) options.tree[it.key()] = it.value();
  Result<std::unique_ptr<BlockBackend>> opened =
      run_sync(loop, open_backend(&loop, std::move(options)));
  if (!opened) {
    const std::string prefix = "Could not open '" + filename + "': ";
    const std::string& text = opened.error().message();
    // 7.2 repeats the prefix for file-level failures (qemu-compat.md §3).
    if (message == OpenMessage::kNameOnce && text.rfind("Could not open '", 0) == 0) {
      img_error(text);
    } else {
      img_error(prefix + text);
    }
  }
  return opened;
}

void warn_probed_raw(const std::string& filename) {
  std::fflush(stdout);
  std::fprintf(stderr,
               "WARNING: Image format was not specified for '%s' and probing guessed raw.\n"
               "         Automatically detecting the format is dangerous for raw images, "
               "write operations on block 0 will be restricted.\n"
               "         Specify the 'raw' format explicitly to remove the restrictions.\n",
               filename.c_str());
}

}  // namespace qblock::tools
