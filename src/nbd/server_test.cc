#include "nbd/server.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "base/byte_order.h"
#include "block/formats/qcow2/create.h"
#include "block/test_util.h"
#include "nbd/protocol.h"
#include "qblock/block_backend.h"

namespace qblock::nbd {
namespace {

using qblock::testing::TempDir;

// The client side of a scripted conversation: everything the client says is known in advance
// (the server never needs an answer to go on), so it is fed in one go and the server's
// replies are collected for the test to parse.
class ScriptedStream final : public Stream {
 public:
  ScriptedStream(std::vector<uint8_t> input, std::vector<uint8_t>* output)
      : input_(std::move(input)), output_(output) {}
  Task<Result<std::size_t>> read_some(void* buf, std::size_t len) override {
    // Hand the bytes out in small pieces so that headers and payloads straddle reads.
    const std::size_t n = std::min({len, input_.size() - pos_, std::size_t{1000}});
    std::memcpy(buf, input_.data() + pos_, n);
    pos_ += n;
    co_return n;
  }
  Task<Status> write_all(std::span<const iovec> iov) override {
    for (const iovec& v : iov) {
      const auto* p = static_cast<const uint8_t*>(v.iov_base);
      output_->insert(output_->end(), p, p + v.iov_len);
    }
    co_return Status{};
  }
  void shutdown() override {}
  int fd() const override { return -1; }

 private:
  std::vector<uint8_t> input_;
  std::size_t pos_ = 0;
  std::vector<uint8_t>* output_;
};

// Builds what a client sends.
class Script {
 public:
  Script() { u32(kClientFixedNewstyle | kClientNoZeroes); }
  Script& option(uint32_t opt, const std::vector<uint8_t>& data = {}) {
    u64(kOptionMagic).u32(opt).u32(static_cast<uint32_t>(data.size()));
    bytes_.insert(bytes_.end(), data.begin(), data.end());
    return *this;
  }
  Script& go(const std::string& name) {
    std::vector<uint8_t> d(4);
    store_be32(d.data(), static_cast<uint32_t>(name.size()));
    d.insert(d.end(), name.begin(), name.end());
    d.insert(d.end(), {0, 1, 0, 1});  // one info request: NBD_INFO_NAME
    return option(kOptGo, d);
  }
  Script& set_meta(const std::string& name, const std::vector<std::string>& queries) {
    std::vector<uint8_t> d(4);
    store_be32(d.data(), static_cast<uint32_t>(name.size()));
    d.insert(d.end(), name.begin(), name.end());
    d.resize(d.size() + 4);
    store_be32(d.data() + d.size() - 4, static_cast<uint32_t>(queries.size()));
    for (const std::string& q : queries) {
      d.resize(d.size() + 4);
      store_be32(d.data() + d.size() - 4, static_cast<uint32_t>(q.size()));
      d.insert(d.end(), q.begin(), q.end());
    }
    return option(kOptSetMetaContext, d);
  }
  Script& request(uint16_t type, uint64_t cookie, uint64_t offset, uint32_t length,
                  uint16_t flags = 0, const std::vector<uint8_t>& payload = {}) {
    u32(kRequestMagic).u16(flags).u16(type).u64(cookie).u64(offset).u32(length);
    bytes_.insert(bytes_.end(), payload.begin(), payload.end());
    return *this;
  }
  std::vector<uint8_t> take() { return std::move(bytes_); }

