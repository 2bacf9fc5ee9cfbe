// Option trees (qemu-compat.md §5): `json:{...}` filenames, `--image-opts` strings with dotted
// keys, and the size syntax of qemu_strtosz (qemu-compat.md §1.2).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "qblock/block_node.h"
#include "qblock/error.h"

namespace qblock {

// Parses the JSON object after "json:" (single-quoted strings allowed, as QEMU accepts) and
// expands dotted keys into nested objects. Errors: EINVAL with a message.
Result<Options> parse_json_options(std::string_view json_text);

// Parses "key=value,key2=value2" (",," is a literal comma). A first element without '='
// is the implied key `implied_key` (QEMU: "file", a node reference). Dotted keys nest.
Result<Options> parse_key_value_options(std::string_view text, std::string_view implied_key);

// Expands dotted keys ("file.filename") into nested objects, merging with existing ones.
// Errors: EINVAL when a key is both a value and an object.
Result<Options> unflatten_options(const Options& options);

// qemu_strtosz: "512", "0x10", "1k", "1.5M"... Errors: EINVAL for malformed text, ERANGE for
// values that do not fit in 63 bits... (message texts are the caller's).
Result<uint64_t> parse_size(std::string_view text);

// Renders a tree the way QEMU prints json: filenames: `{"driver": "raw", "file": {...}}`.
std::string options_to_json_filename(const Options& options);

}  // namespace qblock
