// Fuzz target for the qcow2 driver: the input is a qcow2 image of at most 1 MiB, held in memory
// by a protocol node of this file (the graph is qcow2 over that node, with a null backing node
// when the header names a backing file). Each input goes through what qemu-img and
// qemu-io do to an image: info, a read-only open with block status and reads, check, a
// read-write open with writes (misaligned too), write-zeroes, discard, a compressed write and
// a flush, check again, and check -r all on a fresh copy. Built as a libFuzzer target with
// -DQBLOCK_FUZZ=ON (clang); otherwise as `qcow2_image_fuzz FILE...`, which replays files (the
// seed corpus in fuzz/corpus/qcow2_image runs in `make test` that way).
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "qblock/block_backend.h"
#include "qblock/chain_status.h"
#include "qblock/driver/driver.h"
#include "qblock/event_loop.h"
#include "qblock/image.h"
#include "qblock/messages.h"

namespace {

using qblock::BlockBackend;
using qblock::BlockNode;
using qblock::Error;
using qblock::IoVec;
using qblock::NodePtr;
using qblock::Options;
using qblock::RequestFlag;
using qblock::RequestFlags;
using qblock::Result;
using qblock::Status;
using qblock::Task;

// Inputs above this are rejected (not run, not added to the corpus). A check's work grows
// with the number of table entries the file holds (every bogus one is reported, as
// qemu-img check reports it), so a larger file would also make a longer run.
constexpr std::size_t kMaxInputBytes = 1 << 20;
// The image file may grow to this much; beyond, writes fail with EFBIG as on a file system
// whose file size limit is reached (a real file would be sparse; memory is not).
constexpr uint64_t kMaxFileBytes = 128 << 20;
// Guest reads, writes and maps stay within the first kGuestWindow bytes of the disk (plus one
// small read at its end), so that one input touches a bounded amount of data.
constexpr uint64_t kGuestWindow = 4 << 20;
constexpr uint64_t kReadChunk = 256 << 10;
constexpr int kMaxStatusCalls = 64;
// The backing node (reading zeros, holding no memory) given to images whose header names a
// backing file.
constexpr uint64_t kBackingBytes = 8 << 20;

// The contents of the image file, owned by the caller so that they survive the node and the
// next open of the same image sees what the previous one wrote. The file is `length` bytes
// long; only a prefix is held in memory (`data`), the rest reads as zeros, as a sparse file
// does, so that growing the file costs nothing until it is written.
struct FileContents {
  std::vector<uint8_t> data;  // invariant: data.size() <= length
  uint64_t length = 0;

  void assign(const uint8_t* bytes, std::size_t size) {
    data.assign(bytes, bytes + size);
    length = size;
  }
};

// The image file's node. Reads past the end return zeros and writes past it extend the file,
// as with a file; discard punches a hole.
class ImageFile final : public BlockNode {
 public:
  ImageFile(qblock::EventLoop& loop, FileContents* file)
      : BlockNode(loop, "fuzz-image", qblock::NodeKind::kProtocol), file_(file) {
    supported_zero_flags_ = RequestFlag::kMayUnmap | RequestFlag::kNoFallback;
  }

  uint64_t length() const override { return file_->length; }

 protected:
  Task<Status> do_read(uint64_t offset, IoVec qiov, RequestFlags) override {
    const uint64_t held = file_->data.size();
    const uint64_t avail = offset < held ? std::min<uint64_t>(qiov.size(), held - offset) : 0;
    if (avail) qiov.copy_from(0, file_->data.data() + offset, avail);
    if (avail < qiov.size()) qiov.memset(avail, 0, qiov.size() - avail);
    co_return qblock::ok();
  }
  Task<Status> do_write(uint64_t offset, IoVec qiov, RequestFlags) override {
    const uint64_t end = offset + qiov.size();
    if (end > kMaxFileBytes) co_return qblock::fail(Error::from_errno(EFBIG));
    if (end > file_->data.size()) file_->data.resize(end, 0);
    qiov.copy_to(0, file_->data.data() + offset, qiov.size());
    file_->length = std::max(file_->length, end);
    co_return qblock::ok();
  }
  Task<Status> do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags) override {
    const uint64_t end = offset + bytes;
    if (end > kMaxFileBytes) co_return qblock::fail(Error::from_errno(EFBIG));
    zero_held(offset, bytes);
    file_->length = std::max(file_->length, end);
    co_return qblock::ok();
  }
  Task<Status> do_discard(uint64_t offset, uint64_t bytes) override {
    zero_held(offset, bytes);
    co_return qblock::ok();
  }
  Task<Status> do_truncate(uint64_t size, qblock::PreallocMode, qblock::Exact) override {
    if (size > kMaxFileBytes) co_return qblock::fail(Error::from_errno(EFBIG));
    if (size < file_->data.size()) file_->data.resize(size);
    file_->length = size;
    co_return qblock::ok();
  }

