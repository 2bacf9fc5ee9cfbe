// Power cuts during internal snapshot operations (create, apply, delete): the operation runs
// over a filter that loses power after N modifying requests, for every N up to past the
// operation's end, and the disk left behind (the last flush plus a random subset of the later
// writes) is judged: qblock check finds what qemu-img check finds, which may be leaks and
// COPIED flags that are merely conservative, never anything else; every snapshot left in the table
// still reads its data, and the active image reads either its old contents or (for apply) the
// snapshot's.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "block/filters/powercut.h"
#include "block/formats/qcow2/crash_check_test_util.h"
#include "block/formats/qcow2/create.h"
#include "block/test_util.h"
#include "qblock/snapshot.h"

namespace qblock::qcow2 {
namespace {

using testing::check_both;
using testing::CrashCheck;
using testing::LoopTest;
using testing::TempDir;

constexpr uint64_t kSize = 8 << 20;
constexpr uint64_t kCopied = uint64_t{1} << 63;

// The guest contents of the prepared image: snapshot "a", snapshot "b", and the active state.
std::vector<uint8_t> contents(int stage) {
  std::vector<uint8_t> v(kSize, 0);
  auto fill = [&v](uint64_t off, uint64_t len, uint8_t b) {
    std::fill(v.begin() + static_cast<std::ptrdiff_t>(off),
              v.begin() + static_cast<std::ptrdiff_t>(off + len), b);
  };
  fill(0, 512 << 10, 1);
  fill(4 << 20, 64 << 10, 1);
  if (stage >= 1) {
    fill(64 << 10, 128 << 10, 2);
    fill(6 << 20, 192 << 10, 2);
  }
  if (stage >= 2) {
    fill(0, 96 << 10, 3);
    fill(4 << 20, 64 << 10, 3);
  }
  return v;
}

// qemu-img check's findings on a crash image are acceptable if they are leaks, or COPIED
// mismatches that cannot harm data: COPIED clear (a write merely copies first), or COPIED set
// on a cluster whose extra refcount is itself a leak (nothing else references it).
std::string judge_check(const std::string& output, int code) {
  if (code == 0 || code == 3) return "";
  if (code != 2) return "qemu-img check exit " + std::to_string(code) + ":\n" + output;
  std::set<uint64_t> leaked;  // host offsets
  static const std::regex leak(R"(Leaked cluster (\d+) refcount=(\d+) reference=(\d+))");
  for (std::sregex_iterator it(output.begin(), output.end(), leak), end; it != end; ++it) {
    leaked.insert(std::stoull((*it)[1]) * 65536);
  }
  static const std::regex copied(
      R"(ERROR OFLAG_COPIED (?:data cluster: l2_entry|L2 cluster: l1_index=\d+ l1_entry)=([0-9a-f]+) refcount=(\d+))");
  std::size_t errors = 0;
  for (std::size_t pos = output.find("ERROR"); pos != std::string::npos;
       pos = output.find("ERROR", pos + 1)) {
    ++errors;
  }
  std::size_t benign = 0;
  for (std::sregex_iterator it(output.begin(), output.end(), copied), end; it != end; ++it) {
    const uint64_t entry = std::stoull((*it)[1], nullptr, 16);
    const uint64_t host = entry & 0x00fffffffffffe00ULL;
    if (!(entry & kCopied) || leaked.count(host)) ++benign;
  }
  if (benign == errors) return "";
  return "qemu-img check found corruption:\n" + output;
}

class Qcow2SnapshotPowerCutTest : public LoopTest {
 protected:
  void SetUp() override {
    LoopTest::SetUp();
    if (std::system("qemu-img --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "no qemu-img";
    // The prepared image: data, snapshot "a", more data, snapshot "b", more data.
    Qcow2CreateOptions opts;
    opts.filename = base_;
    opts.size = kSize;
    ASSERT_OK(run_sync(*loop_, create_qcow2(*loop_, opts)));
    NodePtr node = open(R"({"driver":"qcow2","prealloc":false,"file":{"driver":"file",)"
                        R"("filename":")" +
                        base_ + "\"}}");
    ASSERT_TRUE(node);
    for (int stage = 0; stage < 3; ++stage) {
      std::vector<uint8_t> data = contents(stage);
      ASSERT_OK(run_sync(*loop_, node->write(0, IoVec(data.data(), data.size()))));
      if (stage < 2) ASSERT_OK(run_sync(*loop_, create_snapshot(*node, stage == 0 ? "a" : "b")));
    }
    close(*node);
  }

  // The guest contents of `node` now.
  std::vector<uint8_t> read_all(BlockNode& node) {
    std::vector<uint8_t> back(kSize);
    if (!run_sync(*loop_, node.read(0, IoVec(back.data(), back.size())))) back.clear();
    return back;
  }

  // Runs `op` with the power gone after `cut_after` modifying requests; returns a failure
  // description or "". Sets *finished when the operation completed before the cut.
  std::string cut_and_judge(const std::string& op, uint64_t cut_after, std::mt19937_64& rng,
                            bool* finished) {
    NodePtr node = open(R"({"driver":"qcow2","prealloc":false,"file":{"driver":"powercut",)"
                        R"("cut-after":)" +
                        std::to_string(cut_after) +
                        R"(,"file":{"driver":"memory","async":true,"image":")" + base_ + "\"}}}");
    if (!node) return "open failed";
    auto& filter = static_cast<PowerCutFilter&>(*node->primary_child());
    Status s = ok();
    if (op == "create") s = run_sync(*loop_, create_snapshot(*node, "new"));
    if (op == "apply") s = run_sync(*loop_, apply_snapshot(*node, "a"));
    if (op == "delete") s = run_sync(*loop_, delete_snapshot(*node, "a"));
    *finished = s && !filter.cut();
    if (!s && !filter.cut()) return op + " failed without a power cut: " + s.error().message();
    std::vector<uint8_t> image = filter.crash_image(rng, 0.5);
    (void)run_sync(*loop_, node->close());

    const std::string crashed = dir_.file("crash.qcow2");
    std::ofstream(crashed, std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(image.data()),
               static_cast<std::streamsize>(image.size()));
    // Both checks see the same findings, and qemu-img's are leaks or harmless COPIED flags.
    CrashCheck found;
    if (std::string differ = check_both(*loop_, crashed, found); !differ.empty()) return differ;
    if (std::string bad = judge_check(found.qemu_output, found.qemu_code); !bad.empty()) {
      return bad;
    }

    // The active state, then every snapshot in the table, applied one by one on a copy.
    NodePtr back = open(R"({"driver":"qcow2","prealloc":false,"file":{"driver":"memory",)"
                        R"("image":")" +
                        crashed + "\"}}");
    if (!back) return "reopen failed";
    std::string problem;
    const std::vector<uint8_t> active = read_all(*back);
    if (active != contents(2) && !(op == "apply" && active == contents(0))) {
      problem = "the active image reads neither its old contents nor the snapshot's";
    }
    Result<std::vector<SnapshotInfo>> list = run_sync(*loop_, list_snapshots(*back));
    if (!list) problem = "snapshot table unreadable: " + list.error().message();
    for (const SnapshotInfo& snap : list ? *list : std::vector<SnapshotInfo>{}) {
      if (!problem.empty()) break;
      const int stage = snap.name == "a" ? 0 : snap.name == "b" ? 1 : 2;
      Status applied = run_sync(*loop_, apply_snapshot(*back, snap.id));
      if (!applied) {
        problem = "applying " + snap.name + " failed: " + applied.error().message();
      } else if (read_all(*back) != contents(stage)) {
        problem = "snapshot " + snap.name + " lost its data";
      }
    }
    if (problem.empty() && op == "create" && *finished &&
        (!list || list->size() != 3 || list->back().name != "new")) {
      problem = "the finished create left no snapshot";
    }
    (void)run_sync(*loop_, back->close());
    return problem;
  }

  void cut_everywhere(const std::string& op) {
    std::mt19937_64 rng(op.size());
    bool finished = false;
    uint64_t cut_after = 0;
    for (; cut_after < 400 && !finished; ++cut_after) {
      for (int draw = 0; draw < 3; ++draw) {
        EXPECT_EQ(cut_and_judge(op, cut_after, rng, &finished), "")
            << op << ": cut after " << cut_after << ", draw " << draw;
      }
    }
    EXPECT_TRUE(finished) << op << " never finished";
    EXPECT_GT(cut_after, 5u) << op << " did too few writes for the test to mean anything";
  }

  TempDir dir_;
  std::string base_ = dir_.file("base.qcow2");
};

TEST_F(Qcow2SnapshotPowerCutTest, CreateCutAnywhere) { cut_everywhere("create"); }
TEST_F(Qcow2SnapshotPowerCutTest, ApplyCutAnywhere) { cut_everywhere("apply"); }
TEST_F(Qcow2SnapshotPowerCutTest, DeleteCutAnywhere) { cut_everywhere("delete"); }

}  // namespace
}  // namespace qblock::qcow2
