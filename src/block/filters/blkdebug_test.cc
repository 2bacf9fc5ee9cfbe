// blkdebug tests: inject-error and set-state rules (inline and from a rules file), iotype and
// sector matching, breakpoints, flag inheritance and filenames. Graphs are raw -> blkdebug ->
// memory, so the raw format emits read_aio/write_aio on blkdebug as in qemu-io runs.
#include "block/filters/blkdebug.h"

#include <gtest/gtest.h>

#include <fstream>

#include "block/protocols/memory.h"
#include "block/test_util.h"
#include "qblock/options.h"

namespace qblock {
namespace {

using testing::LoopTest;
using testing::TempDir;

Task<void> store_status(Task<Status> task, Status* out, bool* done) {
  *out = co_await std::move(task);
  *done = true;
}

// raw -> blkdebug(extra) -> memory(1 MiB).
std::string graph(const std::string& blkdebug_extra, const std::string& memory_extra = "") {
  return R"({"driver":"raw","file":{"driver":"blkdebug","image":{"driver":"memory","size":1048576)" +
         memory_extra + "}" + (blkdebug_extra.empty() ? "" : "," + blkdebug_extra) + "}}";
}

class BlkdebugTest : public LoopTest {
 protected:
  Status write(BlockNode& n, uint64_t offset, uint64_t len = 512, uint8_t byte = 0xab) {
    std::vector<uint8_t> buf(len, byte);
    return run_sync(*loop_, n.write(offset, IoVec(buf.data(), len)));
  }
  Status read(BlockNode& n, uint64_t offset, uint64_t len = 512) {
    std::vector<uint8_t> buf(len);
    return run_sync(*loop_, n.read(offset, IoVec(buf.data(), len)));
  }
  // Opens a graph from JSON that may use QEMU's single quotes; fails the test on error.
  NodePtr open(const std::string& json) {
    Result<NodePtr> node = try_open(json);
    EXPECT_TRUE(node.has_value()) << (node ? "" : node.error().message());
    return node ? std::move(*node) : nullptr;
  }
  Result<NodePtr> try_open(const std::string& json) {
    Result<Options> o = parse_json_options(json);
    if (!o) return fail(o.error());
    return run_sync(*loop_, open_node(*loop_, std::move(*o), {}, ""));
  }
  static BlkdebugFilter& blkdebug(BlockNode& root) {
    return static_cast<BlkdebugFilter&>(*root.primary_child());
  }
  static MemoryNode& memory(BlockNode& root) {
    return static_cast<MemoryNode&>(*root.primary_child()->primary_child());
  }
  // Runs the loop until `cond` holds (or a bound of iterations passes).
  template <typename F>
  bool run_until(F cond) {
    for (int i = 0; i < 1000 && !cond(); ++i) loop_->run_once(false);
    return cond();
  }
};

TEST_F(BlkdebugTest, InjectErrorOnWriteAioFailsWriteButNotEarlierRead) {
  NodePtr root = open(graph(R"("inject-error":[{"event":"write_aio","errno":"5"}])"));
  ASSERT_TRUE(root);
  EXPECT_OK(read(*root, 0));  // no event has armed the rule yet
  EXPECT_ERRNO(write(*root, 0), EIO);
  EXPECT_EQ(memory(*root).log().size(), 1u);  // only the read reached the image
  // QEMU 7.2: the armed rule (default iotypes) stays armed, so a later read fails too.
  EXPECT_ERRNO(read(*root, 0), EIO);
  close(*root);
}

TEST_F(BlkdebugTest, OnceFiresOneTimeOnly) {
  NodePtr root = open(graph(R"('inject-error':[{'event':'write_aio','once':'on'}])"));
  ASSERT_TRUE(root);
  EXPECT_ERRNO(write(*root, 0), EIO);
  EXPECT_OK(write(*root, 0));
  EXPECT_OK(read(*root, 0));
  EXPECT_EQ(memory(*root).data()[0], 0xab);
  close(*root);
}

TEST_F(BlkdebugTest, SectorMustFallInsideTheRequest) {
  NodePtr root = open(graph(R"('inject-error':[{'event':'write_aio','sector':9,'errno':28}])"));
  ASSERT_TRUE(root);
  EXPECT_OK(write(*root, 0));
  EXPECT_OK(write(*root, 4096));
  EXPECT_ERRNO(write(*root, 4608), ENOSPC);  // sector 9 = byte 4608
  EXPECT_OK(write(*root, 5120));
  EXPECT_ERRNO(write(*root, 4096, 1024), ENOSPC);
  close(*root);
}

TEST_F(BlkdebugTest, SetStateGatesInjectError) {
  NodePtr root = open(graph(
      R"('set-state':[{'event':'write_aio','new_state':2}],'inject-error':[{'event':'write_aio','state':2}])"));
  ASSERT_TRUE(root);
  EXPECT_EQ(blkdebug(*root).state(), 1);
  // The first write_aio sees state 1; the transition to 2 takes effect after the event.
  EXPECT_OK(write(*root, 0));
  EXPECT_EQ(blkdebug(*root).state(), 2);
  EXPECT_ERRNO(write(*root, 0), EIO);
  EXPECT_ERRNO(write(*root, 0), EIO);
  close(*root);
}

TEST_F(BlkdebugTest, SetStateWithStateOnlyInThatState) {
  NodePtr root = open(graph(
      R"('set-state':[{'event':'read_aio','state':2,'new_state':3},{'event':'write_aio','new_state':2}])"));
  ASSERT_TRUE(root);
  EXPECT_OK(read(*root, 0));
  EXPECT_EQ(blkdebug(*root).state(), 1);
  EXPECT_OK(write(*root, 0));
  EXPECT_EQ(blkdebug(*root).state(), 2);
  EXPECT_OK(read(*root, 0));
  EXPECT_EQ(blkdebug(*root).state(), 3);
  close(*root);
}

TEST_F(BlkdebugTest, IotypeFiltering) {
  NodePtr root = open(graph(R"('inject-error':[{'event':'write_aio','iotype':'flush'}])"));
  ASSERT_TRUE(root);
  EXPECT_OK(write(*root, 0));  // arms the rule, but it only fails flushes
  EXPECT_OK(read(*root, 0));
  EXPECT_OK(run_sync(*loop_, root->write_zeroes(0, 512)));
  EXPECT_OK(run_sync(*loop_, root->discard(0, 512)));
  EXPECT_ERRNO(run_sync(*loop_, root->flush()), EIO);
  close(*root);

  root = open(graph(R"('inject-error':[{'event':'write_aio','iotype':'write'}])"));
  ASSERT_TRUE(root);
  EXPECT_ERRNO(write(*root, 0), EIO);
  EXPECT_OK(read(*root, 0));
  EXPECT_OK(run_sync(*loop_, root->flush()));
  EXPECT_OK(run_sync(*loop_, root->write_zeroes(0, 512)));
  close(*root);
}

TEST_F(BlkdebugTest, DefaultIotypesExcludeBlockStatus) {
  NodePtr root =
      open(graph(R"('inject-error':[{'event':'write_aio'}])", R"(,"efficient-zeroes":true)"));
  ASSERT_TRUE(root);
  EXPECT_ERRNO(write(*root, 0), EIO);
  EXPECT_ERRNO(run_sync(*loop_, root->write_zeroes(0, 512)), EIO);
  EXPECT_ERRNO(run_sync(*loop_, root->flush()), EIO);
  EXPECT_OK(run_sync(*loop_, root->block_status(0, 512, WantZero::kYes)));
  close(*root);

  root = open(graph(R"('inject-error':[{'event':'write_aio','iotype':'block-status'}])"));
  ASSERT_TRUE(root);
  EXPECT_OK(write(*root, 0));
  EXPECT_ERRNO(run_sync(*loop_, root->block_status(0, 512, WantZero::kYes)), EIO);
  close(*root);
}

TEST_F(BlkdebugTest, ErrnoZeroAndNegativeSectorNeverFail) {
  NodePtr root = open(graph(
      R"('inject-error':[{'event':'write_aio','errno':0},{'event':'read_aio','sector':-5}])"));
  ASSERT_TRUE(root);
  EXPECT_OK(write(*root, 0));
  EXPECT_OK(read(*root, 0));
  close(*root);
}

TEST_F(BlkdebugTest, ImmediatelyFailsWithoutYielding) {
  // The memory image completes synchronously, so only blkdebug's own yield can defer a failure.
  for (bool immediately : {false, true}) {
    NodePtr root =
        open(graph(std::string(R"('inject-error':[{'event':'write_aio','immediately':)") +
                   (immediately ? "'on'" : "'off'") + "}]"));
    ASSERT_TRUE(root);
    std::vector<uint8_t> buf(512, 1);
    Status status = ok();
    bool done = false;
    spawn(store_status(root->write(0, IoVec(buf.data(), buf.size())), &status, &done));
    EXPECT_EQ(done, immediately);
    ASSERT_TRUE(run_until([&] { return done; }));
    EXPECT_ERRNO(status, EIO);
    close(*root);
  }
}

TEST_F(BlkdebugTest, ConfigFileRules) {
  TempDir dir;
  std::string conf = dir.file("bd.conf");
  std::ofstream(conf) << "# comment\n"
                         "[inject-error]\n"
                         "event = \"write_aio\"\n"
                         "errno = \"28\"\n"
                         "once = \"on\"\n"
                         "\n"
                         "[set-state]\n"
                         "event = \"read_aio\"\n"
                         "new_state = \"2\"\n"
                         "\n"
                         "[inject-error]\n"
                         "event = \"read_aio\"\n"
                         "state = \"2\"\n"
                         "iotype = \"read\"\n";
  NodePtr root = open(graph("\"config\":\"" + conf + "\""));
  ASSERT_TRUE(root);
  // The same sequence as the qemu-io 7.2 run recorded in the blkdebug report.
  EXPECT_ERRNO(write(*root, 0), ENOSPC);
  EXPECT_OK(write(*root, 0));
  EXPECT_OK(read(*root, 0));
  EXPECT_ERRNO(read(*root, 0), EIO);
  EXPECT_OK(write(*root, 0));
  close(*root);
}

TEST_F(BlkdebugTest, ConfigFileErrors) {
  TempDir dir;
  Result<NodePtr> r = try_open(graph("\"config\":\"" + dir.file("missing.conf") + "\""));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().errnum(), ENOENT);
  EXPECT_EQ(r.error().message(), "Could not read blkdebug config file: No such file or directory");

