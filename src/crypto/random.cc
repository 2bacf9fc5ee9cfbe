// Random bytes (see random.h).
#include "crypto/random.h"

#include <sys/random.h>

#include <cerrno>

namespace qblock::crypto {

Status random_bytes(uint8_t* buf, std::size_t len) {
  std::size_t done = 0;
  while (done < len) {
    const ssize_t n = ::getrandom(buf + done, len - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(Error::from_errno(errno, "getrandom"));
    }
    done += static_cast<std::size_t>(n);
  }
  return ok();
}

}  // namespace qblock::crypto
