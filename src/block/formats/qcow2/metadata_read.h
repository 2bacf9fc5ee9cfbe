// Reading metadata that an image's header or tables point at, as QEMU reads it.
#pragma once

#include <cstdint>
#include <vector>

#include "block/driver.h"

namespace qblock::qcow2 {

// Fills `buf` from `offset` of `file`; the bytes past the end of the file read as zeros (QEMU's
// reads of a damaged pointer do not fail either). Errors: I/O.
Task<Status> read_zero_padded(BlockNode& file, uint64_t offset, std::vector<uint8_t>& buf);

}  // namespace qblock::qcow2
