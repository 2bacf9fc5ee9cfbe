// `qblock io`: qemu-io 7.2's invocation, open rules and exit status (qemu-compat.md §2.1-§2.3).
// The commands themselves live in io_commands.cc; the texts in io_help.cc and io_format.cc.
#include <getopt.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "io_commands.h"
#include "qblock/commands.h"
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

enum LongOnly { kOptObject = 256, kOptImageOpts };

const option kLongOptions[] = {
    {"help", no_argument, nullptr, 'h'},
    {"version", no_argument, nullptr, 'V'},
    {"cmd", required_argument, nullptr, 'c'},
    {"format", required_argument, nullptr, 'f'},
    {"read-only", no_argument, nullptr, 'r'},
    {"snapshot", no_argument, nullptr, 's'},
    {"nocache", no_argument, nullptr, 'n'},
    {"copy-on-read", no_argument, nullptr, 'C'},
    {"misalign", no_argument, nullptr, 'm'},
    {"native-aio", no_argument, nullptr, 'k'},
    {"discard", required_argument, nullptr, 'd'},
    {"cache", required_argument, nullptr, 't'},
    {"trace", required_argument, nullptr, 'T'},
    {"object", required_argument, nullptr, kOptObject},
    {"image-opts", no_argument, nullptr, kOptImageOpts},
    {"force-share", no_argument, nullptr, 'U'},
    {"aio", required_argument, nullptr, 'i'},
    {nullptr, 0, nullptr, 0},
};

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
  // getopt's messages start with argv[0]; qblock io always says "qemu-io" (§2.1).
  std::vector<char*> args(argv, argv + argc);
  std::string prog = "qemu-io";
  args[0] = prog.data();
  args.push_back(nullptr);

  std::vector<std::string> commands;
  OpenRequest request;
  bool image_opts = false;
  bool misalign = false;
  ::optind = 0;
  ::opterr = 1;
  int c;
  while ((c = getopt_long(argc, args.data(), "hVc:d:f:rsnCmkt:T:Ui:", kLongOptions, nullptr)) !=
         -1) {
    switch (c) {
      case 'h': print_usage(); return 0;
      case 'V': std::printf("qblock io version 0.1.0 (qemu-io 7.2 compatible)\n"); return 0;
      case 'c': commands.emplace_back(::optarg); break;
      case 'f': request.format = ::optarg; break;
      case 'r': request.read_only = true; break;
      case 's': request.snapshot = true; break;
      case 'n': request.cache = "none"; break;
      case 'C': request.copy_on_read = true; break;
      case 'm': misalign = true; break;
      case 'k': request.aio = "native"; break;
      case 'i':
        request.aio = ::optarg;
        if (!valid_aio_mode(request.aio)) {
          std::fprintf(stderr, "qemu-io: Invalid aio option: %s\n", ::optarg);
          return 1;
        }
        break;
      case 't':
        request.cache = ::optarg;
        if (!valid_cache_mode(request.cache)) {
          std::fprintf(stderr, "qemu-io: Invalid cache option: %s\n", ::optarg);
          return 1;
        }
        break;
      case 'd':
        request.discard = ::optarg;
        if (!valid_discard_mode(request.discard)) {
          std::fprintf(stderr, "qemu-io: Invalid discard option: %s\n", ::optarg);
          return 1;
        }
        break;
      case 'T':  // tracing is accepted and ignored
        break;
      case 'U': request.force_share = true; break;
      case kOptObject:  // objects (secrets) are accepted and ignored for now
        break;
      case kOptImageOpts: image_opts = true; break;
      default: print_usage(); return 1;
    }
  }
  if (image_opts && !request.format.empty()) {
    std::fprintf(stderr, "qemu-io: --image-opts and -f are mutually exclusive\n");
    return 1;
  }
  if (argc - ::optind > 1) {
    print_usage();
    return 1;
  }

  auto session = IoSession::create(misalign);
  if (!session) {
    std::fprintf(stderr, "qemu-io: %s\n", session.error().message().c_str());
    return 1;
  }
  IoSession& s = **session;
  if (::optind < argc) {
    if (image_opts) {
      request.image_opts = args[::optind];
    } else {
      request.path = args[::optind];
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
