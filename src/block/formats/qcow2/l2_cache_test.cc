// The metadata caches: the LRU bookkeeping, and the qcow2 node's caches at the request level
// (slice size chosen as QEMU chooses it, bounded caches that write dirty entries back in
// qcow2-format.md §17's order and lose nothing), over a recording memory node.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>

#include "block/formats/qcow2/create.h"
#include "block/formats/qcow2/header.h"
#include "block/formats/qcow2/lru_cache.h"
#include "block/protocols/memory.h"
#include "block/test_util.h"

namespace qblock::qcow2 {
namespace {

using Kind = RecordedRequest::Kind;
using testing::LoopTest;
using testing::TempDir;

TEST(LruCacheTest, VictimIsTheLeastRecentlyUsedUnpinnedEntry) {
  LruCache<int> cache(3);
  cache.insert(1, std::make_shared<int>(10));
  cache.insert(2, std::make_shared<int>(20));
  cache.insert(3, std::make_shared<int>(30));
  EXPECT_TRUE(cache.full());
  EXPECT_EQ(cache.victim(), 1u);
  ASSERT_NE(cache.find(1), nullptr);  // touched: now the most recent
  EXPECT_EQ(cache.victim(), 2u);
  std::shared_ptr<int> pinned = cache.find(2);
  EXPECT_EQ(cache.victim(), 3u) << "a held entry is not evicted";
  cache.erase(3);
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.find(3), nullptr);
}

TEST(LruCacheTest, EveryEntryPinnedMeansNoVictim) {
  LruCache<int> cache(1);
  cache.insert(7, std::make_shared<int>(1));
  std::shared_ptr<int> held = cache.find(7);
  EXPECT_FALSE(cache.victim());
}

TEST(LruCacheTest, DropIdleForgetsWhatWasNotUsedForAnInterval) {
  LruCache<int> cache(4);
  cache.insert(1, std::make_shared<int>(1));
  cache.insert(2, std::make_shared<int>(2));
  cache.insert(3, std::make_shared<int>(3));
  cache.drop_idle([](const int&) { return true; });  // all used in the first interval
  EXPECT_EQ(cache.size(), 3u);
  ASSERT_NE(cache.find(2), nullptr);
  std::shared_ptr<int> pinned = cache.find(3);
  cache.drop_idle([](const int& v) { return v != 3; });
  EXPECT_EQ(cache.find(1), nullptr) << "idle";
  EXPECT_NE(cache.find(2), nullptr) << "used during the interval";
  EXPECT_NE(cache.find(3), nullptr) << "pinned";
}

class Qcow2CacheTest : public LoopTest {
 protected:
  // A fresh image of `size` bytes with `cluster_size` clusters on a recording memory node,
  // opened with the extra qcow2 options `options` (JSON members, each followed by a comma).
  NodePtr open_fresh(uint64_t size, uint64_t cluster_size, const std::string& options,
                     bool extended_l2 = false) {
    Qcow2CreateOptions opts;
    opts.filename = dir_.file("t.qcow2");
    opts.size = size;
    opts.cluster_size = cluster_size;
    opts.extended_l2 = extended_l2;
    Status s = run_sync(*loop_, create_qcow2(*loop_, opts));
    EXPECT_TRUE(s) << s.error().message();
    return open(R"({"driver":"qcow2",)" + options +
                R"("file":{"driver":"memory","efficient-zeroes":true,"image":")" + opts.filename +
                "\"}}");
  }
  MemoryNode& file_of(BlockNode& qcow2) { return static_cast<MemoryNode&>(*qcow2.primary_child()); }
  // Writes what the memory node holds to `path`, for a reopen.
  static void save(const MemoryNode& m, const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(std::fwrite(m.data().data(), 1, m.data().size(), f), m.data().size());
    std::fclose(f);
  }
  NodePtr reopen(const std::string& options) {
    return open(R"({"driver":"qcow2",)" + options + R"("file":{"driver":"memory","image":")" +
                dir_.file("t.qcow2") + "\"}}");
  }
  // The reads of L2 metadata: every read that is not of guest data (all guest data written
  // by these tests is at host offsets the reads below do not ask for).
  static std::vector<uint64_t> read_sizes(const MemoryNode& m) {
    std::vector<uint64_t> sizes;
    for (const RecordedRequest& r : m.log()) {
      if (r.kind == Kind::kRead) sizes.push_back(r.bytes);
    }
    return sizes;
  }
  void write_pattern(BlockNode& node, uint64_t offset, uint8_t pattern) {
    std::vector<uint8_t> buf(4096, pattern);
    ASSERT_OK(run_sync(*loop_, node.write(offset, IoVec(buf.data(), buf.size()))));
  }
  void expect_pattern(BlockNode& node, uint64_t offset, uint8_t pattern) {
    std::vector<uint8_t> buf(4096, 0xee);
    ASSERT_OK(run_sync(*loop_, node.read(offset, IoVec(buf.data(), buf.size()))));
    EXPECT_TRUE(std::all_of(buf.begin(), buf.end(), [&](uint8_t b) { return b == pattern; }))
        << "at " << offset;
  }
  TempDir dir_;
};

