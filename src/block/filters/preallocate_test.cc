// preallocate filter tests (block-semantics.md §7): the requests it sends ahead of EOF, the
// data end it reports, dropped write-zeroes, truncate and close, the fallback when the file
// cannot zero efficiently, option validation, and qcow2 images written through it that
// QEMU's tools accept.
#include "block/filters/preallocate.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include "block/protocols/memory.h"
#include "block/test_util.h"
#include "qblock/options.h"

namespace qblock {
namespace {

using testing::LoopTest;
using testing::TempDir;
using Kind = RecordedRequest::Kind;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * 1024;

Task<void> store_status(Task<Status> task, Status* out, bool* done) {
  *out = co_await std::move(task);
  *done = true;
}

// preallocate(extra) -> memory(memory_extra).
std::string graph(const std::string& prealloc_extra, const std::string& memory_extra) {
  return R"({"driver":"preallocate",)" + prealloc_extra + R"("file":{"driver":"memory")" +
         memory_extra + "}}";
}

// Small sizes keep the memory node small: preallocate 2 MiB ahead, in 1 MiB units.
const char kSmall[] = R"("prealloc-size":"2M","prealloc-align":"1M",)";
const char kEfficient1M[] = R"(,"size":1048576,"efficient-zeroes":true)";

uint64_t file_size(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return static_cast<uint64_t>(st.st_size);
}

bool have_qemu_tools() {
  return std::system("qemu-img --version >/dev/null 2>&1 && qemu-io --version >/dev/null 2>&1") ==
         0;
}

class PreallocateTest : public LoopTest {
 protected:
  Result<NodePtr> try_open(const std::string& json, OpenFlags flags = {}) {
    Result<Options> o = parse_json_options(json);
    if (!o) return fail(o.error());
    return run_sync(*loop_, open_node(*loop_, std::move(*o), flags, ""));
  }
  Status write(BlockNode& n, uint64_t offset, uint64_t len, uint8_t byte = 0xab) {
    std::vector<uint8_t> buf(len, byte);
    return run_sync(*loop_, n.write(offset, IoVec(buf.data(), len)));
  }
  Status zeroes(BlockNode& n, uint64_t offset, uint64_t len, RequestFlags flags = {}) {
    return run_sync(*loop_, n.write_zeroes(offset, len, flags));
  }
  std::vector<uint8_t> read(BlockNode& n, uint64_t offset, uint64_t len) {
    std::vector<uint8_t> buf(len, 0x5a);
    EXPECT_OK(run_sync(*loop_, n.read(offset, IoVec(buf.data(), len))));
    return buf;
  }
  static PreallocateFilter& filter(BlockNode& root) {
    return static_cast<PreallocateFilter&>(root);
  }
  static MemoryNode& memory(BlockNode& root) {
    return static_cast<MemoryNode&>(*root.primary_child());
  }
  template <typename F>
  bool run_until(F cond) {
    for (int i = 0; i < 1000 && !cond(); ++i) loop_->run_once(false);
    return cond();
  }
  std::string open_error(const std::string& json) {
    Result<NodePtr> node = try_open(json);
    if (node) {
      close(**node);
      return "(opened)";
    }
    return node.error().message();
  }
};

// ---- the requests sent ahead of EOF ------------------------------------------------------

TEST_F(PreallocateTest, DefaultsAreQemus) {
  NodePtr root = open(graph("", R"(,"efficient-zeroes":true)"));
  ASSERT_TRUE(root);
  EXPECT_EQ(root->driver_name(), "preallocate");
  EXPECT_EQ(root->kind(), NodeKind::kFilter);
  EXPECT_EQ(filter(*root).settings().prealloc_align, 1 * kMiB);
  EXPECT_EQ(filter(*root).settings().prealloc_size, 128 * kMiB);
  EXPECT_EQ(root->info().format_name, "preallocate");
  EXPECT_EQ(root->info().cluster_size, 0u);
  close(*root);
}

TEST_F(PreallocateTest, FirstWritePastEofZeroesDefaultSizeAheadThenCloseCutsBack) {
  NodePtr root = open(graph("", R"(,"efficient-zeroes":true)"));
  ASSERT_TRUE(root);
  ASSERT_OK(write(*root, 0, 4 * kKiB));
  // One ALLOCATE write-zeroes from the file end (0) to align_up(4k + 128M, 1M) = 129M, then
  // the data. The memory node sees the flags its zeroes path honours: NO_FALLBACK (the
  // request layer consumed SERIALISING|NO_WAIT).
  const std::vector<RecordedRequest> want = {
      {Kind::kWriteZeroes, 0, 129 * kMiB, RequestFlag::kNoFallback},
      {Kind::kWrite, 0, 4 * kKiB, {}},
  };
  EXPECT_EQ(memory(*root).log(), want);
  EXPECT_EQ(root->length(), 4 * kKiB);
  EXPECT_EQ(memory(*root).length(), 129 * kMiB);
  EXPECT_EQ(filter(*root).file_end(), static_cast<int64_t>(129 * kMiB));
  memory(*root).clear_log();
  close(*root);
  const std::vector<RecordedRequest> cut = {{Kind::kTruncate, 4 * kKiB, 0, {}}};
  EXPECT_EQ(memory(*root).log(), cut);
  EXPECT_EQ(memory(*root).length(), 4 * kKiB);
}

TEST_F(PreallocateTest, PreallocatesAgainOnlyPastThePreallocatedEnd) {
  NodePtr root = open(graph(kSmall, kEfficient1M));
  ASSERT_TRUE(root);
  EXPECT_EQ(root->length(), 1 * kMiB);
  ASSERT_OK(write(*root, 1 * kMiB, 4 * kKiB));
  // [1M, align_up(1M + 4k + 2M, 1M) = 4M).
  std::vector<RecordedRequest> want = {
      {Kind::kWriteZeroes, 1 * kMiB, 3 * kMiB, RequestFlag::kNoFallback},
      {Kind::kWrite, 1 * kMiB, 4 * kKiB, {}},
  };
  EXPECT_EQ(memory(*root).log(), want);
  EXPECT_EQ(root->length(), 1 * kMiB + 4 * kKiB);

  // Inside the preallocated area: no more zeroing.
  memory(*root).clear_log();
  ASSERT_OK(write(*root, 3 * kMiB, 64 * kKiB));
  want = {{Kind::kWrite, 3 * kMiB, 64 * kKiB, {}}};
  EXPECT_EQ(memory(*root).log(), want);
  EXPECT_EQ(root->length(), 3 * kMiB + 64 * kKiB);

  // Crossing the preallocated end: zero from 4M to align_up(4M + 2k + 2M, 1M) = 7M.
  memory(*root).clear_log();
  ASSERT_OK(write(*root, 4 * kMiB - 2 * kKiB, 4 * kKiB));
  want = {{Kind::kWriteZeroes, 4 * kMiB, 3 * kMiB, RequestFlag::kNoFallback},
          {Kind::kWrite, 4 * kMiB - 2 * kKiB, 4 * kKiB, {}}};
  EXPECT_EQ(memory(*root).log(), want);
  EXPECT_EQ(root->length(), 4 * kMiB + 2 * kKiB);
  EXPECT_EQ(memory(*root).length(), 7 * kMiB);

  // Writes below the data end change nothing.
  memory(*root).clear_log();
  ASSERT_OK(write(*root, 0, 4 * kKiB));
  want = {{Kind::kWrite, 0, 4 * kKiB, {}}};
  EXPECT_EQ(memory(*root).log(), want);
  EXPECT_EQ(root->length(), 4 * kMiB + 2 * kKiB);
  close(*root);
  EXPECT_EQ(memory(*root).length(), 4 * kMiB + 2 * kKiB);
}

TEST_F(PreallocateTest, AlignAndSizeOptionsShapeThePreallocation) {
  // iotest 298: prealloc-size=20M, prealloc-align=5M, write 0 1M -> exactly 25 MiB.
  NodePtr root =
      open(graph(R"("prealloc-size":"20M","prealloc-align":"5M",)", R"(,"efficient-zeroes":true)"));
  ASSERT_TRUE(root);
  ASSERT_OK(write(*root, 0, 1 * kMiB));
  EXPECT_EQ(memory(*root).length(), 25 * kMiB);
  EXPECT_EQ(root->length(), 1 * kMiB);
  close(*root);
  EXPECT_EQ(memory(*root).length(), 1 * kMiB);
}

TEST_F(PreallocateTest, ReadsAndBlockStatusEndAtTheDataEnd) {
  NodePtr root = open(graph(kSmall, kEfficient1M));
  ASSERT_TRUE(root);
  ASSERT_OK(write(*root, 1 * kMiB, 4 * kKiB, 0x11));
  const uint64_t end = 1 * kMiB + 4 * kKiB;
  ASSERT_EQ(root->length(), end);
  EXPECT_EQ(read(*root, 1 * kMiB, 4 * kKiB), std::vector<uint8_t>(4 * kKiB, 0x11));
  // Past the data end reads as zero, as past the end of a file.
  EXPECT_EQ(read(*root, end, 8 * kKiB), std::vector<uint8_t>(8 * kKiB, 0));
  Result<BlockStatus> st = run_sync(*loop_, root->block_status(end, 4 * kKiB, WantZero::kYes));
  ASSERT_OK(st);
  EXPECT_EQ(st->flags, kStatusEof);
  st = run_sync(*loop_, root->block_status(1 * kMiB, 1 * kMiB, WantZero::kYes));
  ASSERT_OK(st);
  EXPECT_EQ(st->bytes, 4 * kKiB);  // clamped to the data end, not the file's 4 MiB
  close(*root);
}

// ---- write-zeroes merging ----------------------------------------------------------------

TEST_F(PreallocateTest, ZeroWritesIntoThePreallocatedAreaAreDropped) {
  NodePtr root = open(graph(kSmall, kEfficient1M));
  ASSERT_TRUE(root);
  ASSERT_OK(write(*root, 1 * kMiB, 4 * kKiB));
  memory(*root).clear_log();

  // Beyond the data end, inside [zero_start, file_end): dropped, the data end still moves.
  ASSERT_OK(zeroes(*root, 1 * kMiB + 64 * kKiB, 64 * kKiB));
  ASSERT_OK(zeroes(*root, 2 * kMiB, 64 * kKiB, RequestFlag::kNoFallback));
  EXPECT_TRUE(memory(*root).log().empty());
  EXPECT_EQ(root->length(), 2 * kMiB + 64 * kKiB);

  // Not dropped: MAY_UNMAP asks for more than "reads as zero"; below the data end QEMU does
  // not merge either.
  ASSERT_OK(zeroes(*root, 3 * kMiB, 64 * kKiB, RequestFlag::kMayUnmap));
  ASSERT_OK(zeroes(*root, 1 * kMiB + 64 * kKiB, 4 * kKiB));
  const std::vector<RecordedRequest> want = {
      {Kind::kWriteZeroes, 3 * kMiB, 64 * kKiB, RequestFlag::kMayUnmap},
      {Kind::kWriteZeroes, 1 * kMiB + 64 * kKiB, 4 * kKiB, {}},
  };
  EXPECT_EQ(memory(*root).log(), want);
  EXPECT_EQ(root->length(), 3 * kMiB + 64 * kKiB);
  close(*root);
  EXPECT_EQ(memory(*root).length(), 3 * kMiB + 64 * kKiB);
}

TEST_F(PreallocateTest, ZeroWritePastThePreallocatedEndPreallocatesAndIsDropped) {
  NodePtr root = open(graph(kSmall, kEfficient1M));
  ASSERT_TRUE(root);
  ASSERT_OK(zeroes(*root, 1 * kMiB, 64 * kKiB));
  // The ALLOCATE request covers the zeroes: nothing else is sent.
  const std::vector<RecordedRequest> want = {
      {Kind::kWriteZeroes, 1 * kMiB, 3 * kMiB, RequestFlag::kNoFallback},
  };
  EXPECT_EQ(memory(*root).log(), want);
  EXPECT_EQ(root->length(), 1 * kMiB + 64 * kKiB);
  close(*root);
}

TEST_F(PreallocateTest, NeverDropsZeroWritesOverData) {
  NodePtr root = open(graph(kSmall, kEfficient1M));
  ASSERT_TRUE(root);
  ASSERT_OK(write(*root, 1 * kMiB, 4 * kKiB));
  ASSERT_OK(zeroes(*root, 1 * kMiB + 4 * kKiB, 1 * kMiB));  // merged: data end 2M + 4k
  // Data below the data end but inside the merged area...
  ASSERT_OK(write(*root, 1 * kMiB + 4 * kKiB, 4 * kKiB, 0x77));
  memory(*root).clear_log();
  // ...so a write-zeroes over it that extends the data must reach the file.
  ASSERT_OK(zeroes(*root, 1 * kMiB + 4 * kKiB, 2 * kMiB));
  const std::vector<RecordedRequest> want = {
      {Kind::kWriteZeroes, 1 * kMiB + 4 * kKiB, 2 * kMiB, {}},
  };
  EXPECT_EQ(memory(*root).log(), want);
  EXPECT_EQ(read(*root, 1 * kMiB + 4 * kKiB, 4 * kKiB), std::vector<uint8_t>(4 * kKiB, 0));
  close(*root);
}

// ---- truncate, close, loss of write access ----------------------------------------------

TEST_F(PreallocateTest, FallocTruncateInsideThePreallocationOnlyMovesTheDataEnd) {
  NodePtr root = open(graph(kSmall, kEfficient1M));
  ASSERT_TRUE(root);
  ASSERT_OK(write(*root, 1 * kMiB, 4 * kKiB));
  memory(*root).clear_log();
  ASSERT_OK(run_sync(*loop_, root->truncate(3 * kMiB, PreallocMode::kFalloc)));
  EXPECT_TRUE(memory(*root).log().empty());
  EXPECT_EQ(root->length(), 3 * kMiB);
  close(*root);
  EXPECT_EQ(memory(*root).length(), 3 * kMiB);
}

TEST_F(PreallocateTest, OtherTruncatesDropThePreallocationFirst) {
  NodePtr root = open(graph(kSmall, kEfficient1M));
  ASSERT_TRUE(root);
  ASSERT_OK(write(*root, 1 * kMiB, 4 * kKiB));
  memory(*root).clear_log();
  // Growing with mode off: cut back to the data end, then grow like the file would.
  ASSERT_OK(run_sync(*loop_, root->truncate(5 * kMiB)));
  std::vector<RecordedRequest> want = {
      {Kind::kTruncate, 1 * kMiB + 4 * kKiB, 0, {}},
      {Kind::kTruncate, 5 * kMiB, 0, {}},
  };
  EXPECT_EQ(memory(*root).log(), want);
  EXPECT_EQ(root->length(), 5 * kMiB);
  EXPECT_EQ(memory(*root).length(), 5 * kMiB);

  // The next write past the new end preallocates from there.
  memory(*root).clear_log();
  ASSERT_OK(write(*root, 5 * kMiB, 4 * kKiB));
  want = {{Kind::kWriteZeroes, 5 * kMiB, 3 * kMiB, RequestFlag::kNoFallback},
          {Kind::kWrite, 5 * kMiB, 4 * kKiB, {}}};
  EXPECT_EQ(memory(*root).log(), want);

  // Shrinking.
  memory(*root).clear_log();
  ASSERT_OK(run_sync(*loop_, root->truncate(512 * kKiB)));
  want = {{Kind::kTruncate, 5 * kMiB + 4 * kKiB, 0, {}}, {Kind::kTruncate, 512 * kKiB, 0, {}}};
  EXPECT_EQ(memory(*root).log(), want);
  EXPECT_EQ(root->length(), 512 * kKiB);
  close(*root);
  EXPECT_EQ(memory(*root).length(), 512 * kKiB);
}

TEST_F(PreallocateTest, ReleasingWriteAccessCutsBackAndStopsPreallocating) {
  NodePtr root = open(graph(kSmall, kEfficient1M));
  ASSERT_TRUE(root);
  ASSERT_OK(write(*root, 1 * kMiB, 4 * kKiB));
  EXPECT_EQ(memory(*root).length(), 4 * kMiB);
  ASSERT_OK(run_sync(*loop_, filter(*root).release_write_access()));
  EXPECT_EQ(memory(*root).length(), 1 * kMiB + 4 * kKiB);
  EXPECT_EQ(root->length(), 1 * kMiB + 4 * kKiB);
  memory(*root).clear_log();
  ASSERT_OK(write(*root, 2 * kMiB, 4 * kKiB));  // plain pass-through now
  const std::vector<RecordedRequest> want = {{Kind::kWrite, 2 * kMiB, 4 * kKiB, {}}};
  EXPECT_EQ(memory(*root).log(), want);
  EXPECT_EQ(root->length(), 2 * kMiB + 4 * kKiB);
  close(*root);
}

TEST_F(PreallocateTest, CloseCutsARealFileBackToTheDataEnd) {
  TempDir dir;
  const std::string path = dir.file("img");
  std::ofstream(path).close();  // an empty file
  NodePtr root =
      open(R"({"driver":"preallocate","file":{"driver":"file","filename":")" + path + R"("}})");
  ASSERT_TRUE(root);
  ASSERT_OK(write(*root, 0, 64 * kKiB));
  ASSERT_OK(write(*root, 64 * kKiB, 4 * kKiB));
  EXPECT_EQ(root->length(), 68 * kKiB);
  EXPECT_EQ(file_size(path), 129 * kMiB);  // align_up(64k + 128M, 1M)
  close(*root);
  EXPECT_EQ(file_size(path), 68 * kKiB);

  // A read-only open leaves the file alone and reports its length.
  OpenFlags ro;
  ro.read_only = true;
  NodePtr again =
      open(R"({"driver":"preallocate","file":{"driver":"file","filename":")" + path + R"("}})", ro);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->length(), 68 * kKiB);
  close(*again);
  EXPECT_EQ(file_size(path), 68 * kKiB);
}

// ---- fallback ----------------------------------------------------------------------------

TEST_F(PreallocateTest, FileWithoutEfficientZeroingGetsThePlainRequests) {
  NodePtr root = open(graph(kSmall, R"(,"size":1048576)"));
  ASSERT_TRUE(root);
  EXPECT_TRUE(filter(*root).preallocation_disabled());
  ASSERT_OK(write(*root, 1 * kMiB, 4 * kKiB));
  ASSERT_OK(zeroes(*root, 2 * kMiB, 4 * kKiB));
  // No ALLOCATE request, and above all no zero buffers; the write-zeroes itself falls back
  // to a buffer write in the memory node's own request layer, as without the filter.
  const std::vector<RecordedRequest> want = {
      {Kind::kWrite, 1 * kMiB, 4 * kKiB, {}},
      {Kind::kWriteZeroes, 2 * kMiB, 4 * kKiB, {}},
      {Kind::kWrite, 2 * kMiB, 4 * kKiB, {}},
  };
  EXPECT_EQ(memory(*root).log(), want);
  EXPECT_EQ(root->length(), 2 * kMiB + 4 * kKiB);
  close(*root);
  EXPECT_EQ(memory(*root).length(), 2 * kMiB + 4 * kKiB);
}

// A file that advertises NO_FALLBACK but answers ENOTSUP (like a file system without
// fallocate): the filter tries once, then remembers.
class RefusingMemoryNode : public MemoryNode {
 public:
  using MemoryNode::MemoryNode;
  int zero_calls = 0;

