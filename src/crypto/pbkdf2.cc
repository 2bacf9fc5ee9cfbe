// PBKDF2 over nettle's generic HMAC (see pbkdf2.h).
#include "crypto/pbkdf2.h"

#include <nettle/hmac.h>
#include <nettle/nettle-meta.h>
#include <nettle/pbkdf2.h>
// nettle names its function through a macro that would rename ours.
#undef pbkdf2
#include <string.h>
#include <time.h>

#include <vector>

namespace qblock::crypto {

namespace {

// nettle's pbkdf2() drives a MAC through two plain function pointers; this binds nettle's
// generic HMAC (which also wants the hash description) to them.
struct GenericHmac {
  const nettle_hash* hash;
  std::vector<uint8_t> outer, inner, state;

  GenericHmac(const nettle_hash& h, const uint8_t* key, std::size_t key_len)
      : hash(&h), outer(h.context_size), inner(h.context_size), state(h.context_size) {
    hmac_set_key(outer.data(), inner.data(), state.data(), hash, key_len, key);
  }
  ~GenericHmac() {
    // The contexts hold the password's pads.
    explicit_bzero(outer.data(), outer.size());
    explicit_bzero(inner.data(), inner.size());
    explicit_bzero(state.data(), state.size());
  }
  static void update(void* ctx, std::size_t len, const uint8_t* data) {
    auto* self = static_cast<GenericHmac*>(ctx);
    hmac_update(self->state.data(), self->hash, len, data);
  }
  static void digest(void* ctx, std::size_t len, uint8_t* out) {
    auto* self = static_cast<GenericHmac*>(ctx);
    hmac_digest(self->outer.data(), self->inner.data(), self->state.data(), self->hash, len, out);
  }
};

uint64_t cpu_time_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

SecretBytes pbkdf2(HashAlg hash, const uint8_t* password, std::size_t password_len,
                   const uint8_t* salt, std::size_t salt_len, uint64_t iterations,
                   std::size_t out_len) {
  const nettle_hash& h = nettle_hash_of(hash);
  GenericHmac mac(h, password, password_len);
  SecretBytes out(out_len);
  nettle_pbkdf2(&mac, &GenericHmac::update, &GenericHmac::digest, h.digest_size,
                static_cast<unsigned>(iterations), salt_len, salt, out_len, out.data());
  return out;
}

uint64_t pbkdf2_iterations_per_second(HashAlg hash, std::size_t out_len) {
  const uint8_t password[] = "calibration";
  uint8_t salt[32] = {};
  uint64_t iterations = 1u << 8;
  uint64_t total_iters = 0, total_ns = 0;
  // Doubles the work until a run takes at least 10 ms, then sums runs up to 50 ms.
  while (total_ns < 50000000u) {
    const uint64_t start = cpu_time_ns();
    SecretBytes out =
        pbkdf2(hash, password, sizeof(password) - 1, salt, sizeof(salt), iterations, out_len);
    const uint64_t took = cpu_time_ns() - start;
    if (took >= 10000000u) {
      total_iters += iterations;
      total_ns += took;
    } else if (iterations < (1u << 30)) {
      iterations *= 2;
    }
  }
  return total_iters * 1000000000u / total_ns;
}

Result<uint32_t> scale_iterations(uint64_t per_second, uint64_t iter_time_ms) {
  if (iter_time_ms != 0 && per_second > UINT64_MAX / iter_time_ms) {
    return fail(Error::with_message(
        ERANGE, "PBKDF iterations " + std::to_string(per_second) + " too large to scale"));
  }
  const uint64_t n = per_second * iter_time_ms / 1000;
  if (n > UINT32_MAX) {
    return fail(Error::with_message(
        ERANGE, "PBKDF iterations " + std::to_string(per_second) + " too large to scale"));
  }
  return static_cast<uint32_t>(n);
}

}  // namespace qblock::crypto
