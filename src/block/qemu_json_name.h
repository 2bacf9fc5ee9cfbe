// json: filenames the way QEMU 7.2 prints them (`qemu-img info`'s "image:" line): QEMU's
// dictionaries iterate their keys by bucket (its tdb hash of the key, modulo 512), so the key
// order of a json: name is that order, not the order the options were given in; lists keep
// their order; separators are ", " and ": ".
#pragma once

#include <string>

#include "qblock/block_node.h"

namespace qblock {

// "json:" followed by `options` with every object's keys in QEMU's order.
std::string qemu_json_filename(const Options& options);

}  // namespace qblock
