// `qblock info`: placeholder, replaced below.
#include "qblock/commands.h"
namespace qblock::tools {
int run_info(int, char**) { return 1; }
}  // namespace qblock::tools