 private:
  Script& u16(uint16_t v) {
    bytes_.resize(bytes_.size() + 2);
    store_be16(bytes_.data() + bytes_.size() - 2, v);
    return *this;
  }
  Script& u32(uint32_t v) {
    bytes_.resize(bytes_.size() + 4);
    store_be32(bytes_.data() + bytes_.size() - 4, v);
    return *this;
  }
  Script& u64(uint64_t v) {
    bytes_.resize(bytes_.size() + 8);
    store_be64(bytes_.data() + bytes_.size() - 8, v);
    return *this;
  }
  std::vector<uint8_t> bytes_;
};

// One parsed reply chunk (simple replies become one chunk of type kReplyNone / error).
struct Chunk {
  uint16_t type = 0;
  bool done = true;
  uint32_t error = 0;
  std::vector<uint8_t> payload;
};

// Parses the server's output: greeting, option replies (returned by type), then replies.
struct Parsed {
  std::vector<std::pair<uint32_t, std::vector<uint8_t>>> option_replies;  // (type, data)
  std::map<uint64_t, std::vector<Chunk>> replies;                         // by cookie
  bool ok = false;
};

Parsed parse(const std::vector<uint8_t>& out, bool structured, uint64_t read_cookie_mask = 0,
             uint32_t read_length = 0) {
  Parsed p;
  std::size_t pos = 18;  // NBDMAGIC, IHAVEOPT, handshake flags
  if (out.size() < pos || load_be64(out.data()) != kNbdMagic) return p;
  bool in_options = true;
  while (pos < out.size()) {
    const uint8_t* h = out.data() + pos;
    if (in_options) {
      if (out.size() - pos < 20 || load_be64(h) != kOptionReplyMagic) break;
      const uint32_t option = load_be32(h + 8);
      const uint32_t type = load_be32(h + 12);
      const uint32_t len = load_be32(h + 16);
      p.option_replies.push_back({type, std::vector<uint8_t>(h + 20, h + 20 + len)});
      pos += 20 + len;
      if (option == kOptGo && type == kRepAck) in_options = false;
      continue;
    }
    const uint32_t magic = load_be32(h);
    Chunk c;
    const uint64_t cookie = load_be64(h + 8);
    if (magic == kSimpleReplyMagic) {
      c.error = load_be32(h + 4);
      pos += 16;
      // A successful simple read reply carries the data (the test says which cookies read).
      if (c.error == 0 && (cookie & read_cookie_mask)) {
        c.payload.assign(out.data() + pos, out.data() + pos + read_length);
        pos += read_length;
      }
    } else if (magic == kStructuredReplyMagic && structured) {
      c.done = load_be16(h + 4) & kReplyFlagDone;
      c.type = load_be16(h + 6);
      const uint32_t len = load_be32(h + 16);
      c.payload.assign(h + 20, h + 20 + len);
      if (c.type & 0x8000) c.error = load_be32(h + 20);
      pos += 20 + len;
    } else {
      return p;
    }
    p.replies[cookie].push_back(std::move(c));
  }
  p.ok = pos == out.size();
  return p;
}

class NbdServerTest : public qblock::testing::LoopTest {
 protected:
  // A 4 MiB qcow2 image (64 KiB clusters) in a temporary directory.
  void open_image(bool read_only = false) {
    const std::string image = dir_.file("disk.qcow2");
    qcow2::Qcow2CreateOptions opts;
    opts.filename = image;
    opts.size = 4 << 20;
    ASSERT_OK(run_sync(*loop_, qcow2::create_qcow2(*loop_, opts)));
    BackendOptions options;
    options.filename = image;
    options.format = "qcow2";
    options.flags.read_only = read_only;
    Result<std::unique_ptr<BlockBackend>> opened =
        run_sync(*loop_, BlockBackend::open(*loop_, std::move(options)));
    ASSERT_OK(opened);
    backend_ = std::move(*opened);
  }
  void TearDown() override {
    if (backend_) EXPECT_OK(run_sync(*loop_, backend_->close()));
  }
  // Runs one connection through the script and returns what the server sent.
  std::vector<uint8_t> converse(std::vector<uint8_t> input, ExportOptions options = {},
                                ServerLimits limits = {}) {
    std::vector<uint8_t> output;
    Server server(*backend_, std::move(options), nullptr, limits);
    run_sync(*loop_, server.serve(std::make_unique<ScriptedStream>(std::move(input), &output)));
    return output;
  }
  // Writes through the backend before a conversation: requests in flight together have no
  // order in NBD, so a script cannot make a read depend on its own earlier write.
  void write_direct(uint64_t offset, std::vector<uint8_t> data) {
    EXPECT_OK(run_sync(*loop_, backend_->write(offset, IoVec(data.data(), data.size()))));
  }
  std::vector<uint8_t> read_back(uint64_t offset, std::size_t len) {
    std::vector<uint8_t> data(len);
    EXPECT_OK(run_sync(*loop_, backend_->read(offset, IoVec(data.data(), len))));
    return data;
  }

