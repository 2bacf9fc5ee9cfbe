// WriteCoalescer tests against a recording sink: which writes go out, merged how, with what
// results, and that the bytes land where their callers asked.
#include "block/protocols/write_coalescer.h"

#include <algorithm>
#include <cerrno>
#include <memory>
#include <utility>
#include <vector>

#include "block/test_util.h"

namespace qblock {
namespace {

// Records every write it is sent into memory. Each write stays in flight for one loop
// iteration; writes touching [bad_begin, bad_end) fail with EIO.
class RecordingSink : public WriteSink {
 public:
  struct Sent {
    uint64_t offset;
    uint64_t bytes;
    bool operator==(const Sent&) const = default;
  };

  RecordingSink(EventLoop& loop, uint64_t size) : loop_(loop), data_(size, 0) {}

  Task<int64_t> write_out(uint64_t offset, IoVec qiov) override {
    sent_.push_back({offset, qiov.size()});
    ++in_flight_;
    max_in_flight_ = std::max(max_in_flight_, in_flight_);
    co_await loop_.yield();
    --in_flight_;
    if (offset < bad_end_ && offset + qiov.size() > bad_begin_) co_return -EIO;
    qiov.copy_to(0, data_.data() + offset, qiov.size());
    co_return static_cast<int64_t>(qiov.size());
  }

  void fail_range(uint64_t begin, uint64_t end) {
    bad_begin_ = begin;
    bad_end_ = end;
  }
  const std::vector<Sent>& sent() const { return sent_; }
  unsigned max_in_flight() const { return max_in_flight_; }
  const std::vector<uint8_t>& data() const { return data_; }

 private:
  EventLoop& loop_;
  std::vector<uint8_t> data_;
  std::vector<Sent> sent_;
  unsigned in_flight_ = 0, max_in_flight_ = 0;
  uint64_t bad_begin_ = 0, bad_end_ = 0;
};

// One caller's write: `bytes` of `byte` at `offset`, in a buffer that lives as long as the
// test's vector of writes.
struct Write {
  uint64_t offset;
  std::vector<uint8_t> buffer;
  Write(uint64_t off, uint64_t bytes, uint8_t byte) : offset(off), buffer(bytes, byte) {}
};

class WriteCoalescerTest : public testing::LoopTest {
 protected:
  void SetUp() override {
    LoopTest::SetUp();
    sink_ = std::make_unique<RecordingSink>(*loop_, 24 << 20);
    coalescer_ = std::make_unique<WriteCoalescer>(*loop_, *sink_);
  }

  // Issues every write at once (in order) and returns their results.
  std::vector<int64_t> write_concurrently(std::vector<Write>& writes) {
    std::vector<Task<int64_t>> tasks;
    for (Write& w : writes) {
      tasks.push_back(coalescer_->write(w.offset, IoVec(w.buffer.data(), w.buffer.size())));
    }
    return run_sync(*loop_, when_all(std::move(tasks)));
  }

  void expect_landed(const std::vector<Write>& writes) {
    for (const Write& w : writes) {
      EXPECT_TRUE(std::equal(w.buffer.begin(), w.buffer.end(), sink_->data().begin() + w.offset))
          << "the write at " << w.offset << " did not land";
    }
  }

