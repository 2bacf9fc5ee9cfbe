// Fuzz target for the NBD server's handshake and request parser: the input is what a client
// sends, fed to Server::serve() through an in-memory stream in pieces whose sizes come from
// the input itself; the export is a 1 MiB raw image in memory. Built as a libFuzzer target
// with -DQBLOCK_FUZZ=ON (clang); otherwise as `nbd_server_fuzz FILE...`, which replays files
// (the seed corpus in fuzz/corpus/nbd_server runs in `make test` that way).
#include <sys/uio.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <span>
#include <vector>

#include "nbd/server.h"
#include "nbd/stream.h"
#include "qblock/block_backend.h"
#include "qblock/event_loop.h"

namespace {

using qblock::Result;
using qblock::Status;
using qblock::Task;

// Serves the input in pieces of 1..256 bytes (the piece sizes are taken from a simple
// generator seeded by the input length, so one input always splits the same way) and then
// reports the end of the connection. Replies are copied out and dropped, so that a bad iovec
// is caught by the sanitizers; for every third input length the peer stops taking replies
// after a few hundred bytes (EPIPE), as a client that goes away mid-reply does.
class MemoryStream final : public qblock::nbd::Stream {
 public:
  MemoryStream(const uint8_t* data, std::size_t size)
      : data_(data),
        size_(size),
        seed_(size),
        reply_budget_(size % 3 == 0 ? size * 13 % 2048 : SIZE_MAX) {}

  Task<Result<std::size_t>> read_some(void* buf, std::size_t len) override {
    if (pos_ >= size_ || shut_down_) co_return std::size_t{0};
    seed_ = seed_ * 1103515245 + 12345;
    const std::size_t piece = 1 + (seed_ >> 16) % 256;
    const std::size_t n = std::min({len, piece, size_ - pos_});
    std::memcpy(buf, data_ + pos_, n);
    pos_ += n;
    co_return n;
  }
  Task<Status> write_all(std::span<const iovec> iov) override {
    for (const iovec& v : iov) {
      if (v.iov_len > reply_budget_) {
        co_return tl::unexpected(qblock::Error::from_errno(EPIPE, "send"));
      }
      reply_budget_ -= v.iov_len;
      sink_.resize(v.iov_len);
      std::memcpy(sink_.data(), v.iov_base, v.iov_len);
    }
    co_return Status{};
  }
  void shutdown() override { shut_down_ = true; }
  int fd() const override { return -1; }

 private:
  const uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
  uint64_t seed_;
  std::size_t reply_budget_;
  bool shut_down_ = false;
  std::vector<uint8_t> sink_;
};

Task<Result<std::unique_ptr<qblock::BlockBackend>>> open_export(qblock::EventLoop& loop) {
  qblock::BackendOptions options;
  options.format = "raw";
  options.tree = qblock::Options::parse(
      R"({"file":{"driver":"memory","size":1048576,"efficient-zeroes":true}})");
  co_return co_await qblock::BlockBackend::open(loop, std::move(options));
}

struct Fixture {
  std::unique_ptr<qblock::EventLoop> loop;
  std::unique_ptr<qblock::BlockBackend> backend;
};

Fixture& fixture() {
  static Fixture* f = [] {
    auto* fx = new Fixture;
    fx->loop = std::move(*qblock::EventLoop::create());
    fx->backend = std::move(*qblock::run_sync(*fx->loop, open_export(*fx->loop)));
    return fx;
  }();
  return *f;
}

Task<void> serve_one(qblock::nbd::Server& server, const uint8_t* data, std::size_t size) {
  co_await server.serve(std::make_unique<MemoryStream>(data, size));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  Fixture& fx = fixture();
  qblock::nbd::ExportOptions options;
  options.name = "fuzz";
  options.description = "fuzzed export";
  options.detect_zeroes = qblock::nbd::DetectZeroes::kUnmap;
  options.discard_unmap = true;
  qblock::nbd::Server server(*fx.backend, options);
  qblock::run_sync(*fx.loop, serve_one(server, data, size));
  // Requests still running on the image finish before the next input.
  while (fx.loop->in_flight() > 0) fx.loop->run_once(true);
  return 0;
}

#ifndef QBLOCK_LIBFUZZER
int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "nbd_server_fuzz: cannot read %s\n", argv[i]);
      return 1;
    }
    const std::vector<uint8_t> input((std::istreambuf_iterator<char>(in)),
                                     std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(input.data(), input.size());
  }
  std::printf("nbd_server_fuzz: %d inputs replayed\n", argc - 1);
  return 0;
}
#endif