  std::ofstream(dir.file("susp.conf")) << "[suspend]\nevent = \"write_aio\"\n";
  r = try_open(graph("\"config\":\"" + dir.file("susp.conf") + "\""));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "There is no option group 'suspend'");

  // An unquoted value reads as empty, as in QEMU.
  std::ofstream(dir.file("bad.conf")) << "[inject-error]\nevent = write_aio\n";
  r = try_open(graph("\"config\":\"" + dir.file("bad.conf") + "\""));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "invalid parameter value: ");
}

TEST_F(BlkdebugTest, DottedImageOptsForm) {
  Result<Options> o = parse_key_value_options(
      "driver=raw,file.driver=blkdebug,file.image.driver=memory,file.image.size=1M,"
      "file.inject-error.0.event=write_aio,file.inject-error.0.iotype=write,"
      "file.inject-error.1.event=read_aio,file.inject-error.1.errno=28,"
      "file.inject-error.1.iotype=read",
      "");
  ASSERT_OK(o);
  Result<NodePtr> root = run_sync(*loop_, open_node(*loop_, std::move(*o), {}, ""));
  ASSERT_OK(root);
  EXPECT_ERRNO(write(**root, 0), EIO);
  EXPECT_ERRNO(read(**root, 0), ENOSPC);          // read_aio armed only its own rule
  EXPECT_OK(run_sync(*loop_, (*root)->flush()));  // which fails reads only
  EXPECT_ERRNO(write(**root, 0), EIO);
  close(**root);
}