 private:
  // Zeros what is held of [offset, offset + bytes); the rest reads as zeros already.
  void zero_held(uint64_t offset, uint64_t bytes) {
    const uint64_t held = file_->data.size();
    if (offset >= held) return;
    std::fill_n(file_->data.begin() + static_cast<std::ptrdiff_t>(offset),
                std::min(bytes, held - offset), 0);
  }

  FileContents* file_;
};

// The file the next "fuzz-image" node opens on. Set around each open.
FileContents* g_image = nullptr;

Task<Result<NodePtr>> open_image_file(qblock::OpenContext& ctx, Options&) {
  if (!g_image) co_return qblock::fail(Error::invalid("no fuzz image"));
  co_return NodePtr(std::make_unique<ImageFile>(ctx.loop, g_image));
}

// One per process. The buffers keep their capacity from input to input: fresh ones would
// cost page faults on every input (the sanitizers do not hand freed memory back at once).
struct Fixture {
  std::unique_ptr<qblock::EventLoop> loop;
  bool verbose = false;
  FileContents image;        // the image file of the current input
  std::vector<uint8_t> buf;  // guest data read and written
};

Fixture& fixture() {
  static Fixture* f = [] {
    auto* fx = new Fixture;
    fx->loop = std::move(*qblock::EventLoop::create());
    Status registered = qblock::register_driver(
        {"fuzz-image", qblock::NodeKind::kProtocol, open_image_file, nullptr, false});
    if (!registered) std::abort();
    // Corruption events and check findings would be printed for every input: they are
    // dropped (and not even formatted) unless QBLOCK_FUZZ_VERBOSE is set, to see what a
    // reproducer does.
    fx->verbose = std::getenv("QBLOCK_FUZZ_VERBOSE") != nullptr;
    if (!fx->verbose) (void)qblock::discard_messages();
    return fx;
  }();
  return *f;
}

// How an input's image is opened; the variations are taken from the input's length, so that
// one input always runs the same way.
struct Variant {
  bool backing = false;         // the header names a backing file: give it a null node
  bool small_l2_cache = false;  // l2-cache-size below the disk's needs: 4 KiB L2 slices
  bool zero_cow = true;
};

Variant variant_of(const uint8_t* data, std::size_t size) {
  Variant v;
  // qcow2-format.md §2: backing_file_offset (8 bytes at 8) and backing_file_size (4 at 16).
  if (size >= 20) {
    uint64_t offset = 0;
    for (int i = 8; i < 16; ++i) offset = offset << 8 | data[i];
    v.backing = offset != 0;
  }
  v.small_l2_cache = size % 3 == 0;
  v.zero_cow = size % 2 == 0;
  return v;
}

qblock::BackendOptions backend_options(const Variant& v, bool read_only, bool check) {
  qblock::BackendOptions options;
  options.format = "qcow2";
  options.tree = Options::object();
  options.tree["file"] = Options::object();
  options.tree["file"]["driver"] = "fuzz-image";
  if (v.backing) {
    options.tree["backing"] = Options::object();
    options.tree["backing"]["driver"] = "null-co";
    options.tree["backing"]["size"] = kBackingBytes;
    options.tree["backing"]["read-zeroes"] = true;
  } else {
    options.tree["backing"] = nullptr;
  }
  if (v.small_l2_cache) options.tree["l2-cache-size"] = 65536;
  options.tree["zero-cow"] = v.zero_cow ? "on" : "off";
  options.flags.read_only = read_only;
  options.flags.check = check;
  return options;
}

Task<Result<std::unique_ptr<BlockBackend>>> open_backend(qblock::EventLoop* loop,
                                                         FileContents* image, Variant v,
                                                         bool read_only, bool check) {
  g_image = image;
  Task<Result<std::unique_ptr<BlockBackend>>> open =
      BlockBackend::open(*loop, backend_options(v, read_only, check));
  Result<std::unique_ptr<BlockBackend>> backend = co_await std::move(open);
  g_image = nullptr;
  co_return backend;
}

