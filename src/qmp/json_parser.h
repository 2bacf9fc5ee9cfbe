// The JSON dialect of QMP (docs/interop/qmp-spec.rst, QEMU's JSON parser as observed): RFC 8259
// plus single-quoted strings and the "\'" escape, parsed into the Options tree (nlohmann's
// ordered_json) with the error texts qemu-storage-daemon 7.2 sends back. The monitor's input
// framing (json_stream.h) hands it one complete top-level value at a time.
#pragma once

#include <cstddef>
#include <string_view>

#include "qblock/block_node.h"
#include "qblock/error.h"

namespace qblock::qmp {

// Deepest nesting of arrays and objects accepted (QEMU's limit).
inline constexpr std::size_t kMaxJsonNesting = 1024;

// Parses `text`, one JSON value optionally surrounded by white space. Errors (EINVAL, verbatim
// message): "JSON parse error, expecting value", "JSON parse error, missing : in object pair",
// "JSON parse error, key is not a string in object", "JSON parse error, invalid escape
// sequence in string", "JSON parse error, invalid keyword 'tru'", "JSON nesting depth limit
// exceeded", and "JSON parse error, stray '<c>'" for a character that cannot start a token.
[[nodiscard]] Result<Options> parse_qmp_json(std::string_view text);

}  // namespace qblock::qmp
