// Base64 decoding (see base64.h).
#include "crypto/base64.h"

namespace qblock::crypto {

namespace {

// The value of a base64 symbol; '=' counts as 0 (a padding symbol); -1 for anything else.
int rank(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  if (c == '=') return 0;
  return -1;
}

}  // namespace

Result<SecretBytes> base64_decode(std::string_view text) {
  for (char c : text) {
    if (rank(c) < 0 && c != '\n') {
      return fail(Error::with_message(EINVAL, "Base64 data contains invalid characters"));
    }
  }
  SecretBytes out(text.size() / 4 * 3 + 3);
  std::size_t n = 0;
  uint32_t v = 0;
  int have = 0;
  for (char c : text) {
    const int r = rank(c);
    if (r < 0) continue;
    v = (v << 6) | static_cast<uint32_t>(r);
    if (++have == 4) {
      out.data()[n++] = static_cast<uint8_t>(v >> 16);
      out.data()[n++] = static_cast<uint8_t>(v >> 8);
      out.data()[n++] = static_cast<uint8_t>(v);
      have = 0;
      v = 0;
    }
  }
  // Up to two trailing '=' among the last symbols drop one output byte each.
  int look = 2;
  for (std::size_t i = text.size(); i > 0 && look > 0; --i) {
    const char c = text[i - 1];
    if (rank(c) < 0) continue;
    if (c == '=' && n > 0) --n;
    --look;
  }
  out.truncate(n);
  return out;
}

}  // namespace qblock::crypto