TEST_F(BlkdebugTest, OptionErrors) {
  struct Case {
    std::string extra;
    std::string message;
  };
  const Case cases[] = {
      {R"('inject-error':[{'event':'bogus'}])", "invalid parameter value: bogus"},
      {R"('inject-error':[{'event':'write_aio','foo':1}])",
       "[inject-error] section doesn't support the option 'foo'"},
      {R"('inject-error':[{'event':'write_aio','iotype':'x'}])", "invalid parameter value: x"},
      {R"('inject-error':[{'errno':5}])", "Missing event name for rule"},
      {R"('set-state':[{'event':'write_aio','new_state':'x'}])",
       "Parameter 'new_state' expects a number"},
      {R"('align':3)", "Cannot meet constraints with align 3"},
      {R"('align':4096,'max-transfer':512)", "Cannot meet constraints with max-transfer 512"},
  };
  for (const Case& c : cases) {
    Result<NodePtr> r = try_open(graph(c.extra));
    ASSERT_FALSE(r) << c.extra;
    EXPECT_EQ(r.error().message(), c.message) << c.extra;
  }
  Result<NodePtr> r = try_open(R"({"driver":"blkdebug","image":"t.raw"})");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "Cannot find device='t.raw' nor node-name='t.raw'");
  r = try_open(R"({"driver":"blkdebug"})");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "A block device must be specified for \"image\"");
}

