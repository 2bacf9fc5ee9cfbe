// `qblock compare`: qemu-img compare (qemu-compat.md §3.6).
#include "qblock/commands.h"

namespace qblock::tools {

int run_compare(int, char**) { return 2; }

}  // namespace qblock::tools
