// Text formatting and number parsing of `qblock io` (qemu-compat.md §1.2, §1.3(a), §2.8):
// cvtstr sizes, report times, hexdumps and the qemu-io number and pattern syntaxes.
// Pure functions, unit-tested in io_format_test.cc.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "qblock/error.h"

namespace qblock::tools {

// qemu-io's cvtstr (qemu-compat.md §1.3(a)): "1 KiB", "1.001 KiB", "512 bytes".
std::string cvtstr(double value);

// The elapsed-time text of a report line (§2.8.2). `fixed` selects the CSV form H:MM:SS.ss.
std::string timestr(double seconds, bool fixed);

// The two report lines (or the CSV line) of §2.8.1 / §2.8.4, newline-terminated.
std::string format_report(std::string_view verb, double seconds, uint64_t offset, uint64_t count,
                          uint64_t total, int ops, bool csv);

// Hexdump of `len` bytes labelled from `offset` (§2.8.5), newline-terminated lines.
std::string hexdump(const uint8_t* data, std::size_t len, uint64_t offset);

// qemu-io's cvtnum: qemu_strtosz. Errors: EINVAL (malformed) or ERANGE (too large).
Result<int64_t> parse_number(std::string_view text);

// The message qemu-io prints for a parse_number failure of `text` ("Parsing error: ...").
std::string number_error_text(const Error& error, std::string_view text);

// A -P pattern byte: strtol base 0, 0...255. Errors: EINVAL.
Result<uint8_t> parse_pattern(std::string_view text);

// A C integer with auto-detected base (sleep's argument). Errors: EINVAL.
Result<long> parse_c_long(std::string_view text);

}  // namespace qblock::tools
