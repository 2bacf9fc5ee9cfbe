// Random bytes for keys, salts and UUIDs, from the kernel's generator (getrandom(2)).
#pragma once

#include <cstddef>
#include <cstdint>

#include "qblock/error.h"

namespace qblock::crypto {

// Fills buf[0, len). Errors: EIO with the system's reason.
Status random_bytes(uint8_t* buf, std::size_t len);

}  // namespace qblock::crypto
