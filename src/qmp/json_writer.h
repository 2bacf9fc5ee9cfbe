// QMP output: a JSON value written the way QEMU's monitor writes it, on one line with ", " and
// ": " separators, non-ASCII characters escaped as \uXXXX, and bytes that are not UTF-8 (which
// a hostile client can get echoed back in an "id" or a message) replaced rather than failing.
#pragma once

#include <string>

#include "qblock/block_node.h"

namespace qblock::qmp {

std::string to_qmp_text(const Options& value);

}  // namespace qblock::qmp
