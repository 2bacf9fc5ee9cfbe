// `qblock io` (placeholder until the qemu-io command language lands).
#include <cstdio>

#include "qblock/commands.h"

namespace qblock::tools {
int run_io(int, char**) {
  std::fprintf(stderr, "qemu-io: not implemented yet\n");
  return 1;
}
}  // namespace qblock::tools