TEST_F(BlkdebugTest, AlignAndLimits) {
  NodePtr root = open(graph(R"('align':4096,'max-transfer':65536,'max-write-zero':8192)"));
  ASSERT_TRUE(root);
  EXPECT_EQ(blkdebug(*root).limits().request_alignment, 4096u);
  EXPECT_EQ(blkdebug(*root).limits().max_transfer, 65536u);
  EXPECT_EQ(blkdebug(*root).limits().max_pwrite_zeroes, 8192u);
  // An unaligned write is padded by the request layer to whole 4 KiB blocks on the image.
  EXPECT_OK(write(*root, 1, 512));
  ASSERT_FALSE(memory(*root).log().empty());
  for (const RecordedRequest& r : memory(*root).log()) {
    EXPECT_EQ(r.offset % 4096, 0u);
    EXPECT_EQ(r.bytes % 4096, 0u);
  }
  close(*root);
}

TEST_F(BlkdebugTest, BreakpointSuspendsAndResumes) {
  NodePtr root = open(graph(""));
  ASSERT_TRUE(root);
  ASSERT_OK(root->debug_breakpoint("write_aio", "A"));
  EXPECT_FALSE(root->debug_is_suspended("A"));

  ::testing::internal::CaptureStdout();
  std::vector<uint8_t> buf(512, 0x5a);
  Status status = ok();
  bool done = false;
  spawn(store_status(root->write(0, IoVec(buf.data(), buf.size())), &status, &done));
  ASSERT_TRUE(run_until([&] { return root->debug_is_suspended("A"); }));
  for (int i = 0; i < 10; ++i) loop_->run_once(false);
  EXPECT_FALSE(done);
  EXPECT_TRUE(memory(*root).log().empty());

  ASSERT_OK(root->debug_resume("A"));
  EXPECT_FALSE(root->debug_is_suspended("A"));
  ASSERT_TRUE(run_until([&] { return done; }));
  EXPECT_OK(status);
  EXPECT_EQ(memory(*root).data()[0], 0x5a);
  EXPECT_EQ(::testing::internal::GetCapturedStdout(),
            "blkdebug: Suspended request 'A'\nblkdebug: Resuming request 'A'\n");

  // The breakpoint fired once: the next write is not suspended, and it is gone.
  EXPECT_OK(write(*root, 0));
  EXPECT_ERRNO(root->debug_resume("A"), ENOENT);
  EXPECT_ERRNO(root->debug_remove_breakpoint("A"), ENOENT);
  close(*root);
}

TEST_F(BlkdebugTest, TwoBreakpointsOnOneEventHoldTheRequestUntilBothResume) {
  NodePtr root = open(graph(""));
  ASSERT_TRUE(root);
  ASSERT_OK(root->debug_breakpoint("write_aio", "A"));
  ASSERT_OK(root->debug_breakpoint("write_aio", "B"));
  ::testing::internal::CaptureStdout();
  std::vector<uint8_t> buf(512, 1);
  Status status = ok();
  bool done = false;
  spawn(store_status(root->write(0, IoVec(buf.data(), buf.size())), &status, &done));
  ASSERT_TRUE(run_until([&] { return root->debug_is_suspended("B"); }));
  EXPECT_TRUE(root->debug_is_suspended("A"));
  ASSERT_OK(root->debug_resume("A"));
  for (int i = 0; i < 10; ++i) loop_->run_once(false);
  EXPECT_FALSE(done);
  ASSERT_OK(root->debug_resume("B"));
  ASSERT_TRUE(run_until([&] { return done; }));
  EXPECT_OK(status);
  // Newest breakpoint first, as qemu-io 7.2 prints.
  EXPECT_EQ(::testing::internal::GetCapturedStdout(),
            "blkdebug: Suspended request 'B'\nblkdebug: Suspended request 'A'\n"
            "blkdebug: Resuming request 'A'\nblkdebug: Resuming request 'B'\n");
  close(*root);
}

