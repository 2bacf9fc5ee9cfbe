// File protocol tests on real files in a temporary directory: data paths (io_uring, threads,
// O_DIRECT with padding and bounce buffers), zeroing strategies, EOF, truncate and locking.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "block/test_util.h"
#include "qblock/block_backend.h"

namespace qblock {
namespace {

using testing::LoopTest;
using testing::TempDir;

class FileTest : public LoopTest {
 protected:
  std::string make_file(const std::string& name, uint64_t size) {
    std::string path = dir_.file(name);
    int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_TRUNC, 0644);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(ftruncate(fd, static_cast<off_t>(size)), 0);
    ::close(fd);
    return path;
  }
  NodePtr open_file(const std::string& path, const std::string& extra = "", OpenFlags flags = {}) {
    return open(R"({"driver":"file","filename":")" + path + "\"" + extra + "}", flags);
  }
  std::vector<uint8_t> read_bytes(BlockNode& n, uint64_t offset, uint64_t len) {
    std::vector<uint8_t> buf(len, 0xab);
    EXPECT_OK(run_sync(*loop_, n.read(offset, IoVec(buf.data(), len))));
    return buf;
  }
  Status write_bytes(BlockNode& n, uint64_t offset, uint64_t len, uint8_t byte,
                     RequestFlags flags = {}) {
    std::vector<uint8_t> buf(len, byte);
    return run_sync(*loop_, n.write(offset, IoVec(buf.data(), len), flags));
  }
  static uint64_t allocated_bytes(const std::string& path) {
    struct stat st {};
    stat(path.c_str(), &st);
    return static_cast<uint64_t>(st.st_blocks) * 512;
  }
  TempDir dir_;
};

TEST_F(FileTest, WriteThenReadBackThroughIoUring) {
  std::string path = make_file("a.raw", 1 << 20);
  NodePtr node = open_file(path);
  ASSERT_OK(write_bytes(*node, 4096, 8192, 0x5a));
  auto data = read_bytes(*node, 4000, 8400);
  EXPECT_EQ(data[0], 0);
  EXPECT_EQ(data[96], 0x5a);
  EXPECT_EQ(data[96 + 8191], 0x5a);
  EXPECT_EQ(data[96 + 8192], 0);
  close(*node);
}

TEST_F(FileTest, ThreadsAioModeUsesWorkerThreads) {
  std::string path = make_file("t.raw", 1 << 20);
  NodePtr node = open_file(path, R"(,"aio":"threads")");
  ASSERT_OK(write_bytes(*node, 512, 1024, 0x42));
  EXPECT_EQ(read_bytes(*node, 512, 1024), std::vector<uint8_t>(1024, 0x42));
  ASSERT_OK(run_sync(*loop_, node->flush()));
  close(*node);
}

TEST_F(FileTest, DirectIoPadsUnalignedRequestsAndBouncesUnalignedBuffers) {
  std::string path = make_file("d.raw", 1 << 20);
  OpenFlags flags;
  flags.direct = true;
  NodePtr node = open_file(path, "", flags);
  EXPECT_GE(node->limits().request_alignment, 512u);
  ASSERT_OK(write_bytes(*node, 0, 8192, 0x11));
  ASSERT_OK(write_bytes(*node, 10, 100, 0x22));  // unaligned offset, length and buffer
  auto data = read_bytes(*node, 0, 200);
  EXPECT_EQ(data[9], 0x11);
  EXPECT_EQ(data[10], 0x22);
  EXPECT_EQ(data[109], 0x22);
  EXPECT_EQ(data[110], 0x11);
  close(*node);
}