 protected:
  Task<Status> do_write_zeroes(uint64_t, uint64_t, RequestFlags) override {
    ++zero_calls;
    co_return fail(Error::unsupported());
  }
};

TEST_F(PreallocateTest, EnotsupFromTheFileStopsPreallocation) {
  auto file =
      std::make_unique<RefusingMemoryNode>(*loop_, MemoryNode::Config{.efficient_zeroes = true});
  RefusingMemoryNode* raw = file.get();
  PreallocateFilter f(*loop_, std::move(file), {.prealloc_align = kMiB, .prealloc_size = kMiB});
  EXPECT_FALSE(f.preallocation_disabled());
  ASSERT_OK(write(f, 0, 4 * kKiB));
  EXPECT_EQ(raw->zero_calls, 1);
  EXPECT_TRUE(f.preallocation_disabled());
  ASSERT_OK(write(f, 8 * kMiB, 4 * kKiB));
  EXPECT_EQ(raw->zero_calls, 1);
  // Only the data reached the file: no zero buffers.
  const std::vector<RecordedRequest> want = {{Kind::kWrite, 0, 4 * kKiB, {}},
                                             {Kind::kWrite, 8 * kMiB, 4 * kKiB, {}}};
  EXPECT_EQ(raw->log(), want);
  EXPECT_EQ(f.length(), 8 * kMiB + 4 * kKiB);
  ASSERT_OK(run_sync(*loop_, f.close()));
}

TEST_F(PreallocateTest, OverlappingRequestInFlightSkipsPreallocationWithoutWaiting) {
  NodePtr root = open(graph(kSmall, R"(,"size":1048576,"efficient-zeroes":true,"async":true)"));
  ASSERT_TRUE(root);
  BlockNode& file = *root->primary_child();
  // A read in flight on the file beyond its end overlaps the area the filter would zero.
  std::vector<uint8_t> buf(4 * kKiB);
  Status read_status, write_status;
  bool read_done = false, write_done = false;
  spawn(store_status(file.read(2 * kMiB, IoVec(buf.data(), buf.size())), &read_status, &read_done));
  ASSERT_FALSE(read_done);
  std::vector<uint8_t> data(4 * kKiB, 0xcd);
  spawn(store_status(root->write(1 * kMiB, IoVec(data.data(), data.size())), &write_status,
                     &write_done));
  ASSERT_TRUE(run_until([&] { return read_done && write_done; }));
  ASSERT_OK(read_status);
  ASSERT_OK(write_status);
  // ALLOCATE failed with EBUSY before reaching the memory node: only the read and the write.
  const std::vector<RecordedRequest> want = {{Kind::kRead, 2 * kMiB, 4 * kKiB, {}},
                                             {Kind::kWrite, 1 * kMiB, 4 * kKiB, {}}};
  EXPECT_EQ(memory(*root).log(), want);
  EXPECT_FALSE(filter(*root).preallocation_disabled());
  EXPECT_LT(filter(*root).file_end(), 0);  // unknown: read again next time
  // The next write past the end preallocates again, from the file's end.
  memory(*root).clear_log();
  ASSERT_OK(write(*root, 1 * kMiB + 4 * kKiB, 4 * kKiB));
  const std::vector<RecordedRequest> next = {
      {Kind::kWriteZeroes, 1 * kMiB + 4 * kKiB, 3 * kMiB - 4 * kKiB, RequestFlag::kNoFallback},
      {Kind::kWrite, 1 * kMiB + 4 * kKiB, 4 * kKiB, {}}};
  EXPECT_EQ(memory(*root).log(), next);
  close(*root);
}

TEST_F(PreallocateTest, ConcurrentWritesPastEofRunOnePreallocation) {
  NodePtr root = open(graph(kSmall, R"(,"size":1048576,"efficient-zeroes":true,"async":true)"));
  ASSERT_TRUE(root);
  std::vector<uint8_t> a(4 * kKiB, 0xa1), b(4 * kKiB, 0xb2);
  Status sa, sb;
  bool da = false, db = false;
  spawn(store_status(root->write(1 * kMiB, IoVec(a.data(), a.size())), &sa, &da));
  spawn(store_status(root->write(1 * kMiB + 4 * kKiB, IoVec(b.data(), b.size())), &sb, &db));
  ASSERT_TRUE(run_until([&] { return da && db; }));
  ASSERT_OK(sa);
  ASSERT_OK(sb);
  int zero_requests = 0;
  for (const RecordedRequest& r : memory(*root).log())
    zero_requests += r.kind == Kind::kWriteZeroes;
  EXPECT_EQ(zero_requests, 1);
  // The data is intact: the zeroing ran before both writes (it serialises them on the file).
  EXPECT_EQ(read(*root, 1 * kMiB, 4 * kKiB), a);
  EXPECT_EQ(read(*root, 1 * kMiB + 4 * kKiB, 4 * kKiB), b);
  EXPECT_EQ(root->length(), 1 * kMiB + 8 * kKiB);
  close(*root);
  EXPECT_EQ(memory(*root).length(), 1 * kMiB + 8 * kKiB);
}

// ---- flags and options -------------------------------------------------------------------

TEST_F(PreallocateTest, InheritsTheFilesFlags) {
  NodePtr root = open(graph("", R"(,"efficient-zeroes":true,"fua":true)"));
  ASSERT_TRUE(root);
  EXPECT_EQ(root->supported_write_flags(), RequestFlag::kWriteUnchanged | RequestFlag::kFua);
  EXPECT_EQ(root->supported_zero_flags(), RequestFlags(RequestFlag::kWriteUnchanged) |
                                              RequestFlag::kFua | RequestFlag::kMayUnmap |
                                              RequestFlag::kNoFallback);
  close(*root);
  NodePtr plain = open(graph("", ""));
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->supported_write_flags(), RequestFlags(RequestFlag::kWriteUnchanged));
  EXPECT_EQ(plain->supported_zero_flags(), RequestFlags(RequestFlag::kWriteUnchanged));
  close(*plain);
}

