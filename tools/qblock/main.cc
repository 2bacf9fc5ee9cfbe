// qblock: the command-line entry point. `qblock SUBCOMMAND ARGS...`.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "qblock/cli_messages.h"
#include "qblock/commands.h"  // tools/qblock/commands.h

namespace {

// Every subcommand, in the order `qblock --help` lists them. The one table serves both the
// dispatch and the help, so a new command cannot be left out of either.
struct Command {
  const char* name;
  int (*run)(int argc, char** argv);
  const char* summary;  // one line for `qblock --help`
};

constexpr Command kCommands[] = {
    {"io", qblock::tools::run_io, "run I/O commands on an image (qemu-io)"},
    {"create", qblock::tools::run_create, "create a new image (qemu-img create)"},
    {"info", qblock::tools::run_info, "describe an image (qemu-img info)"},
    {"check", qblock::tools::run_check,
     "check an image for errors and repair them (qemu-img check)"},
    {"map", qblock::tools::run_map, "print the allocation map of an image (qemu-img map)"},
    {"compare", qblock::tools::run_compare,
     "compare the contents of two images (qemu-img compare)"},
    {"convert", qblock::tools::run_convert,
     "copy one or more images into a new one (qemu-img convert)"},
    {"resize", qblock::tools::run_resize, "change the virtual size of an image (qemu-img resize)"},
    {"amend", qblock::tools::run_amend, "change the options of an image (qemu-img amend)"},
    {"bitmap", qblock::tools::run_bitmap, "manage persistent dirty bitmaps (qemu-img bitmap)"},
    {"snapshot", qblock::tools::run_snapshot, "manage internal snapshots (qemu-img snapshot)"},
    {"dd", qblock::tools::run_dd, "copy blocks of an image into a new one (qemu-img dd)"},
    {"commit", qblock::tools::run_commit,
     "commit an image into its backing file (qemu-img commit)"},
    {"rebase", qblock::tools::run_rebase, "change the backing file of an image (qemu-img rebase)"},
    {"measure", qblock::tools::run_measure,
     "compute the size a new image needs (qemu-img measure)"},
    {"bench", qblock::tools::run_bench, "run a simple I/O benchmark on an image (qemu-img bench)"},
    {"nbd", qblock::tools::run_nbd, "serve an image over NBD (qemu-nbd)"},
    {"storage-daemon", qblock::tools::run_storage_daemon,
     "serve images, NBD exports and QMP (qemu-storage-daemon)"},
};

void print_usage(FILE* out) {
  std::fprintf(out, "Usage: qblock COMMAND [options]\n\nCommands:\n");
  for (const Command& c : kCommands) {
    // Names longer than the column get one space before their summary.
    std::fprintf(out, "  %-10s%s%s\n", c.name, std::strlen(c.name) >= 10 ? " " : "", c.summary);
  }
  std::fprintf(out, "\nRun 'qblock COMMAND --help' for a command's options.\n");
}

}  // namespace

int main(int argc, char** argv) {
  qblock::tools::install_message_sink();
  // As QEMU's tools: a write or truncate past the file-size limit (ulimit -f) fails with EFBIG
  // and is reported, instead of killing the process in the middle of an update.
  std::signal(SIGXFSZ, SIG_IGN);
  if (argc < 2) {
    std::fprintf(stderr,
                 "qblock: Not enough arguments\nTry 'qblock --help' for more information\n");
    return 1;
  }
  std::string_view command = argv[1];
  if (command == "-h" || command == "--help") {
    print_usage(stdout);
    return 0;
  }
  // The subcommand sees argv[0] = "qblock COMMAND" style arguments starting at its name.
  for (const Command& c : kCommands) {
    if (command == c.name) return c.run(argc - 1, argv + 1);
  }
  std::fprintf(stderr, "qblock: Command not found: %s\n", argv[1]);
  return 1;
}
