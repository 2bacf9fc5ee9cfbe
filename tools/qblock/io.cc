// `qblock io`: qemu-io 7.2's invocation, open rules and exit status (qemu-compat.md §2.1-§2.3).
// The commands themselves live in io_commands.cc; the texts in io_help.cc and io_format.cc.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "io_commands.h"
#include "qblock/commands.h"
#include "qblock/image_options.h"
#include "qblock/options.h"

namespace qblock::tools {
namespace {

void print_usage() {
  std::fputs(
      "Usage: qemu-io [OPTIONS]... [-c STRING]... [file]\n"
      "QEMU Disk exerciser\n"
      "\n"
      "  --object OBJECTDEF   define an object such as 'secret' for\n"
      "                       passwords and/or encryption keys\n"
      "  --image-opts         treat file as option string\n"
      "  -c, --cmd STRING     execute command with its arguments\n"
      "                       from the given string\n"
      "  -f, --format FMT     specifies the block driver to use\n"
      "  -r, --read-only      export read-only\n"
      "  -s, --snapshot       use snapshot file\n"
      "  -n, --nocache        disable host cache, short for -t none\n"
      "  -C, --copy-on-read   enable copy-on-read\n"
      "  -m, --misalign       misalign allocations for O_DIRECT\n"
      "  -k, --native-aio     use kernel AIO implementation\n"
      "                       (Linux only, prefer use of -i)\n"
      "  -i, --aio=MODE       use AIO mode (threads, native or io_uring)\n"
      "  -t, --cache=MODE     use the given cache mode for the image\n"
      "  -d, --discard=MODE   use the given discard mode for the image\n"
      "  -T, --trace [[enable=]<pattern>][,events=<file>][,file=<file>]\n"
      "                       specify tracing options\n"
      "                       see qemu-img(1) man page for full description\n"
      "  -U, --force-share    force shared permissions\n"
      "  -h, --help           display this help and exit\n"
      "  -V, --version        output version information and exit\n"
      "\n"
      "See 'qemu-io -c help' for information on available commands.\n"
      "\n"
      "See <https://qemu.org/contribute/report-a-bug> for how to report bugs.\n"
      "More information on the QEMU project at <https://qemu.org>.\n",
      stdout);
}

// Reads commands from stdin, printing the prompt before each line (§2.3), until EOF or quit.
void run_interactive(IoSession& session) {
  std::string line;
  while (!session.quit_requested()) {
    std::fputs("qemu-io> ", stdout);
    std::fflush(stdout);
    if (!std::getline(std::cin, line)) break;
    session.run_line(line);
  }
}

}  // namespace

int run_io(int argc, char** argv) {
  std::vector<std::string> commands;
  OpenRequest request;
  ImageArgs image;
  bool misalign = false;
  OptionParser parser;
  // getopt's messages start with argv[0]; qblock io always says "qemu-io" (§2.1).
  parser.report_with_getopt("qemu-io").on_error([](char, const char*) {
    print_usage();
    return 1;
  });
  parser.help(print_usage);
  parser.without_value({'V', "version"}, [](const char*) {
    std::printf("qblock io version 0.1.0 (qemu-io 7.2 compatible)\n");
    return 0;
  });
  parser.with_value({'c', "cmd"}, [&commands](const char* value) {
    commands.emplace_back(value);
    return kContinue;
  });
  image.tool = "qemu-io";
  add_image_options(parser,
                    ImageOption::kFormat | ImageOption::kFormatLong | ImageOption::kImageOpts |
                        ImageOption::kObject | ImageOption::kForceShare,
                    &image);
  parser.flag({'r', "read-only"}, &request.read_only).flag({'s', "snapshot"}, &request.snapshot);
  parser.without_value({'n', "nocache"}, [&request](const char*) {
    request.cache = "none";
    return kContinue;
  });
  parser.flag({'C', "copy-on-read"}, &request.copy_on_read).flag({'m', "misalign"}, &misalign);
  parser.without_value({'k', "native-aio"}, [&request](const char*) {
    request.aio = "native";
    return kContinue;
  });
  parser.with_value({'i', "aio"}, [&request](const char* value) {
    request.aio = value;
    if (valid_aio_mode(request.aio)) return kContinue;
    std::fprintf(stderr, "qemu-io: Invalid aio option: %s\n", value);
    return 1;
  });
  parser.with_value({'t', "cache"}, [&request](const char* value) {
    request.cache = value;
    if (valid_cache_mode(request.cache)) return kContinue;
    std::fprintf(stderr, "qemu-io: Invalid cache option: %s\n", value);
    return 1;
  });
  parser.with_value({'d', "discard"}, [&request](const char* value) {
    request.discard = value;
    if (valid_discard_mode(request.discard)) return kContinue;
    std::fprintf(stderr, "qemu-io: Invalid discard option: %s\n", value);
    return 1;
  });
  parser.ignored({'T', "trace"}, true);  // tracing is accepted and ignored
  if (int r = parser.parse(argc, argv); r != kContinue) return r;
  // qemu-io's own wording of qemu-img's check.
  if (image.image_opts && image.format) {
    std::fprintf(stderr, "qemu-io: --image-opts and -f are mutually exclusive\n");
    return 1;
  }
  request.format = image.format_name();
  request.force_share = image.force_share;
  const std::vector<std::string>& operands = parser.operands();
  if (operands.size() > 1) {
    print_usage();
    return 1;
  }

  auto session = IoSession::create(misalign);
  if (!session) {
    std::fprintf(stderr, "qemu-io: %s\n", session.error().message().c_str());
    return 1;
  }
  IoSession& s = **session;
  if (!operands.empty()) {
    if (image.image_opts) {
      request.image_opts = operands[0];
    } else {
      request.path = operands[0];
      request.has_path = true;
    }
    // §2.2 / OBSERVED.md §9: a positional image that cannot be opened ends the process.
    if (!s.open_image(request)) return 1;
  }
  if (commands.empty()) {
    run_interactive(s);
  } else {
    for (const std::string& cmd : commands) {
      s.run_line(cmd);
      if (s.quit_requested()) break;
    }
  }
  s.finish();
  std::fflush(stdout);
  return s.failed() ? 1 : 0;
}

}  // namespace qblock::tools