  TempDir dir_;
  std::unique_ptr<BlockBackend> backend_;
};

TEST_F(NbdServerTest, GoAnswersWithNameBlockSizesAndExportInfo) {
  open_image();
  ExportOptions options;
  options.name = "disk";
  Parsed p = parse(converse(Script().go("disk").take(), options), false);
  ASSERT_TRUE(p.ok);
  ASSERT_EQ(p.option_replies.size(), 4u);  // name, block size, export, ack
  EXPECT_EQ(load_be16(p.option_replies[0].second.data()), kInfoName);
  const std::vector<uint8_t>& sizes = p.option_replies[1].second;
  EXPECT_EQ(load_be16(sizes.data()), kInfoBlockSize);
  EXPECT_EQ(load_be32(sizes.data() + 2), 1u);
  EXPECT_EQ(load_be32(sizes.data() + 10), kMaxPayloadBytes);
  const std::vector<uint8_t>& info = p.option_replies[2].second;
  EXPECT_EQ(load_be16(info.data()), kInfoExport);
  EXPECT_EQ(load_be64(info.data() + 2), 4u << 20);
  const uint16_t flags = load_be16(info.data() + 10);
  EXPECT_TRUE(flags & kTxSendFastZero);
  EXPECT_FALSE(flags & kTxReadOnly);
  EXPECT_FALSE(flags & kTxCanMultiConn);  // one client unless the tool allows more
  EXPECT_EQ(p.option_replies[3].first, kRepAck);
}

TEST_F(NbdServerTest, UnknownExportAndUnknownOptionAreErrorsNotDisconnects) {
  open_image();
  Script s;
  s.go("other").option(99, {1, 2, 3}).go("");
  Parsed p = parse(converse(s.take()), false);
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.option_replies[0].first, kRepErrUnknown);
  EXPECT_EQ(p.option_replies[1].first, kRepErrUnsup);
  EXPECT_EQ(p.option_replies.back().first, kRepAck);
}

TEST_F(NbdServerTest, SeveralExportsAreListedChosenByNameAndRemovedOneByOne) {
  open_image();
  Server server(*loop_);
  ExportOptions rw;
  rw.name = "rw";
  ExportOptions ro;
  ro.name = "ro";
  ro.read_only = true;
  ASSERT_OK(server.add_export(*backend_, rw));
  ASSERT_OK(server.add_export(*backend_, ro));
  EXPECT_FALSE(static_cast<bool>(server.add_export(*backend_, ro)));  // EEXIST
  const auto converse_with = [&](Script& script) {
    std::vector<uint8_t> output;
    run_sync(*loop_, server.serve(std::make_unique<ScriptedStream>(script.take(), &output)));
    return parse(output, false);
  };
  Script list;
  list.option(kOptList).go("ro");
  Parsed p = converse_with(list);
  ASSERT_TRUE(p.ok);
  ASSERT_GE(p.option_replies.size(), 3u);
  EXPECT_EQ(p.option_replies[0].first, kRepServer);
  EXPECT_EQ(std::string(p.option_replies[0].second.begin() + 4, p.option_replies[0].second.end()),
            "rw");
  EXPECT_EQ(std::string(p.option_replies[1].second.begin() + 4, p.option_replies[1].second.end()),
            "ro");
  EXPECT_EQ(p.option_replies[2].first, kRepAck);
  const std::vector<uint8_t>& info = p.option_replies[5].second;  // name, block size, export
  ASSERT_EQ(load_be16(info.data()), kInfoExport);
  EXPECT_TRUE(load_be16(info.data() + 10) & kTxReadOnly);

  run_sync(*loop_, server.remove_export("ro"));
  Script gone;
  gone.go("ro").go("rw");
  Parsed q = converse_with(gone);
  ASSERT_TRUE(q.ok);
  EXPECT_EQ(q.option_replies[0].first, kRepErrUnknown);
  EXPECT_EQ(q.option_replies.back().first, kRepAck);
  EXPECT_EQ(server.connection_count("rw"), 0u);
}

TEST_F(NbdServerTest, StructuredReadSendsDataAndHoleChunks) {
  open_image();
  std::vector<uint8_t> pattern(65536, 0x5a);
  write_direct(0, pattern);
  Script s;
  s.option(kOptStructuredReply).go("");
  s.request(kCmdRead, 2, 0, 3 * 65536);
  s.request(kCmdRead, 3, 0, 2 * 65536, kCmdFlagDf);
  Parsed p = parse(converse(s.take()), true);
  ASSERT_TRUE(p.ok);
  const std::vector<Chunk>& read = p.replies[2];
  ASSERT_EQ(read.size(), 2u);
  EXPECT_EQ(read[0].type, kReplyOffsetData);
  EXPECT_FALSE(read[0].done);
  EXPECT_EQ(load_be64(read[0].payload.data()), 0u);
  EXPECT_EQ(std::vector<uint8_t>(read[0].payload.begin() + 8, read[0].payload.end()), pattern);
  EXPECT_EQ(read[1].type, kReplyOffsetHole);
  EXPECT_TRUE(read[1].done);
  EXPECT_EQ(load_be64(read[1].payload.data()), 65536u);
  EXPECT_EQ(load_be32(read[1].payload.data() + 8), 2u * 65536);
  // DF: one data chunk, zeros included.
  ASSERT_EQ(p.replies[3].size(), 1u);
  EXPECT_EQ(p.replies[3][0].payload.size(), 8u + 2 * 65536);
}

TEST_F(NbdServerTest, BlockStatusReportsBothContexts) {
  open_image();
  Script s;
  s.option(kOptStructuredReply).set_meta("", {kContextBaseAllocation, kContextAllocationDepth});
  s.go("");
  write_direct(65536, std::vector<uint8_t>(4096, 1));
  s.request(kCmdBlockStatus, 2, 0, 4 << 20);
  Parsed p = parse(converse(s.take()), true);
  ASSERT_TRUE(p.ok);
  const std::vector<Chunk>& status = p.replies[2];
  ASSERT_EQ(status.size(), 2u);
  std::map<uint32_t, std::vector<std::pair<uint32_t, uint32_t>>> extents;
  for (const Chunk& c : status) {
    EXPECT_EQ(c.type, kReplyBlockStatus);
    const uint32_t id = load_be32(c.payload.data());
    for (std::size_t i = 4; i + 8 <= c.payload.size(); i += 8) {
      extents[id].push_back({load_be32(c.payload.data() + i), load_be32(c.payload.data() + i + 4)});
    }
  }
  const std::vector<std::pair<uint32_t, uint32_t>> base = {
      {65536, kStateHole | kStateZero}, {65536, 0}, {(4 << 20) - 131072, kStateHole | kStateZero}};
  EXPECT_EQ(extents[kContextIdBaseAllocation], base);
  const std::vector<std::pair<uint32_t, uint32_t>> depth = {
      {65536, 0}, {65536, 1}, {(4 << 20) - 131072, 0}};
  EXPECT_EQ(extents[kContextIdAllocationDepth], depth);
}

TEST_F(NbdServerTest, OutOfRangeRequestsFailWithEinvalAndLeaveTheImageAlone) {
  open_image();
  Script s;
  s.go("");
  s.request(kCmdWrite, 1, (4 << 20) - 512, 1024, 0, std::vector<uint8_t>(1024, 7));
  s.request(kCmdWrite, 2, ~0ull - 511, 512, 0, std::vector<uint8_t>(512, 7));
  s.request(kCmdWriteZeroes, 3, 4 << 20, 1);
  s.request(kCmdRead, 4, 0, kMaxPayloadBytes + 1);
  s.request(kCmdRead, 5, 0, 512);  // still served afterwards
  s.request(77, 6, 0, 0);
  s.request(kCmdRead, 7, 0, 512, 0x40);  // unknown flag
  Parsed p = parse(converse(s.take()), false, /*read_cookie_mask=*/4, 512);
  ASSERT_TRUE(p.ok);
  for (uint64_t cookie : {1, 2, 3, 4, 6, 7}) EXPECT_EQ(p.replies[cookie][0].error, kErrInval);
  EXPECT_EQ(p.replies[5][0].error, 0u);
  EXPECT_EQ(read_back((4 << 20) - 512, 512), std::vector<uint8_t>(512, 0));
}

TEST_F(NbdServerTest, ReadOnlyExportRefusesWritesWithEperm) {
  open_image(/*read_only=*/true);
  Script s;
  s.go("");
  s.request(kCmdWrite, 1, 0, 512, 0, std::vector<uint8_t>(512, 1));
  s.request(kCmdTrim, 2, 0, 65536);
  s.request(kCmdWriteZeroes, 3, 0, 65536);
  s.request(kCmdFlush, 4, 0, 0);
  Parsed p = parse(converse(s.take()), false);
  ASSERT_TRUE(p.ok);
  for (uint64_t cookie : {1, 2, 3}) EXPECT_EQ(p.replies[cookie][0].error, kErrPerm);
  EXPECT_EQ(p.replies[4][0].error, 0u);
  const uint16_t flags = load_be16(p.option_replies[2].second.data() + 10);
  EXPECT_TRUE(flags & kTxReadOnly);
  // Read-only does not imply multi-conn: as qemu-nbd, only the export option sets it (a second
  // connection to a one-client server would never be accepted).
  EXPECT_FALSE(flags & kTxCanMultiConn);
}

TEST_F(NbdServerTest, FlowControlStillAnswersEveryPipelinedRequest) {
  open_image();
  Script s;
  s.go("");
  constexpr int kRequests = 200;
  for (int i = 0; i < kRequests; ++i) {
    s.request(kCmdWrite, 2 * i, (i % 64) * 65536, 4096, 0, std::vector<uint8_t>(4096, i));
    s.request(kCmdFlush, 2 * i + 1, 0, 0);
  }
  ServerLimits limits;
  limits.max_requests_in_flight = 2;
  limits.max_bytes_in_flight = 4096;
  Parsed p = parse(converse(s.take(), {}, limits), false);
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.replies.size(), 2u * kRequests);
  for (const auto& [cookie, chunks] : p.replies) EXPECT_EQ(chunks[0].error, 0u) << cookie;
  EXPECT_EQ(read_back(63 * 65536, 4096), std::vector<uint8_t>(4096, 191));
}

