// The qblock library from the outside: create a qcow2 image, open it, write a pattern, read it
// back and print the image's map (which extents hold data, which read as zeros). Uses only the
// installed public headers. Usage: qblock_example IMAGE.qcow2 (the file is created).
#include <qblock/block_backend.h>
#include <qblock/chain_status.h>
#include <qblock/event_loop.h>
#include <qblock/image.h>
#include <qblock/messages.h>
#include <qblock/task.h>
#include <qblock/version.h>

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using qblock::Result;
using qblock::Status;
using qblock::Task;

constexpr uint64_t kImageSize = 64 << 20;
constexpr uint64_t kWriteOffset = 1 << 20;
constexpr std::size_t kWriteBytes = 64 << 10;

// Prints the image's map: one line per extent with the same status.
Task<Status> print_map(qblock::BlockBackend* backend) {
  std::printf("map:\n");
  qblock::BlockNode* top = &backend->root();
  const uint64_t length = backend->length();
  uint64_t offset = 0;
  while (offset < length) {
    Task<Result<qblock::ChainStatus>> ask =
        qblock::chain_status(top, offset, length - offset, qblock::ChainStatusQuery{});
    Result<qblock::ChainStatus> extent = co_await std::move(ask);
    if (!extent) co_return qblock::fail(extent.error());
    const uint32_t flags = extent->status.flags;
    const char* kind = flags & qblock::kStatusData ? "data" : "zero";
    std::printf("%12" PRIu64 " %12" PRIu64 " %s%s\n", offset, extent->status.bytes, kind,
                flags & qblock::kStatusAllocated ? " allocated" : "");
    offset += extent->status.bytes;
  }
  co_return qblock::ok();
}

Task<Status> run(qblock::EventLoop* loop, std::string path) {
  qblock::Qcow2CreateOptions create;
  create.filename = path;
  create.size = kImageSize;
  Task<Status> creating = qblock::create_qcow2_image(*loop, create);
  if (Status created = co_await std::move(creating); !created) co_return created;
  std::printf("created %" PRIu64 " byte qcow2 image\n", kImageSize);

  qblock::BackendOptions options;
  options.filename = path;
  options.format = "qcow2";
  Task<Result<std::unique_ptr<qblock::BlockBackend>>> opening =
      qblock::BlockBackend::open(*loop, std::move(options));
  Result<std::unique_ptr<qblock::BlockBackend>> backend = co_await std::move(opening);
  if (!backend) co_return qblock::fail(backend.error());

  std::vector<uint8_t> pattern(kWriteBytes, 0x5a);
  Status result =
      co_await (*backend)->write(kWriteOffset, qblock::IoVec(pattern.data(), kWriteBytes));
  if (result) result = co_await (*backend)->flush();
  if (result) std::printf("wrote %zu bytes at %" PRIu64 "\n", kWriteBytes, kWriteOffset);
  std::vector<uint8_t> back(kWriteBytes, 0);
  if (result)
    result = co_await (*backend)->read(kWriteOffset, qblock::IoVec(back.data(), kWriteBytes));
  if (result) std::printf("read back: %s\n", back == pattern ? "same bytes" : "DIFFERENT bytes");
  if (result) {
    Task<Status> map = print_map(backend->get());
    result = co_await std::move(map);
  }
  Status closed = co_await (*backend)->close();
  if (!result) co_return result;
  co_return closed;
}

// The library reports a few events itself (qcow2 corruption, check findings); an embedding
// program decides where they go.
void log_message(qblock::MessageLevel level, std::string_view text) {
  std::fprintf(stderr, "[qblock %s] %.*s\n", level == qblock::MessageLevel::kInfo ? "info" : "warn",
               static_cast<int>(text.size()), text.data());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s IMAGE.qcow2\n", argv[0]);
    return 2;
  }
  std::printf("qblock %s\n", QBLOCK_VERSION_STRING);
  qblock::set_message_sink(&log_message);
  Result<std::unique_ptr<qblock::EventLoop>> loop = qblock::EventLoop::create();
  if (!loop) {
    std::fprintf(stderr, "event loop: %s\n", loop.error().message().c_str());
    return 1;
  }
  Status done = qblock::run_sync(**loop, run(loop->get(), argv[1]));
  if (!done) {
    std::fprintf(stderr, "%s: %s\n", argv[1], done.error().message().c_str());
    return 1;
  }
  return 0;
}
