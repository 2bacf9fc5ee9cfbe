// Heap allocations on the data path: in steady state a request through a BlockBackend
// allocates nothing but its coroutine frames (IoVecs keep small segment lists inline, tracked
// requests live in the request's frame). The global operator new of the test binary counts.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <new>

#include "block/protocols/memory.h"
#include "block/test_util.h"
#include "qblock/block_backend.h"

namespace {
thread_local bool g_counting = false;
thread_local uint64_t g_allocations = 0;

void* counted_alloc(std::size_t size) {
  if (g_counting) ++g_allocations;
  void* p = std::malloc(size ? size : 1);
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(std::size_t size) { return counted_alloc(size); }
void* operator new[](std::size_t size) { return counted_alloc(size); }
// The nothrow forms too (std::stable_sort's buffer uses them): every block this binary frees
// must come from malloc.
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(size);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept {
  return operator new(size, tag);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace qblock {
namespace {

using testing::LoopTest;

// Heap blocks per request, split into coroutine frames and everything else.
struct PerRequest {
  double allocations;
  double frames;
};

class RequestAllocTest : public LoopTest {
 protected:
  void open_backend(const std::string& json) {
    BackendOptions options;
    options.filename = "json:" + json;
    auto blk = run_sync(*loop_, BlockBackend::open(*loop_, std::move(options)));
    ASSERT_OK(blk);
    blk_ = std::move(*blk);
  }
  void TearDown() override {
    if (blk_) EXPECT_OK(run_sync(*loop_, blk_->close()));
    blk_.reset();
  }
  MemoryNode& memory() { return static_cast<MemoryNode&>(*blk_->root().child(ChildRole::kFile)); }

  // Runs `rounds` requests of `segments` x 1 KiB (write or read) at rotating 4k offsets and
  // counts what they allocate. The memory node's log is cleared first so that its capacity,
  // grown by the warm-up, absorbs the measured requests.
  PerRequest measure(bool write, int segments, int rounds) {
    std::vector<uint8_t> buf(4096, 0x5a);
    IoVec qiov;
    for (int i = 0; i < segments; ++i) qiov.append(buf.data() + i * 1024, 1024);
    auto one = [&](int i) {
      const uint64_t offset = static_cast<uint64_t>(i % 64) * 4096;
      Status s = write ? run_sync(*loop_, blk_->write(offset, qiov))
                       : run_sync(*loop_, blk_->read(offset, qiov));
      EXPECT_OK(s);
    };
    for (int i = 0; i < rounds; ++i) one(i);  // warm-up
    if (blk_->root().child(ChildRole::kFile)->driver_name() == "memory") memory().clear_log();
    const uint64_t frames_before = task_frames_allocated();
    g_allocations = 0;
    g_counting = true;
    for (int i = 0; i < rounds; ++i) one(i);
    g_counting = false;
    const uint64_t frames = task_frames_allocated() - frames_before;
    return {static_cast<double>(g_allocations) / rounds, static_cast<double>(frames) / rounds};
  }
  void report(const char* what, PerRequest r) {
    std::printf("[ alloc    ] %s: %.2f heap blocks per request, %.2f of them coroutine frames\n",
                what, r.allocations, r.frames);
  }

  std::unique_ptr<BlockBackend> blk_;
};

constexpr const char* kRawOverMemory =
    R"({"driver":"raw","file":{"driver":"memory","size":1048576}})";

TEST_F(RequestAllocTest, WriteThroughRawToMemoryAllocatesOnlyFrames) {
  open_backend(kRawOverMemory);
  PerRequest r = measure(true, 1, 256);
  report("4k write, raw over memory", r);
  EXPECT_GT(r.frames, 0);
  EXPECT_EQ(r.allocations, r.frames);
}

TEST_F(RequestAllocTest, ReadThroughRawToMemoryAllocatesOnlyFrames) {
  open_backend(kRawOverMemory);
  PerRequest r = measure(false, 1, 256);
  report("4k read, raw over memory", r);
  EXPECT_EQ(r.allocations, r.frames);
}

TEST_F(RequestAllocTest, FourSegmentWriteStaysInline) {
  open_backend(kRawOverMemory);
  PerRequest r = measure(true, 4, 256);
  report("4 x 1k writev, raw over memory", r);
  EXPECT_EQ(r.allocations, r.frames);
}

TEST_F(RequestAllocTest, WriteThroughRawToFileAllocatesOnlyFrames) {
  testing::TempDir dir;
  const std::string path = dir.file("img");
  {
    std::FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
  }
  ASSERT_EQ(::truncate(path.c_str(), 1 << 20), 0);
  open_backend(R"({"driver":"raw","file":{"driver":"file","filename":")" + path + R"("}})");
  PerRequest r = measure(true, 1, 256);
  report("4k write, raw over file (io_uring)", r);
  EXPECT_EQ(r.allocations, r.frames);
}

}  // namespace
}  // namespace qblock
