// Helpers shared by `qblock convert` and `qblock measure`: the target's `-o` creation options
// (checked as QemuOpts does, mapped to the qcow2 creator) and the status of a source extent
// across its backing chain (qemu-compat.md §3.5, §3.7).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "qblock/block_node.h"
#include "qblock/error.h"
#include "qblock/image.h"
#include "qblock/luks_image.h"
#include "qblock/task.h"

namespace qblock::tools {

// Target formats convert and measure can produce.
bool is_target_format(std::string_view fmt);

// Validated `-o` values of a target, in command-line order (the last one of a key wins).
struct TargetOptions {
  std::vector<std::pair<std::string, std::string>> values;
  // The value of `key`, or nullptr when it was not given.
  const std::string* get(std::string_view key) const;
};

// Checks a `-o` list for format `fmt` the way QemuOpts does while parsing: unknown keys
// ("Invalid parameter 'foo'"), booleans, sizes (normalised to bytes) and numbers.
// REQUIRES: is_target_format(fmt) or fmt == "luks" (convert). Errors: EINVAL with qemu-img's text.
Result<TargetOptions> check_target_options(std::string_view fmt, std::string_view list);

// Maps checked luks options (`fmt` "luks" above) to the luks creator. Errors: EINVAL
// "invalid parameter value: V" for a preallocation mode the file cannot do.
Result<LuksImageOptions> to_luks_create_options(const TargetOptions& opts);

// Maps checked qcow2 options to the creator; compat accepts 0.10/v2/1.1/v3 as create does.
// Encryption and external data files are refused (ENOTSUP). Errors: EINVAL with qemu-img's
// "Parameter 'x' does not accept value 'y'" for bad enum values.
Result<Qcow2CreateOptions> to_create_options(const TargetOptions& opts);

// Status of a prefix of [offset, offset + bytes) of `top`. Unless `top_only`, layers below are
// asked for the parts `top` leaves unallocated, and an extent no layer defines is reported as
// kStatusZero without kStatusAllocated. With `top_only` an unallocated extent has neither
// kStatusData nor kStatusZero. REQUIRES: offset < top->length().
Task<Result<BlockStatus>> source_status(BlockNode* top, uint64_t offset, uint64_t bytes,
                                        bool top_only);

}  // namespace qblock::tools