TEST_F(PreallocateTest, OptionValidationMessagesAreQemus) {
  // Messages observed with qemu-io 7.2 (`qemu-io: can't open: <message>`).
  EXPECT_EQ(open_error(graph(R"("prealloc-align":100,)", "")),
            "prealloc-align parameter of preallocate filter is not aligned to 512");
  EXPECT_EQ(open_error(graph(R"("prealloc-align":"1000000",)", "")),
            "prealloc-align parameter of preallocate filter is not aligned to 512");
  EXPECT_EQ(open_error(graph(R"("prealloc-align":"512",)", R"(,"request-alignment":4096)")),
            "prealloc-align parameter of preallocate filter is not aligned to underlying node "
            "request alignment (4096)");
  EXPECT_EQ(open_error(graph(R"("prealloc-align":"abc",)", "")),
            "Parameter 'prealloc-align' expects a non-negative number below 2^64");
  EXPECT_EQ(open_error(graph(R"("prealloc-size":"-1",)", "")),
            "Parameter 'prealloc-size' expects a non-negative number below 2^64");
  EXPECT_EQ(open_error(graph(R"("foo":"1",)", "")),
            "Block format 'preallocate' does not support the option 'foo'");
  EXPECT_EQ(open_error(R"({"driver":"preallocate"})"),
            "A block device must be specified for \"file\"");
  EXPECT_EQ(open_error(graph("", R"(,"read-only":true)")), "Block node is read-only");
  // Accepted by QEMU too: 0 (then the file's alignment is used), any size.
  EXPECT_EQ(open_error(graph(R"("prealloc-align":0,"prealloc-size":0,)", "")), "(opened)");
  EXPECT_EQ(open_error(graph(R"("prealloc-align":"8k","prealloc-size":"100",)",
                             R"(,"request-alignment":4096)")),
            "(opened)");
}