// qemu-img info: the metadata alone, from the file node.
Task<void> describe(qblock::EventLoop* loop, FileContents* image) {
  ImageFile file(*loop, image);
  Task<Result<qblock::ImageInfo>> info = qblock::read_image_info(file, "");
  Result<qblock::ImageInfo> described = co_await std::move(info);
  (void)described;
  Status closed = co_await file.close();
  (void)closed;
}

// qemu-img map (block status through the chain) and qemu-io's map, then reads over the
// window and at the end of the disk.
Task<void> read_only_pass(BlockBackend* backend, std::vector<uint8_t>* buffer) {
  BlockNode& root = backend->root();
  const qblock::NodeInfo info = root.info();
  (void)info;
  const uint64_t length = backend->length();
  qblock::ChainStatusQuery query;
  uint64_t offset = 0;
  for (int i = 0; i < kMaxStatusCalls && offset < length; ++i) {
    Task<Result<qblock::ChainStatus>> ask =
        qblock::chain_status(&root, offset, length - offset, query);
    Result<qblock::ChainStatus> st = co_await std::move(ask);
    if (!st || st->status.bytes == 0) break;
    offset += st->status.bytes;
  }
  const uint64_t window = std::min(length, kGuestWindow);
  offset = 0;
  for (int i = 0; i < kMaxStatusCalls && offset < window; ++i) {
    Task<Result<std::pair<bool, uint64_t>>> ask = root.is_allocated(offset, window - offset);
    Result<std::pair<bool, uint64_t>> allocated = co_await std::move(ask);
    if (!allocated || allocated->second == 0) break;
    offset += allocated->second;
  }
  std::vector<uint8_t>& buf = *buffer;
  buf.resize(kReadChunk);
  for (uint64_t at = 0; at < window; at += kReadChunk) {
    const uint64_t n = std::min(kReadChunk, window - at);
    Task<Status> request = backend->read(at, IoVec(buf.data(), n));
    Status read = co_await std::move(request);
    if (!read) break;
  }
  if (length >= 4096) {
    // The disk's last bytes (often a partial cluster of its last L2 table), and a read that
    // is not sector-aligned.
    Task<Status> request = backend->read(length - 4096, IoVec(buf.data(), 4096));
    (void)co_await std::move(request);
  }
  if (window > 70000) {
    Task<Status> request = backend->read(1000, IoVec(buf.data(), 69000));
    (void)co_await std::move(request);
  }
}

// qemu-io writes of each kind, confined to the window; failures are expected on damaged
// images and change nothing about what comes next.
Task<void> write_pass(BlockBackend* backend, std::vector<uint8_t>* buffer) {
  const uint64_t length = backend->length();
  const uint64_t window = std::min(length, kGuestWindow);
  const uint64_t cluster = std::max<uint64_t>(backend->root().info().cluster_size, 512);
  std::vector<uint8_t>& buf = *buffer;
  buf.assign(std::max<uint64_t>(cluster, 65536), 0xa5);
  auto fits = [window](uint64_t offset, uint64_t bytes) {
    return bytes > 0 && offset < window && bytes <= window - offset;
  };
  if (fits(0, 65536)) {
    Task<Status> request = backend->write(0, IoVec(buf.data(), 65536));
    (void)co_await std::move(request);
  }
  if (fits(65536 + 3333, 5000)) {
    // Neither sector- nor cluster-aligned: a read-modify-write and COW at both ends.
    Task<Status> request = backend->write(65536 + 3333, IoVec(buf.data(), 5000));
    (void)co_await std::move(request);
  }
  if (window > 700 && fits(window - 700, 512)) {
    Task<Status> request = backend->write(window - 700, IoVec(buf.data(), 512));
    (void)co_await std::move(request);
  }
  if (fits(3 * cluster, cluster)) {
    Task<Status> request =
        backend->write(3 * cluster, IoVec(buf.data(), cluster), RequestFlag::kWriteCompressed);
    (void)co_await std::move(request);
  }
  if (fits(128 << 10, 192 << 10)) {
    Task<Status> request = backend->write_zeroes(128 << 10, 192 << 10, RequestFlag::kMayUnmap);
    (void)co_await std::move(request);
  }
  if (fits(1000, 70000)) {
    Task<Status> request = backend->write_zeroes(1000, 70000);
    (void)co_await std::move(request);
  }
  if (fits(256 << 10, 128 << 10)) {
    Task<Status> request = backend->discard(256 << 10, 128 << 10);
    (void)co_await std::move(request);
  }
  if (fits(0, 8192)) {
    Task<Status> request = backend->read(0, IoVec(buf.data(), 8192));
    (void)co_await std::move(request);
  }
  Task<Status> flush = backend->flush();
  (void)co_await std::move(flush);
}

