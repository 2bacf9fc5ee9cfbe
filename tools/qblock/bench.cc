// `qblock bench` (placeholder until the benchmark lands).
#include <cstdio>

#include "qblock/commands.h"

namespace qblock::tools {
int run_bench(int, char**) {
  std::fprintf(stderr, "qemu-img: not implemented yet\n");
  return 1;
}
}  // namespace qblock::tools