// Direct writes not aligned to the file system block go through the WriteCoalescer: held
// while one is in flight, contiguous ones merged. Every caller's bytes must land, alongside
// aligned writes that bypass it.
TEST_F(FileTest, ConcurrentUnalignedDirectWritesAllLand) {
  constexpr uint64_t kCount = 64, kSize = 65536, kOffset = 1024;
  std::string path = make_file("u.raw", (kCount + 2) * kSize);
  OpenFlags flags;
  flags.direct = true;
  NodePtr node = open_file(path, "", flags);
  ASSERT_LT(node->limits().request_alignment, 4096u) << "writes would be padded to the block";
  // Unwritten extents, as preallocation leaves them.
  ASSERT_OK(run_sync(*loop_, node->write_zeroes(0, (kCount + 2) * kSize, {})));
  AlignedBuffer source(kCount * kSize, 4096);
  for (uint64_t i = 0; i < source.size(); ++i)
    source.data()[i] = static_cast<uint8_t>(i * 13 + i / 512);
  AlignedBuffer aligned(kSize, 4096);
  aligned.fill(0x77);
  std::vector<Task<Status>> writes;
  for (uint64_t i = 0; i < kCount; ++i) {
    writes.push_back(node->write(kOffset + i * kSize, IoVec(source.data() + i * kSize, kSize)));
  }
  writes.push_back(node->write((kCount + 1) * kSize, IoVec(aligned.data(), kSize)));
  for (const Status& s : run_sync(*loop_, when_all(std::move(writes)))) EXPECT_OK(s);
  std::vector<uint8_t> expected(kOffset, 0);
  expected.insert(expected.end(), source.data(), source.data() + source.size());
  expected.resize((kCount + 1) * kSize, 0);
  expected.resize((kCount + 2) * kSize, 0x77);
  close(*node);
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> on_disk((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
  EXPECT_TRUE(on_disk == expected);
}

TEST_F(FileTest, ReadsPastEndOfFileReturnZeros) {
  std::string path = make_file("e.raw", 1000);
  NodePtr node = open_file(path);
  ASSERT_OK(write_bytes(*node, 0, 1000, 0x66));
  auto data = read_bytes(*node, 900, 300);
  EXPECT_EQ(data[99], 0x66);
  EXPECT_EQ(data[100], 0);
  EXPECT_EQ(data[299], 0);
  close(*node);
}

TEST_F(FileTest, WriteZeroesWithMayUnmapPunchesAHole) {
  std::string path = make_file("z.raw", 1 << 20);
  NodePtr node = open_file(path);
  ASSERT_OK(write_bytes(*node, 0, 1 << 20, 0x77));
  ASSERT_OK(run_sync(*loop_, node->flush()));
  const uint64_t before = allocated_bytes(path);
  ASSERT_OK(run_sync(*loop_, node->write_zeroes(0, 512 << 10, RequestFlag::kMayUnmap)));
  EXPECT_LT(allocated_bytes(path), before);
  auto st = run_sync(*loop_, node->block_status(0, 1 << 20, WantZero::kYes));
  ASSERT_OK(st);
  EXPECT_TRUE(st->flags & kStatusZero);
  EXPECT_EQ(st->bytes, 512u << 10);
  EXPECT_EQ(read_bytes(*node, 0, 4096), std::vector<uint8_t>(4096, 0));
  close(*node);
}

TEST_F(FileTest, WriteZeroesWithoutMayUnmapKeepsBlocksAllocated) {
  std::string path = make_file("k.raw", 1 << 20);
  NodePtr node = open_file(path);
  ASSERT_OK(write_bytes(*node, 0, 1 << 20, 0x77));
  ASSERT_OK(run_sync(*loop_, node->flush()));
  const uint64_t before = allocated_bytes(path);
  ASSERT_OK(run_sync(*loop_, node->write_zeroes(0, 512 << 10, RequestFlag::kNoFallback)));
  EXPECT_EQ(allocated_bytes(path), before);
  EXPECT_EQ(read_bytes(*node, 4096, 4096), std::vector<uint8_t>(4096, 0));
  close(*node);
}

TEST_F(FileTest, WriteZeroesPastEndOfFileExtendsIt) {
  std::string path = make_file("x.raw", 4096);
  NodePtr node = open_file(path);
  ASSERT_OK(run_sync(*loop_, node->write_zeroes(8192, 65536, kAllocate)));
  EXPECT_EQ(node->length(), 8192u + 65536u);
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 8192u + 65536u);
  close(*node);
}

TEST_F(FileTest, TruncateGrowsWithFallocAndShrinks) {
  std::string path = make_file("r.raw", 0);
  NodePtr node = open_file(path);
  ASSERT_OK(run_sync(*loop_, node->truncate(1 << 20, PreallocMode::kFalloc)));
  EXPECT_EQ(node->length(), 1u << 20);
  EXPECT_GE(allocated_bytes(path), 1u << 20);
  ASSERT_OK(run_sync(*loop_, node->truncate(4096)));
  EXPECT_EQ(node->length(), 4096u);
  close(*node);
}

TEST_F(FileTest, SecondWriterIsRefusedByTheImageLock) {
  std::string path = make_file("l.raw", 4096);
  NodePtr first = open_file(path);
  ASSERT_NE(first, nullptr);
  Result<NodePtr> second =
      run_sync(*loop_, open_node(*loop_, Options{{"driver", "file"}, {"filename", path}}, {}, ""));
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().message(),
            "Failed to get \"write\" lock\nIs another process using the image [" + path + "]?");
  // A reader that forces sharing gets in.
  OpenFlags shared;
  shared.read_only = true;
  shared.force_share = true;
  NodePtr reader = open_file(path, "", shared);
  ASSERT_NE(reader, nullptr);
  close(*reader);
  close(*first);
  // Once the writer is gone the lock is free again.
  NodePtr again = open_file(path);
  ASSERT_NE(again, nullptr);
  close(*again);
}

TEST_F(FileTest, MissingFileGivesQemuMessage) {
  Result<NodePtr> node = run_sync(
      *loop_,
      open_node(*loop_, Options{{"driver", "file"}, {"filename", dir_.file("nope")}}, {}, ""));
  ASSERT_FALSE(node);
  EXPECT_EQ(node.error().message(),
            "Could not open '" + dir_.file("nope") + "': No such file or directory");
}

TEST_F(FileTest, BackendChecksBoundsAndProbesRaw) {
  std::string path = make_file("b.raw", 65536);
  BackendOptions opts;
  opts.filename = path;
  auto backend = run_sync(*loop_, BlockBackend::open(*loop_, opts));
  ASSERT_OK(backend);
  EXPECT_TRUE((*backend)->probed_raw());
  std::vector<uint8_t> buf(512);
  EXPECT_ERRNO(run_sync(*loop_, (*backend)->read(65536 - 256, IoVec(buf.data(), 512))), EIO);
  EXPECT_OK(run_sync(*loop_, (*backend)->read(65536 - 512, IoVec(buf.data(), 512))));
  ASSERT_OK(run_sync(*loop_, (*backend)->close()));
}

TEST_F(FileTest, JsonFilenameBuildsTheGraph) {
  std::string path = make_file("j.raw", 65536);
  BackendOptions opts;
  opts.filename =
      "json:{'driver':'raw','file':{'driver':'passthrough','file':{'driver':'file','filename':'" +
      path + "'}}}";
  auto backend = run_sync(*loop_, BlockBackend::open(*loop_, opts));
  ASSERT_OK(backend);
  EXPECT_EQ((*backend)->root().driver_name(), "raw");
  EXPECT_EQ((*backend)->root().primary_child()->driver_name(), "passthrough");
  EXPECT_TRUE((*backend)->root().supported_zero_flags().has(RequestFlag::kNoFallback));
  ASSERT_OK(run_sync(*loop_, (*backend)->close()));
}

}  // namespace
}  // namespace qblock