// qemu-img check (repair 0) or check -r (and the double check after a repair that fixed
// something, as qemu-img does).
Task<void> check_pass(BlockBackend* backend, unsigned repair) {
  Task<Result<qblock::CheckResult>> check = qblock::check_image(backend->root(), repair);
  Result<qblock::CheckResult> r = co_await std::move(check);
  if (repair && r && (r->corruptions_fixed || r->leaks_fixed)) {
    Task<Result<qblock::CheckResult>> again = qblock::check_image(backend->root(), 0);
    Result<qblock::CheckResult> checked = co_await std::move(again);
    (void)checked;
  }
}

enum class Pass { kRead, kWrite, kCheck, kRepair };

// Opens `image` as the pass needs, runs it and closes the image.
Task<void> run_pass(qblock::EventLoop* loop, FileContents* image, Variant v, Pass pass) {
  const bool read_only = pass == Pass::kRead || pass == Pass::kCheck;
  const bool check = pass == Pass::kCheck || pass == Pass::kRepair;
  Task<Result<std::unique_ptr<BlockBackend>>> open = open_backend(loop, image, v, read_only, check);
  Result<std::unique_ptr<BlockBackend>> backend = co_await std::move(open);
  if (!backend) {
    if (fixture().verbose) {
      std::fprintf(stderr, "qcow2_image_fuzz: pass %d: %s\n", static_cast<int>(pass),
                   backend.error().message().c_str());
    }
    co_return;
  }
  switch (pass) {
    case Pass::kRead: {
      Task<void> run = read_only_pass(backend->get(), &fixture().buf);
      co_await std::move(run);
      break;
    }
    case Pass::kWrite: {
      Task<void> run = write_pass(backend->get(), &fixture().buf);
      co_await std::move(run);
      break;
    }
    case Pass::kCheck: {
      Task<void> run = check_pass(backend->get(), 0);
      co_await std::move(run);
      break;
    }
    case Pass::kRepair: {
      Task<void> run = check_pass(backend->get(), qblock::kRepairLeaks | qblock::kRepairErrors);
      co_await std::move(run);
      break;
    }
  }
  Status closed = co_await (*backend)->close();
  (void)closed;
}

void run(Fixture& fx, FileContents* image, Variant v, Pass pass) {
  const auto start = std::chrono::steady_clock::now();
  qblock::run_sync(*fx.loop, run_pass(fx.loop.get(), image, v, pass));
  while (fx.loop->in_flight() > 0) fx.loop->run_once(true);
  if (fx.verbose) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    std::fprintf(stderr, "qcow2_image_fuzz: pass %d took %lld ms\n", static_cast<int>(pass),
                 static_cast<long long>(ms.count()));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size > kMaxInputBytes) return -1;
  Fixture& fx = fixture();
  const Variant v = variant_of(data, size);
  FileContents& image = fx.image;
  image.assign(data, size);
  qblock::run_sync(*fx.loop, describe(fx.loop.get(), &image));
  run(fx, &image, v, Pass::kRead);
  run(fx, &image, v, Pass::kCheck);
  run(fx, &image, v, Pass::kWrite);
  run(fx, &image, v, Pass::kCheck);
  // check -r all on the image as it came, not as the writes left it.
  image.assign(data, size);
  run(fx, &image, v, Pass::kRepair);
  return 0;
}

#ifndef QBLOCK_LIBFUZZER
int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "qcow2_image_fuzz: cannot read %s\n", argv[i]);
      return 1;
    }
    const std::vector<uint8_t> input((std::istreambuf_iterator<char>(in)),
                                     std::istreambuf_iterator<char>());
    if (fixture().verbose) std::fprintf(stderr, "qcow2_image_fuzz: %s\n", argv[i]);
    LLVMFuzzerTestOneInput(input.data(), input.size());
  }
  std::printf("qcow2_image_fuzz: %d inputs replayed\n", argc - 1);
  return 0;
}
#endif