TEST_F(PreallocateTest, ZeroAlignAndSizePreallocateToTheRequestEnd) {
  NodePtr root = open(graph(R"("prealloc-align":0,"prealloc-size":0,)", kEfficient1M));
  ASSERT_TRUE(root);
  ASSERT_OK(write(*root, 1 * kMiB, 1000));
  const std::vector<RecordedRequest> want = {
      {Kind::kWriteZeroes, 1 * kMiB, 1000, RequestFlag::kNoFallback},
      {Kind::kWrite, 1 * kMiB, 1000, {}},
  };
  EXPECT_EQ(memory(*root).log(), want);
  close(*root);
}

// ---- qcow2 over preallocate over file, judged by QEMU's tools ----------------------------

TEST_F(PreallocateTest, Qcow2WrittenThroughTheFilterIsCleanAndReadsBackInQemu) {
  if (!have_qemu_tools()) GTEST_SKIP() << "qemu-img/qemu-io not installed";
  TempDir dir;
  const std::string path = dir.file("a.qcow2");
  ASSERT_EQ(std::system(("qemu-img create -q -f qcow2 " + path + " 64M").c_str()), 0);
  const uint64_t fresh = file_size(path);
  NodePtr root = open(R"({"driver":"qcow2","file":{"driver":"preallocate","file":)"
                      R"({"driver":"file","filename":")" +
                      path + R"("}}})");
  ASSERT_TRUE(root);
  ASSERT_EQ(root->primary_child()->driver_name(), "preallocate");
  struct Pattern {
    uint64_t offset, len;
    uint8_t byte;
  };
  const Pattern patterns[] = {
      {0, 1 * kMiB, 0x11},         {10 * kMiB, 64 * kKiB, 0x22}, {3 * kMiB + 512, 4 * kKiB, 0x33},
      {40 * kMiB, 3 * kMiB, 0x44}, {63 * kMiB, 1 * kMiB, 0x55},
  };
  for (const Pattern& p : patterns) ASSERT_OK(write(*root, p.offset, p.len, p.byte));
  ASSERT_OK(zeroes(*root, 20 * kMiB, 1 * kMiB));
  ASSERT_OK(run_sync(*loop_, root->flush()));
  // While open, the file carries the preallocated tail; qcow2 sees only the data end.
  const uint64_t data_end = root->primary_child()->length();
  EXPECT_GT(file_size(path), data_end);
  EXPECT_GT(file_size(path), fresh + 128 * kMiB);
  close(*root);
  EXPECT_EQ(file_size(path), data_end);

  ASSERT_EQ(std::system(("qemu-img check -q " + path).c_str()), 0);
  std::string io = "qemu-io -f qcow2";
  for (const Pattern& p : patterns) {
    io += " -c 'read -q -P " + std::to_string(p.byte) + " " + std::to_string(p.offset) + " " +
          std::to_string(p.len) + "'";
  }
  io += " -c 'read -q -P 0 20M 1M' -c 'read -q -P 0 1M 2M' " + path;
  // qemu-io prints "Pattern verification failed" on a mismatch.
  const std::string out = dir.file("io.out");
  ASSERT_EQ(std::system((io + " >" + out + " 2>&1").c_str()), 0);
  std::ifstream in(out);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "");

  // The same writes by qemu-io through QEMU's filter end with a file of the same size.
  const std::string ref = dir.file("ref.qcow2");
  ASSERT_EQ(std::system(("qemu-img create -q -f qcow2 " + ref + " 64M").c_str()), 0);
  std::string qio = "qemu-io --image-opts";
  for (const Pattern& p : patterns) {
    qio += " -c 'write -q -P " + std::to_string(p.byte) + " " + std::to_string(p.offset) + " " +
           std::to_string(p.len) + "'";
  }
  qio += " -c 'write -q -z 20M 1M' driver=qcow2,file.driver=preallocate,file.file.filename=" + ref;
  ASSERT_EQ(std::system(qio.c_str()), 0);
  ASSERT_EQ(std::system(("qemu-img compare -q " + path + " " + ref).c_str()), 0);
  EXPECT_EQ(file_size(path), file_size(ref));
}