TEST_F(NbdServerTest, OversizedWriteIsRefusedAndEndsTheConnection) {
  open_image();
  Script s;
  s.go("");
  s.request(kCmdWrite, 1, 0, kMaxPayloadBytes + 1);
  s.request(kCmdRead, 2, 0, 512);  // never read: the connection is over
  Parsed p = parse(converse(s.take()), false);
  ASSERT_TRUE(p.ok);
  ASSERT_EQ(p.replies.size(), 1u);
  EXPECT_EQ(p.replies[1][0].error, kErrInval);
}

TEST_F(NbdServerTest, DetectZeroesTurnsZeroPayloadsIntoWriteZeroes) {
  open_image();
  ExportOptions options;
  options.detect_zeroes = DetectZeroes::kOn;
  Script s;
  s.go("");
  s.request(kCmdWrite, 1, 0, 65536, 0, std::vector<uint8_t>(65536, 0));
  Parsed p = parse(converse(s.take(), options), false);
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.replies[1][0].error, 0u);
  // A zero cluster, not a data cluster: nothing was written to the file.
  Result<BlockStatus> st = run_sync(*loop_, backend_->root().block_status(0, 65536, WantZero::kNo));
  ASSERT_OK(st);
  EXPECT_TRUE(st->flags & kStatusZero);
  EXPECT_FALSE(st->flags & kStatusData);
}

