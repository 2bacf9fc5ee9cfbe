// qcow2 driver tests at the request level: the I/O each allocating-write path sends to the
// file (block-semantics.md §5, qcow2-format.md §15.3, §17.2), over a recording memory node.
#include "block/formats/qcow2/qcow2.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "block/formats/qcow2/create.h"
#include "block/protocols/memory.h"
#include "block/test_util.h"

namespace qblock::qcow2 {
namespace {

using Kind = RecordedRequest::Kind;
using testing::LoopTest;
using testing::TempDir;

class Qcow2RequestTest : public LoopTest {
 protected:
  // A fresh 64 MiB image with 64 KiB clusters loaded into a recording memory node.
  NodePtr open_fresh(const std::string& backing_json = "", bool async = false) {
    Qcow2CreateOptions opts;
    opts.filename = dir_.file("t.qcow2");
    opts.size = 64 << 20;
    Status s = run_sync(*loop_, create_qcow2(*loop_, opts));
    EXPECT_TRUE(s) << s.error().message();
    std::string json =
        R"({"driver":"qcow2","file":{"driver":"memory","efficient-zeroes":true,"async":)" +
        std::string(async ? "true" : "false") + R"(,"image":")" + opts.filename + "\"}";
    if (!backing_json.empty()) json += R"(,"backing":)" + backing_json;
    return open(json + "}");
  }
  MemoryNode& file_of(BlockNode& qcow2) { return static_cast<MemoryNode&>(*qcow2.primary_child()); }
  std::vector<RecordedRequest> data_io(const MemoryNode& m) {
    std::vector<RecordedRequest> out;
    for (const RecordedRequest& r : m.log()) {
      if (r.kind != Kind::kFlush) out.push_back(r);
    }
    return out;
  }
  TempDir dir_;
};

// block-semantics.md §5.2 / qcow2-format.md §17.2: a 4 KiB write into a new cluster without
// backing data zeroes the whole cluster with one efficient call and writes only guest data.
TEST_F(Qcow2RequestTest, FirstWriteIntoNewClusterIsOneAllocateZeroingPlusOneDataWrite) {
  NodePtr node = open_fresh();
  MemoryNode& file = file_of(*node);
  file.clear_log();
  std::vector<uint8_t> buf(4096, 0x11);
  ASSERT_OK(run_sync(*loop_, node->write(4096, IoVec(buf.data(), buf.size()))));
  auto io = data_io(file);
  // qcow2-format.md §17.2: refblock, zeroed L2 at 0x40000, L1[0], then the new data cluster
  // 0x50000: one efficient zeroing of the whole cluster followed by the 4 KiB of guest data.
  auto zeroing =
      std::find(io.begin(), io.end(),
                RecordedRequest{Kind::kWriteZeroes, 0x50000, 65536, RequestFlag::kNoFallback});
  ASSERT_NE(zeroing, io.end());
  ASSERT_NE(zeroing + 1, io.end());
  EXPECT_EQ(*(zeroing + 1), (RecordedRequest{Kind::kWrite, 0x51000, 4096, {}}));
  EXPECT_NE(std::find(io.begin(), zeroing, RecordedRequest{Kind::kWrite, 0x40000, 65536, {}}),
            zeroing)
      << "the new L2 table is written before the data";
  for (const RecordedRequest& r : io) {
    EXPECT_FALSE(r.kind == Kind::kWrite && r.offset >= 0x50000 && r.offset < 0x60000 &&
                 r.bytes != 4096)
        << "no zero padding may be written into the data cluster";
  }
  // Reads back, and the rest of the cluster reads as zero.
  std::vector<uint8_t> back(65536, 0xff);
  ASSERT_OK(run_sync(*loop_, node->read(0, IoVec(back.data(), back.size()))));
  EXPECT_EQ(back[4095], 0);
  EXPECT_EQ(back[4096], 0x11);
  EXPECT_EQ(back[8191], 0x11);
  EXPECT_EQ(back[8192], 0);
  close(*node);
}

// block-semantics.md §5.3: COW from a backing file with data is one merged vectored write of
// head + data + tail, and no zeroing.
TEST_F(Qcow2RequestTest, CowFromBackingIsOneMergedWrite) {
  NodePtr node = open_fresh(R"({"driver":"memory","size":67108864})");
  // Give the backing file data so the COW regions are not zero.
  BlockNode* backing = node->child(ChildRole::kBacking);
  ASSERT_NE(backing, nullptr);
  auto& backing_data = static_cast<MemoryNode&>(*backing).data();
  std::fill_n(backing_data.begin(), 65536, 0x5b);
  MemoryNode& file = file_of(*node);
  file.clear_log();
  std::vector<uint8_t> buf(4096, 0x22);
  ASSERT_OK(run_sync(*loop_, node->write(4096, IoVec(buf.data(), buf.size()))));
  int data_cluster_writes = 0;
  for (const RecordedRequest& r : data_io(file)) {
    EXPECT_NE(r.kind, Kind::kWriteZeroes);
    if (r.kind == Kind::kWrite && r.offset == 0x50000) {
      EXPECT_EQ(r.bytes, 65536u);
      ++data_cluster_writes;
    }
  }
  EXPECT_EQ(data_cluster_writes, 1);
  std::vector<uint8_t> back(65536);
  ASSERT_OK(run_sync(*loop_, node->read(0, IoVec(back.data(), back.size()))));
  EXPECT_EQ(back[0], 0x5b);
  EXPECT_EQ(back[4096], 0x22);
  EXPECT_EQ(back[8192], 0x5b);
  close(*node);
}

TEST_F(Qcow2RequestTest, WriteZeroesOfWholeClustersIsMetadataOnly) {
  NodePtr node = open_fresh();
  std::vector<uint8_t> buf(131072, 0x33);
  ASSERT_OK(run_sync(*loop_, node->write(0, IoVec(buf.data(), buf.size()))));
  MemoryNode& file = file_of(*node);
  file.clear_log();
  ASSERT_OK(run_sync(*loop_, node->write_zeroes(0, 131072, RequestFlag::kNoFallback)));
  for (const RecordedRequest& r : data_io(file)) {
    EXPECT_TRUE(r.kind != Kind::kWrite || r.bytes <= 512) << "only L2 entries are written";
  }
  std::vector<uint8_t> back(131072, 0xff);
  ASSERT_OK(run_sync(*loop_, node->read(0, IoVec(back.data(), back.size()))));
  EXPECT_TRUE(std::all_of(back.begin(), back.end(), [](uint8_t b) { return b == 0; }));
  close(*node);
}

}  // namespace
}  // namespace qblock::qcow2