// QEMU's rule: an L2 cache that cannot cover the whole disk uses 4 KiB entries, so a miss
// reads 4 KiB of an L2 table, not the whole cluster.
TEST_F(Qcow2CacheTest, CacheSmallerThanTheDiskLoadsFourKibSlices) {
  const uint64_t size = 64ULL << 30;  // 64 GiB: 8 MiB of L2 tables with 64 KiB clusters
  NodePtr node = open_fresh(size, 65536, R"("l2-cache-size":"1M",)");
  const uint64_t span = 8192ULL * 65536;  // guest bytes one L2 table maps
  for (uint64_t t = 0; t < 4; ++t) {
    write_pattern(*node, t * span + 4096, static_cast<uint8_t>(t + 1));
  }
  close(*node);
  save(file_of(*node), dir_.file("t.qcow2"));
  node = reopen(R"("l2-cache-size":"1M",)");
  MemoryNode& file = file_of(*node);
  file.clear_log();
  std::vector<uint8_t> buf(4096);
  for (uint64_t t = 0; t < 4; ++t) {
    ASSERT_OK(run_sync(*loop_, node->read(t * span + 4096, IoVec(buf.data(), buf.size()))));
  }
  std::vector<uint64_t> reads = read_sizes(file);
  EXPECT_EQ(std::count(reads.begin(), reads.end(), 4096u), 8) << "4 slice loads + 4 data reads";
  EXPECT_EQ(std::count(reads.begin(), reads.end(), 65536u), 0) << "no whole-table load";
  close(*node);
}

// Extended L2 entries (qcow2-format.md §7): 16-byte entries in 4 KiB slices of two-slice
// cache; the subcluster bitmaps travel with the entries through eviction and reopen.
TEST_F(Qcow2CacheTest, ExtendedEntriesKeepTheirBitmapsThroughEviction) {
  NodePtr node = open_fresh(1ULL << 30, 65536, R"("l2-cache-size":"8k",)", true);
  const uint64_t slice_span = 256ULL * 65536;  // 4 KiB of 16-byte entries
  for (uint64_t t = 0; t < 4; ++t) {
    write_pattern(*node, t * slice_span + 4096, static_cast<uint8_t>(t + 1));
  }
  close(*node);
  const std::vector<uint8_t>& disk = file_of(*node).data();
  uint64_t l1_offset = 0;
  for (int i = 0; i < 8; ++i) l1_offset = l1_offset << 8 | disk[40 + i];
  uint64_t words[2] = {0, 0};  // L1 entry 0, then the first entry's bitmap
  for (int i = 0; i < 8; ++i) words[0] = words[0] << 8 | disk[l1_offset + i];
  const uint64_t table = words[0] & kOffsetMask;
  for (int i = 0; i < 8; ++i) words[1] = words[1] << 8 | disk[table + 8 + i];
  EXPECT_EQ(words[1], 0xcu) << "subclusters 2 and 3 allocated, nothing else";
  save(file_of(*node), dir_.file("t.qcow2"));
  node = reopen(R"("l2-cache-size":"8k",)");
  for (uint64_t t = 0; t < 4; ++t) {
    expect_pattern(*node, t * slice_span + 4096, static_cast<uint8_t>(t + 1));
    expect_pattern(*node, t * slice_span + 8192, 0);
  }
  close(*node);
}

TEST_F(Qcow2CacheTest, CacheCoveringTheDiskLoadsWholeTables) {
  NodePtr node = open_fresh(1ULL << 30, 65536, "");
  write_pattern(*node, 0, 1);
  close(*node);
  save(file_of(*node), dir_.file("t.qcow2"));
  node = reopen("");
  MemoryNode& file = file_of(*node);
  file.clear_log();
  expect_pattern(*node, 0, 1);
  std::vector<uint64_t> reads = read_sizes(file);
  EXPECT_EQ(std::count(reads.begin(), reads.end(), 65536u), 1);
  close(*node);
}

TEST_F(Qcow2CacheTest, ExplicitEntrySizeIsHonoured) {
  NodePtr node = open_fresh(64ULL << 30, 65536, R"("l2-cache-size":"1M",)");
  write_pattern(*node, 0, 1);
  close(*node);
  save(file_of(*node), dir_.file("t.qcow2"));
  node = reopen(R"("l2-cache-size":"1M","l2-cache-entry-size":"16k",)");
  MemoryNode& file = file_of(*node);
  file.clear_log();
  expect_pattern(*node, 0, 1);
  std::vector<uint64_t> reads = read_sizes(file);
  EXPECT_EQ(std::count(reads.begin(), reads.end(), 16384u), 1);
  close(*node);
}

