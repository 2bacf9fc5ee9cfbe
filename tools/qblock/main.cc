// qblock: the command-line entry point. `qblock SUBCOMMAND ARGS...`.
#include <cstdio>
#include <cstring>
#include <string_view>

#include "qblock/commands.h"  // tools/qblock/commands.h

namespace {

void print_usage(FILE* out) {
  std::fprintf(out,
               "Usage: qblock COMMAND [options]\n"
               "\n"
               "Commands:\n"
               "  io      qemu-io compatible I/O commands on an image\n"
               "  bench   qemu-img bench compatible benchmark\n"
               "\n"
               "Run 'qblock COMMAND --help' for a command's options.\n");
}

}  // namespace

int main(int argc, char** argv) {
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
  if (command == "io") return qblock::tools::run_io(argc - 1, argv + 1);
  if (command == "bench") return qblock::tools::run_bench(argc - 1, argv + 1);
  if (command == "create") return qblock::tools::run_create(argc - 1, argv + 1);
  if (command == "info") return qblock::tools::run_info(argc - 1, argv + 1);
  if (command == "check") return qblock::tools::run_check(argc - 1, argv + 1);
  if (command == "map") return qblock::tools::run_map(argc - 1, argv + 1);
  if (command == "compare") return qblock::tools::run_compare(argc - 1, argv + 1);
  if (command == "convert") return qblock::tools::run_convert(argc - 1, argv + 1);
  if (command == "measure") return qblock::tools::run_measure(argc - 1, argv + 1);
  if (command == "resize") return qblock::tools::run_resize(argc - 1, argv + 1);
  if (command == "nbd") return qblock::tools::run_nbd(argc - 1, argv + 1);
  std::fprintf(stderr, "qblock: Command not found: %s\n", argv[1]);
  return 1;
}