namespace qblock::qcow2 {
namespace {

Task<void> write_piece(BlockNode& node, uint64_t offset, std::vector<uint8_t>* data,
                       int* failures) {
  Status s = co_await node.write(offset, IoVec(data->data(), data->size()));
  if (!s) ++*failures;
}

// Many writes in flight at once into the same new clusters (disjoint bytes, shared clusters):
// no cluster may be allocated twice and no byte lost, with and without a backing file.
TEST_F(Qcow2RequestTest, ConcurrentWritesIntoSharedNewClustersLoseNothing) {
  for (bool with_backing : {false, true}) {
    NodePtr node =
        open_fresh(with_backing ? R"({"driver":"memory","size":67108864,"async":true})" : "", true);
    if (with_backing) {
      auto& b = static_cast<MemoryNode&>(*node->child(ChildRole::kBacking)).data();
      for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i / 4096 + 1);
    }
    std::mt19937_64 rng(42);
    std::vector<uint8_t> model(8 << 20);
    if (with_backing) {
      for (std::size_t i = 0; i < model.size(); ++i) model[i] = static_cast<uint8_t>(i / 4096 + 1);
    }
    for (int round = 0; round < 20; ++round) {
      // 64 pieces of 512 B..4 KiB at distinct 4 KiB slots of 8 clusters, in any order.
      std::vector<uint64_t> slots(128);
      for (uint64_t i = 0; i < slots.size(); ++i) slots[i] = i;
      std::shuffle(slots.begin(), slots.end(), rng);
      const uint64_t base = (rng() % 64) * 131072;
      std::vector<std::vector<uint8_t>> data(64);
      std::vector<Task<void>> tasks;
      int failures = 0;
      for (int i = 0; i < 64; ++i) {
        const uint64_t len = 512 * (1 + rng() % 8);
        const uint64_t off = base + slots[i] * 4096;
        data[i].assign(len, static_cast<uint8_t>(rng() | 1));
        std::copy(data[i].begin(), data[i].end(), model.begin() + static_cast<std::ptrdiff_t>(off));
        tasks.push_back(write_piece(*node, off, &data[i], &failures));
      }
      run_sync(*loop_, when_all(std::move(tasks)));
      ASSERT_EQ(failures, 0);
      if (round % 5 == 4) ASSERT_OK(run_sync(*loop_, node->flush()));
    }
    std::vector<uint8_t> back(model.size());
    ASSERT_OK(run_sync(*loop_, node->read(0, IoVec(back.data(), back.size()))));
    ASSERT_TRUE(back == model) << "with_backing=" << with_backing;
    close(*node);
  }
}

}  // namespace
}  // namespace qblock::qcow2