// Two slices of cache for writes all over a 4 KiB-cluster image: dirty slices leave the cache
// all the time, each written back only after a flush has made its refcounts and data stable.
TEST_F(Qcow2CacheTest, DirtySlicesEvictedUnderPressureAreWrittenBackAfterAFlush) {
  const uint64_t cs = 4096;
  const uint64_t span = 512 * cs;  // one L2 table (and one slice)
  NodePtr node = open_fresh(64 * span, cs, R"("l2-cache-size":"8k",)");
  MemoryNode& file = file_of(*node);
  file.clear_log();
  for (uint64_t round = 0; round < 3; ++round) {
    for (uint64_t t = 0; t < 16; ++t) {
      write_pattern(*node, t * span + round * cs, static_cast<uint8_t>(16 * round + t + 1));
    }
  }
  for (uint64_t round = 0; round < 3; ++round) {
    for (uint64_t t = 0; t < 16; ++t) {
      expect_pattern(*node, t * span + round * cs, static_cast<uint8_t>(16 * round + t + 1));
    }
  }
  close(*node);
  // Where the L2 tables and the guest data ended up, from the image itself.
  const std::vector<uint8_t>& image = file.data();
  auto be64 = [&](uint64_t at) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = v << 8 | image[at + i];
    return v;
  };
  const uint64_t l1_offset = be64(40);
  std::vector<uint64_t> tables, data;
  for (uint64_t t = 0; t < 16; ++t) {
    const uint64_t table = be64(l1_offset + t * 8) & kOffsetMask;
    tables.push_back(table);
    for (uint64_t round = 0; round < 3; ++round)
      data.push_back(be64(table + round * 8) & kOffsetMask);
  }
  auto is_in = [](const std::vector<uint64_t>& v, uint64_t x) {
    return std::find(v.begin(), v.end(), x) != v.end();
  };
  // §17 R3: every write of an L2 table comes after a flush that followed the data writes
  // before it. Counting them shows the cache really evicted dirty tables.
  bool data_since_flush = false;
  int table_writes = 0;
  for (const RecordedRequest& r : file.log()) {
    if (r.kind == Kind::kFlush) data_since_flush = false;
    if (r.kind != Kind::kWrite) continue;
    if (is_in(data, r.offset)) data_since_flush = true;
    if (is_in(tables, r.offset)) {
      ++table_writes;
      EXPECT_FALSE(data_since_flush) << "L2 table written at " << r.offset << " before a flush";
    }
  }
  EXPECT_GT(table_writes, 16 + 16) << "new tables, plus write-backs on eviction";
  // Nothing was lost: a reopen with the default caches reads every pattern.
  save(file, dir_.file("t.qcow2"));
  node = reopen("");
  for (uint64_t round = 0; round < 3; ++round) {
    for (uint64_t t = 0; t < 16; ++t) {
      expect_pattern(*node, t * span + round * cs, static_cast<uint8_t>(16 * round + t + 1));
    }
  }
  close(*node);
}

TEST_F(Qcow2CacheTest, BadCacheOptionsGetQemusMessages) {
  Qcow2CreateOptions opts;
  opts.filename = dir_.file("t.qcow2");
  opts.size = 1 << 30;
  ASSERT_OK(run_sync(*loop_, create_qcow2(*loop_, opts)));
  struct Case {
    const char* options;
    const char* message;
  } cases[] = {
      {R"("cache-size":"1M","l2-cache-size":"512k","refcount-cache-size":"256k",)",
       "cache-size, l2-cache-size and refcount-cache-size may not be set at the same time"},
      {R"("cache-size":"1M","l2-cache-size":"2M",)", "l2-cache-size may not exceed cache-size"},
      {R"("cache-size":"1M","refcount-cache-size":"2M",)",
       "refcount-cache-size may not exceed cache-size"},
      {R"("l2-cache-entry-size":"1000",)",
       "L2 cache entry size must be a power of two between 512 and the cluster size (65536)"},
      {R"("l2-cache-entry-size":"128k",)",
       "L2 cache entry size must be a power of two between 512 and the cluster size (65536)"},
      {R"("cache-clean-interval":"5000000000",)", "Cache clean interval too big"},
  };
  for (const Case& c : cases) {
    const std::string json = R"({"driver":"qcow2",)" + std::string(c.options) +
                             R"("file":{"driver":"file","filename":")" + opts.filename + "\"}}";
    Result<NodePtr> node = run_sync(*loop_, open_node(*loop_, Options::parse(json), {}, ""));
    ASSERT_FALSE(node) << c.options;
    EXPECT_EQ(node.error().message(), c.message) << c.options;
  }
}

}  // namespace
}  // namespace qblock::qcow2