// REQ-NOFB-4: FAST_ZERO maps to NO_FALLBACK. Over a file that cannot zero efficiently (an
// in-memory node without efficient zeroes) it fails at once with ENOTSUP and writes nothing;
// without the flag the same request falls back to writing zeroes.
TEST_F(NbdServerTest, FastZeroFailsWithEnotsupWhereZeroingIsNotEfficient) {
  BackendOptions options;
  options.format = "raw";
  options.tree = Options::parse(R"({"file":{"driver":"memory","size":1048576}})");
  Result<std::unique_ptr<BlockBackend>> opened =
      run_sync(*loop_, BlockBackend::open(*loop_, std::move(options)));
  ASSERT_OK(opened);
  backend_ = std::move(*opened);
  write_direct(0, std::vector<uint8_t>(65536, 9));
  Script s;
  s.go("");
  s.request(kCmdWriteZeroes, 1, 0, 65536, kCmdFlagFastZero);
  Parsed p = parse(converse(s.take()), false);
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.replies[1][0].error, kErrNotSup);
  EXPECT_EQ(read_back(0, 65536), std::vector<uint8_t>(65536, 9));
  Script plain;
  plain.go("");
  plain.request(kCmdWriteZeroes, 2, 0, 65536);
  Parsed q = parse(converse(plain.take()), false);
  ASSERT_TRUE(q.ok);
  EXPECT_EQ(q.replies[2][0].error, 0u);
  EXPECT_EQ(read_back(0, 65536), std::vector<uint8_t>(65536, 0));
}

}  // namespace
}  // namespace qblock::nbd