TEST_F(BlkdebugTest, RemoveBreakpoint) {
  NodePtr root = open(graph(""));
  ASSERT_TRUE(root);
  EXPECT_ERRNO(root->debug_remove_breakpoint("X"), ENOENT);
  EXPECT_ERRNO(root->debug_breakpoint("bogus", "A"), ENOENT);
  EXPECT_ERRNO(root->debug_resume("X"), ENOENT);

  // Every breakpoint with the tag goes at once.
  ASSERT_OK(root->debug_breakpoint("write_aio", "A"));
  ASSERT_OK(root->debug_breakpoint("read_aio", "A"));
  EXPECT_OK(root->debug_remove_breakpoint("A"));
  EXPECT_ERRNO(root->debug_remove_breakpoint("A"), ENOENT);
  EXPECT_OK(write(*root, 0));
  EXPECT_OK(read(*root, 0));

  // remove_break on a suspended request's tag resumes it; its rule already fired, so QEMU 7.2
  // still reports ENOENT.
  ASSERT_OK(root->debug_breakpoint("write_aio", "A"));
  ::testing::internal::CaptureStdout();
  std::vector<uint8_t> buf(512, 1);
  Status status = ok();
  bool done = false;
  spawn(store_status(root->write(0, IoVec(buf.data(), buf.size())), &status, &done));
  ASSERT_TRUE(run_until([&] { return root->debug_is_suspended("A"); }));
  EXPECT_ERRNO(root->debug_remove_breakpoint("A"), ENOENT);
  ASSERT_TRUE(run_until([&] { return done; }));
  EXPECT_OK(status);
  EXPECT_EQ(::testing::internal::GetCapturedStdout(),
            "blkdebug: Suspended request 'A'\nblkdebug: Resuming request 'A'\n");
  close(*root);
}

TEST_F(BlkdebugTest, BreakpointWithoutBlkdebugIsUnsupported) {
  NodePtr root = open(R"({"driver":"raw","file":{"driver":"memory","size":1048576}})");
  ASSERT_TRUE(root);
  EXPECT_ERRNO(root->debug_breakpoint("write_aio", "A"), ENOTSUP);
  close(*root);
}

TEST_F(BlkdebugTest, NoFallbackWriteZeroesPassesThrough) {
  NodePtr efficient = open(R"({"driver":"blkdebug","image":{"driver":"memory","size":65536,)"
                           R"("efficient-zeroes":true}})");
  ASSERT_TRUE(efficient);
  EXPECT_TRUE(efficient->supported_zero_flags().has(RequestFlag::kNoFallback));
  EXPECT_TRUE(efficient->supported_zero_flags().has(RequestFlag::kMayUnmap));
  EXPECT_OK(run_sync(*loop_, efficient->write_zeroes(0, 4096, RequestFlag::kNoFallback)));
  auto& mem = static_cast<MemoryNode&>(*efficient->primary_child());
  ASSERT_EQ(mem.log().size(), 1u);
  EXPECT_EQ(mem.log()[0].kind, RecordedRequest::Kind::kWriteZeroes);
  close(*efficient);

  NodePtr plain = open(R"({"driver":"blkdebug","image":{"driver":"memory","size":65536}})");
  ASSERT_TRUE(plain);
  EXPECT_FALSE(plain->supported_zero_flags().has(RequestFlag::kNoFallback));
  EXPECT_ERRNO(run_sync(*loop_, plain->write_zeroes(0, 4096, RequestFlag::kNoFallback)), ENOTSUP);
  close(*plain);
}

TEST_F(BlkdebugTest, Filename) {
  TempDir dir;
  std::string img = dir.file("t.raw");
  std::ofstream(img) << std::string(4096, '\0');
  std::string conf = dir.file("bd.conf");
  std::ofstream(conf) << "[set-state]\nevent = \"write_aio\"\nnew_state = \"2\"\n";

  NodePtr root = open(R"({"driver":"raw","file":{"driver":"blkdebug","image":{"filename":")" + img +
                      R"("}}})");
  ASSERT_TRUE(root);
  EXPECT_EQ(root->filename(), "blkdebug::" + img);
  close(*root);

  root = open(R"({"driver":"raw","file":{"driver":"blkdebug","config":")" + conf +
              R"(","image":{"filename":")" + img + R"("}}})");
  ASSERT_TRUE(root);
  EXPECT_EQ(root->filename(), "blkdebug:" + conf + ":" + img);
  close(*root);

  root = open(R"({"driver":"blkdebug","align":4096,"image":{"filename":")" + img + R"("}})");
  ASSERT_TRUE(root);
  EXPECT_EQ(root->filename(), R"(json:{"image": {"driver": "file", "filename": ")" + img +
                                  R"("}, "driver": "blkdebug", "align": 4096})");
  close(*root);
}

TEST_F(BlkdebugTest, LengthIsTheImages) {
  NodePtr root = open(graph(""));
  ASSERT_TRUE(root);
  EXPECT_EQ(root->length(), 1048576u);
  EXPECT_EQ(root->primary_child()->length(), 1048576u);
  close(*root);
}

}  // namespace
}  // namespace qblock