TEST_F(PreallocateTest, Qcow2ImageLeftPreallocatedByACrashIsClean) {
  if (!have_qemu_tools()) GTEST_SKIP() << "qemu-img/qemu-io not installed";
  TempDir dir;
  const std::string path = dir.file("a.qcow2");
  const std::string crashed = dir.file("crashed.qcow2");
  ASSERT_EQ(std::system(("qemu-img create -q -f qcow2 " + path + " 64M").c_str()), 0);
  const std::string graph_prefix = R"({"driver":"qcow2","file":{"driver":"preallocate","file":)"
                                   R"({"driver":"file","filename":")";
  NodePtr root = open(graph_prefix + path + R"("}}})");
  ASSERT_TRUE(root);
  ASSERT_OK(write(*root, 0, 1 * kMiB, 0x66));
  ASSERT_OK(run_sync(*loop_, root->flush()));
  // "Crash": the file as it is now, with the preallocated tail (§7.5). The tail ends at
  // align_up(end of the first write past EOF + 128M, 1M) = 129 MiB, as in QEMU.
  ASSERT_EQ(std::system(("cp " + path + " " + crashed).c_str()), 0);
  close(*root);
  EXPECT_EQ(file_size(crashed), 129 * kMiB);
  ASSERT_EQ(std::system(("qemu-img check -q " + crashed).c_str()), 0);
  ASSERT_EQ(std::system(("qemu-io -r -f qcow2 -c 'read -q -P 0x66 0 1M' " + crashed +
                         " | grep -q . && exit 1 || exit 0")
                            .c_str()),
            0);

  // Reopened through the filter, the data end starts at the (large) file length, so the
  // tail stays (QEMU 7.2: 135266304 after `write 1M 1M`).
  NodePtr again = open(graph_prefix + crashed + R"("}}})");
  ASSERT_TRUE(again);
  ASSERT_OK(write(*again, 1 * kMiB, 1 * kMiB, 0x67));
  close(*again);
  EXPECT_EQ(file_size(crashed), 129 * kMiB);
  ASSERT_EQ(std::system(("qemu-img check -q " + crashed).c_str()), 0);
}

}  // namespace
// qblock's refill-ahead (on in qcow2's default filter): once a write comes within half the
// preallocation size of the preallocated end, the next range is zeroed in the background,
// starting at that end, so the writes never cross it.
TEST_F(PreallocateTest, RefillAheadPreallocatesBeforeTheWritesReachTheEnd) {
  NodePtr root = open(graph(std::string(kSmall) + R"("refill-ahead":true,)", kEfficient1M));
  ASSERT_TRUE(root);
  ASSERT_OK(write(*root, 1 * kMiB, 4 * kKiB));  // preallocates [1M, 4M)
  memory(*root).clear_log();
  ASSERT_OK(write(*root, 2 * kMiB, 4 * kKiB));  // 2M + 4k: more than 1M below 4M
  std::vector<RecordedRequest> want = {{Kind::kWrite, 2 * kMiB, 4 * kKiB, {}}};
  EXPECT_EQ(memory(*root).log(), want);
  memory(*root).clear_log();
  ASSERT_OK(write(*root, 3 * kMiB + 8 * kKiB, 4 * kKiB));  // within 1M of 4M: refill
  want = {{Kind::kWriteZeroes, 4 * kMiB, 2 * kMiB, RequestFlag::kNoFallback},
          {Kind::kWrite, 3 * kMiB + 8 * kKiB, 4 * kKiB, {}}};
  auto log = memory(*root).log();
  std::sort(log.begin(), log.end(),
            [](const RecordedRequest& a, const RecordedRequest& b) { return a.offset > b.offset; });
  EXPECT_EQ(log, want);
  EXPECT_EQ(memory(*root).length(), 6 * kMiB);
  EXPECT_EQ(root->length(), 3 * kMiB + 12 * kKiB);
  close(*root);
  EXPECT_EQ(memory(*root).length(), 3 * kMiB + 12 * kKiB);
}

}  // namespace qblock
