// Sector encryption (see sector_crypto.h).
#include "crypto/sector_crypto.h"

#include <vector>

#include "base/check.h"
#include "qblock/driver/uring.h"

namespace qblock::crypto {

Result<std::unique_ptr<SectorCrypto>> SectorCrypto::create(const SectorCryptoSpec& spec,
                                                           const SecretBytes& master_key) {
  Result<std::unique_ptr<Cipher>> cipher =
      Cipher::create(spec.cipher, spec.mode, master_key.data(), master_key.size());
  if (!cipher) return fail(cipher.error());
  Result<std::unique_ptr<IvGen>> ivgen =
      IvGen::create(spec.ivgen, spec.cipher, spec.ivgen_hash, master_key.data(), master_key.size());
  if (!ivgen) return fail(ivgen.error());
  return std::unique_ptr<SectorCrypto>(
      new SectorCrypto(spec, std::move(*cipher), std::move(*ivgen)));
}

void SectorCrypto::crypt(bool encrypt, uint64_t sector, uint8_t* buf, std::size_t len) const {
  CHECK(len % kSectorSize == 0);
  uint8_t iv[16];
  const std::size_t iv_len = cipher_->iv_size();
  Cipher::Session session = cipher_->session();
  for (std::size_t off = 0; off < len; off += kSectorSize, ++sector) {
    ivgen_->compute(sector, iv, iv_len);
    if (encrypt) {
      session.encrypt(buf + off, kSectorSize, iv);
    } else {
      session.decrypt(buf + off, kSectorSize, iv);
    }
  }
}

void SectorCrypto::encrypt(uint64_t sector, uint8_t* buf, std::size_t len) const {
  crypt(true, sector, buf, len);
}

void SectorCrypto::decrypt(uint64_t sector, uint8_t* buf, std::size_t len) const {
  crypt(false, sector, buf, len);
}

namespace {

constexpr std::size_t kInlineMax = 4096;
constexpr std::size_t kMinPiece = 65536;
constexpr std::size_t kMaxPieces = 4;  // the loop's worker threads

void apply(const SectorCrypto& crypto, Direction direction, uint64_t sector, uint8_t* buf,
           std::size_t len) {
  if (direction == Direction::kEncrypt) {
    crypto.encrypt(sector, buf, len);
  } else {
    crypto.decrypt(sector, buf, len);
  }
}

Task<void> run_piece(EventLoop& loop, const SectorCrypto& crypto, Direction direction,
                     uint64_t sector, uint8_t* buf, std::size_t len) {
  auto job = [&crypto, direction, sector, buf, len]() {
    apply(crypto, direction, sector, buf, len);
    return 0;
  };
  auto op = uring::run_in_worker(loop, job);
  co_await op;
}

}  // namespace

Task<void> run_sector_crypto(EventLoop& loop, const SectorCrypto& crypto, Direction direction,
                             uint64_t sector, uint8_t* buf, std::size_t len) {
  CHECK(len % kSectorSize == 0);
  if (len <= kInlineMax) {
    apply(crypto, direction, sector, buf, len);
    co_return;
  }
  std::size_t pieces = std::min(kMaxPieces, std::max<std::size_t>(1, len / kMinPiece));
  std::size_t per_piece = (len / kSectorSize + pieces - 1) / pieces * kSectorSize;
  std::vector<Task<void>> jobs;
  for (std::size_t off = 0; off < len; off += per_piece) {
    const std::size_t n = std::min(per_piece, len - off);
    jobs.push_back(run_piece(loop, crypto, direction, sector + off / kSectorSize, buf + off, n));
  }
  co_await when_all(std::move(jobs));
}

}  // namespace qblock::crypto