namespace qblock::qcow2 {
namespace {

// qcow2-format.md §17 R5 and qemu-img 7.2's observed shrink: clusters mapped past the new
// end are released only after the L1/L2 entries that reached them are gone on disk, the L1
// table stays where it is, and the file is cut after the last cluster still in use.
TEST_F(Qcow2RequestTest, ShrinkFreesAfterUnlinkAndCutsTheFile) {
  NodePtr node = open_fresh();
  MemoryNode& file = file_of(*node);
  std::vector<uint8_t> a(65536, 0x41), b(65536, 0x42), c(65536, 0x43);
  // Layout: L2 0x40000 + data 0x50000 (guest 0), data 0x60000 (40M); the 1 GiB grow moves
  // L1 to 0x70000 and frees 0x30000, which the L2 table of guest 900M then takes, with its
  // data at 0x80000.
  ASSERT_OK(run_sync(*loop_, node->write(0, IoVec(a.data(), a.size()))));
  ASSERT_OK(run_sync(*loop_, node->write(40 << 20, IoVec(b.data(), b.size()))));
  ASSERT_OK(run_sync(*loop_, node->truncate(1ULL << 30)));
  ASSERT_OK(run_sync(*loop_, node->write(900ULL << 20, IoVec(c.data(), c.size()))));
  ASSERT_OK(run_sync(*loop_, node->flush()));
  ASSERT_EQ(file.length(), 0x90000u);
  file.clear_log();

  ASSERT_OK(run_sync(*loop_, node->truncate(20 << 20)));
  EXPECT_EQ(node->length(), uint64_t{20} << 20);
  const std::vector<RecordedRequest>& log = file.log();
  auto find = [&](Kind kind, uint64_t offset, uint64_t bytes) {
    return std::find(log.begin(), log.end(), RecordedRequest{kind, offset, bytes, {}});
  };
  auto l1_zero = find(Kind::kWrite, 0x70008, 8);
  auto l2_write = find(Kind::kWrite, 0x40000, 65536);
  auto refblock = find(Kind::kWrite, 0x20000, 65536);
  ASSERT_NE(l1_zero, log.end()) << "L1[1] is zeroed in place";
  ASSERT_NE(l2_write, log.end()) << "the kept L2 table drops its entry for 40M";
  ASSERT_NE(refblock, log.end());
  EXPECT_LT(l1_zero, refblock);
  EXPECT_LT(l2_write, refblock);
  EXPECT_NE(std::find_if(l2_write, refblock,
                         [](const RecordedRequest& r) { return r.kind == Kind::kFlush; }),
            refblock)
      << "the unlinking is stable before the refcounts drop";
  // Clusters 0x80000 (data) and 0x30000 (L2) and 0x60000 are free; 0x70000 (L1) is the last
  // one in use.
  EXPECT_EQ(file.length(), 0x80000u);

  // Grows again: the dropped range reads as zeros and takes new data.
  ASSERT_OK(run_sync(*loop_, node->truncate(1ULL << 30)));
  std::vector<uint8_t> back(65536, 0xff);
  ASSERT_OK(run_sync(*loop_, node->read(900ULL << 20, IoVec(back.data(), back.size()))));
  EXPECT_TRUE(std::all_of(back.begin(), back.end(), [](uint8_t x) { return x == 0; }));
  ASSERT_OK(run_sync(*loop_, node->read(40 << 20, IoVec(back.data(), back.size()))));
  EXPECT_TRUE(std::all_of(back.begin(), back.end(), [](uint8_t x) { return x == 0; }));
  ASSERT_OK(run_sync(*loop_, node->read(0, IoVec(back.data(), back.size()))));
  EXPECT_EQ(back, a);
  ASSERT_OK(run_sync(*loop_, node->write(900ULL << 20, IoVec(c.data(), c.size()))));
  ASSERT_OK(run_sync(*loop_, node->read(900ULL << 20, IoVec(back.data(), back.size()))));
  EXPECT_EQ(back, c);
  close(*node);
}

// Shrinking to a size inside a cluster keeps that cluster; refusing an unaligned size.
TEST_F(Qcow2RequestTest, ShrinkKeepsThePartialLastCluster) {
  NodePtr node = open_fresh();
  std::vector<uint8_t> a(131072, 0x51);
  ASSERT_OK(run_sync(*loop_, node->write(1 << 20, IoVec(a.data(), a.size()))));
  Status unaligned = run_sync(*loop_, node->truncate((1 << 20) + 1000));
  ASSERT_FALSE(unaligned);
  EXPECT_EQ(unaligned.error().message(), "The new size must be a multiple of 512");
  ASSERT_OK(run_sync(*loop_, node->truncate((1 << 20) + 4096)));
  std::vector<uint8_t> back(4096);
  ASSERT_OK(run_sync(*loop_, node->read(1 << 20, IoVec(back.data(), back.size()))));
  EXPECT_TRUE(std::all_of(back.begin(), back.end(), [](uint8_t x) { return x == 0x51; }));
  ASSERT_OK(run_sync(*loop_, node->truncate(2 << 20)));
  back.assign(65536, 0xff);
  ASSERT_OK(run_sync(*loop_, node->read((1 << 20) + 65536, IoVec(back.data(), back.size()))));
  EXPECT_TRUE(std::all_of(back.begin(), back.end(), [](uint8_t x) { return x == 0; }));
  ASSERT_OK(run_sync(*loop_, node->read((1 << 20) + 4096, IoVec(back.data(), 4096))));
  EXPECT_EQ(back[0], 0x51) << "the rest of the kept cluster is still mapped (as in 7.2)";
  close(*node);
}

// block-semantics.md §6: once a new cluster is zeroed, a second write into it goes straight
// in, while the first write's data is still in flight, instead of waiting for the L2 link;
// still one allocation, and both writes are visible after they complete.
TEST_F(Qcow2RequestTest, SecondWriteIntoANewClusterDoesNotWaitForTheLink) {
  NodePtr node = open_fresh("", true);
  MemoryNode& file = file_of(*node);
  file.clear_log();
  file.reset_max_concurrent_writes();
  std::vector<uint8_t> a(4096, 0xaa), b(4096, 0xbb);
  int failures = 0;
  std::vector<Task<void>> tasks;
  tasks.push_back(write_piece(*node, 0, &a, &failures));
  tasks.push_back(write_piece(*node, 8192, &b, &failures));
  run_sync(*loop_, when_all(std::move(tasks)));
  ASSERT_EQ(failures, 0);
  auto io = data_io(file);
  const auto zeroings = std::count_if(io.begin(), io.end(), [](const RecordedRequest& r) {
    return r.kind == Kind::kWriteZeroes && r.offset == 0x50000;
  });
  EXPECT_EQ(zeroings, 1);
  EXPECT_TRUE(std::find(io.begin(), io.end(), RecordedRequest{Kind::kWrite, 0x50000, 4096, {}}) !=
              io.end());
  EXPECT_TRUE(std::find(io.begin(), io.end(), RecordedRequest{Kind::kWrite, 0x52000, 4096, {}}) !=
              io.end());
  // Both data writes were at the file together: the second did not wait for the link.
  EXPECT_GE(file.max_concurrent_writes(), 2u);
  std::vector<uint8_t> back(4096);
  ASSERT_OK(run_sync(*loop_, node->read(8192, IoVec(back.data(), back.size()))));
  EXPECT_EQ(back, b);
  close(*node);
}

// W3's pattern (cluster-misaligned writes back to back): the second write joins the new
// cluster the first is filling and allocates the next one; its two pieces are host-contiguous
// and reach the file as one write, as QEMU sends an in-place piece and an allocation.
TEST_F(Qcow2RequestTest, JoinedPieceAndNextAllocationGoOutAsOneWrite) {
  NodePtr node = open_fresh("", true);
  MemoryNode& file = file_of(*node);
  file.clear_log();
  std::vector<uint8_t> a(65536, 0xaa), b(65536, 0xbb);
  int failures = 0;
  std::vector<Task<void>> tasks;
  tasks.push_back(write_piece(*node, 1024, &a, &failures));
  tasks.push_back(write_piece(*node, 65536 + 1024, &b, &failures));
  run_sync(*loop_, when_all(std::move(tasks)));
  ASSERT_EQ(failures, 0);
  const std::vector<RecordedRequest> want = {
      {Kind::kWriteZeroes, 0x50000, 2 * 65536, {}},  // clusters 0 and 1 for the first write
      {Kind::kWriteZeroes, 0x70000, 65536, {}},      // cluster 2 for the second
      {Kind::kWrite, 0x50400, 65536, {}},
      {Kind::kWrite, 0x60400, 65536, {}},  // 63 KiB into cluster 1 + 1 KiB into cluster 2
  };
  std::vector<RecordedRequest> io = data_io(file);
  std::erase_if(io, [](const RecordedRequest& r) { return r.offset < 0x50000; });  // metadata
  for (RecordedRequest& r : io) {
    if (r.kind == Kind::kWriteZeroes) {
      EXPECT_TRUE(r.flags.has(RequestFlag::kNoFallback));
    }
    r.flags = {};
  }
  std::sort(io.begin(), io.end(), [](const RecordedRequest& x, const RecordedRequest& y) {
    return std::tie(x.kind, x.offset) > std::tie(y.kind, y.offset);
  });
  std::vector<RecordedRequest> sorted_want = want;
  std::sort(sorted_want.begin(), sorted_want.end(),
            [](const RecordedRequest& x, const RecordedRequest& y) {
              return std::tie(x.kind, x.offset) > std::tie(y.kind, y.offset);
            });
  EXPECT_EQ(io, sorted_want);
  std::vector<uint8_t> back(65536);
  ASSERT_OK(run_sync(*loop_, node->read(65536 + 1024, IoVec(back.data(), back.size()))));
  EXPECT_EQ(back, b);
  ASSERT_OK(run_sync(*loop_, node->read(1024, IoVec(back.data(), back.size()))));
  EXPECT_EQ(back, a);
  close(*node);
}

// iotest 066 case 4 (block-semantics.md §6.2 C11): over three host-contiguous clusters, the
// middle one a preallocated zero cluster, a write of all three is one request to the file,
// and afterwards the middle cluster is a normal one at the same place.
TEST_F(Qcow2RequestTest, ContiguousWriteOverAReusedZeroClusterIsOneRequest) {
  NodePtr node = open_fresh();
  MemoryNode& file = file_of(*node);
  std::vector<uint8_t> buf(3 * 65536, 42);
  ASSERT_OK(run_sync(*loop_, node->write(0, IoVec(buf.data(), buf.size()))));
  ASSERT_OK(run_sync(*loop_, node->write_zeroes(65536, 65536, {})));
  ASSERT_OK(run_sync(*loop_, node->flush()));
  file.clear_log();
  std::vector<uint8_t> again(3 * 65536, 43);
  ASSERT_OK(run_sync(*loop_, node->write(0, IoVec(again.data(), again.size()))));
  std::vector<RecordedRequest> want = {{Kind::kWrite, 0x50000, 3 * 65536, {}}};
  EXPECT_EQ(data_io(file), want);
  ASSERT_OK(run_sync(*loop_, node->flush()));
  std::vector<uint8_t> back(3 * 65536);
  ASSERT_OK(run_sync(*loop_, node->read(0, IoVec(back.data(), back.size()))));
  EXPECT_EQ(back, again);
  Result<BlockStatus> st = run_sync(*loop_, node->block_status(65536, 65536, WantZero::kYes));
  ASSERT_OK(st);
  EXPECT_EQ(st->flags & kStatusZero, 0u);
  EXPECT_EQ(st->host_offset, 0x60000u);
  close(*node);
}

}  // namespace
}  // namespace qblock::qcow2