  std::unique_ptr<RecordingSink> sink_;
  std::unique_ptr<WriteCoalescer> coalescer_;
};

TEST_F(WriteCoalescerTest, FirstWriteGoesOutAtOnceAndTheHeldOnesAsOneMergedWrite) {
  std::vector<Write> writes;
  for (int i = 0; i < 9; ++i) writes.emplace_back(1024 + i * 65536, 65536, 0x10 + i);
  std::vector<int64_t> results = write_concurrently(writes);
  EXPECT_EQ(results, std::vector<int64_t>(9, 65536));
  using Sent = RecordingSink::Sent;
  EXPECT_EQ(sink_->sent(), (std::vector<Sent>{{1024, 65536}, {1024 + 65536, 8 * 65536}}));
  EXPECT_EQ(sink_->max_in_flight(), 1u);
  expect_landed(writes);
}

TEST_F(WriteCoalescerTest, HeldWritesAreSortedAndOnlyContiguousOnesMerged) {
  std::vector<Write> writes;
  writes.emplace_back(0, 512, 1);          // goes out alone
  writes.emplace_back(20000, 1000, 2);     // second run, second part
  writes.emplace_back(5000, 700, 3);       // first run
  writes.emplace_back(19000, 1000, 4);     // second run, first part
  writes.emplace_back(21000 + 1, 512, 5);  // a gap of one byte: a run of its own
  std::vector<int64_t> results = write_concurrently(writes);
  EXPECT_EQ(results, (std::vector<int64_t>{512, 1000, 700, 1000, 512}));
  using Sent = RecordingSink::Sent;
  EXPECT_EQ(sink_->sent(), (std::vector<Sent>{{0, 512}, {5000, 700}, {19000, 2000}, {21001, 512}}));
  // The three runs of the second batch are in flight together.
  EXPECT_EQ(sink_->max_in_flight(), 3u);
  expect_landed(writes);
}

TEST_F(WriteCoalescerTest, FailedMergedWriteIsRetriedSoOnlyTheFailingCallerSeesTheError) {
  std::vector<Write> writes;
  for (int i = 0; i < 5; ++i) writes.emplace_back(i * 4096 + 512, 4096, 0x20 + i);
  sink_->fail_range(3 * 4096 + 600, 3 * 4096 + 601);  // inside the fourth write
  std::vector<int64_t> results = write_concurrently(writes);
  EXPECT_EQ(results, (std::vector<int64_t>{4096, 4096, 4096, -EIO, 4096}));
  using Sent = RecordingSink::Sent;
  EXPECT_EQ(sink_->sent(), (std::vector<Sent>{{512, 4096},
                                              {4096 + 512, 4 * 4096},  // merged, fails
                                              {4096 + 512, 4096},
                                              {2 * 4096 + 512, 4096},
                                              {3 * 4096 + 512, 4096},
                                              {4 * 4096 + 512, 4096}}));
  writes.erase(writes.begin() + 3);
  expect_landed(writes);
}

TEST_F(WriteCoalescerTest, MergedWritesStayWithinTheSegmentAndByteLimits) {
  // 1 + 1100 one-segment writes of 512 bytes: the held 1100 need two merged writes.
  std::vector<Write> small;
  for (int i = 0; i < 1101; ++i) small.emplace_back(i * 512, 512, static_cast<uint8_t>(i));
  write_concurrently(small);
  ASSERT_EQ(sink_->sent().size(), 3u);
  EXPECT_EQ(sink_->sent()[1].bytes, WriteCoalescer::kMaxSegments * 512);
  EXPECT_EQ(sink_->sent()[2].bytes, (1100 - WriteCoalescer::kMaxSegments) * 512);
  expect_landed(small);

  // 1 + 20 writes of 1 MiB: the held 20 need a 16 MiB and a 4 MiB write.
  std::vector<Write> large;
  for (int i = 0; i < 21; ++i)
    large.emplace_back(static_cast<uint64_t>(i) << 20, 1 << 20, 0x40 + i);
  write_concurrently(large);
  ASSERT_EQ(sink_->sent().size(), 6u);
  EXPECT_EQ(sink_->sent()[4].bytes, WriteCoalescer::kMaxBytes);
  EXPECT_EQ(sink_->sent()[5].bytes, 4u << 20);
  expect_landed(large);
}

// A caller that keeps `depth` writes of 64 KiB going, each 1 KiB past a 64 KiB boundary and
// following the previous one (W3's pattern).
Task<void> stream_writer(WriteCoalescer& coalescer, uint64_t& next, uint64_t count,
                         std::vector<uint8_t>& source) {
  while (next < count) {
    const uint64_t i = next++;
    int64_t r = co_await coalescer.write(1024 + i * 65536, IoVec(source.data() + i * 65536, 65536));
    EXPECT_EQ(r, 65536);
  }
}

TEST_F(WriteCoalescerTest, AStreamOfContiguousWritesGoesOutInFewLargeWritesOneBatchAtATime) {
  constexpr uint64_t kCount = 256;
  std::vector<uint8_t> source(kCount * 65536);
  for (std::size_t i = 0; i < source.size(); ++i)
    source[i] = static_cast<uint8_t>(i * 7 + i / 4096);
  uint64_t next = 0;
  std::vector<Task<void>> writers;
  for (int d = 0; d < 16; ++d) writers.push_back(stream_writer(*coalescer_, next, kCount, source));
  run_sync(*loop_, when_all(std::move(writers)));
  EXPECT_EQ(sink_->max_in_flight(), 1u);
  EXPECT_LE(sink_->sent().size(), kCount / 8) << "writes were not merged";
  uint64_t bytes = 0;
  for (const auto& s : sink_->sent()) bytes += s.bytes;
  EXPECT_EQ(bytes, kCount * 65536);
  EXPECT_TRUE(std::equal(source.begin(), source.end(), sink_->data().begin() + 1024));
}

}  // namespace
}  // namespace qblock
