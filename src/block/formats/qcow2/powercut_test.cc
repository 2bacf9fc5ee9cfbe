// Power-cut test for the qcow2 driver (issue acceptance: crash safety). Seeded random
// workloads run over a filter that loses power after a random number of requests; the disk
// left behind (the last flushed state plus a random subset of later writes) must pass
// `qemu-img check` without corruption (leaks are allowed), and every byte written before the
// last completed flush and not touched since must read back.
#include "block/filters/powercut.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <ostream>
#include <random>
#include <string>

#include "block/formats/qcow2/create.h"
#include "block/test_util.h"
#include "qblock/block_backend.h"
#include "qblock/user_objects.h"

namespace qblock::qcow2 {
namespace {

using testing::LoopTest;
using testing::TempDir;

constexpr uint64_t kGuestSize = 8 << 20;
constexpr uint64_t kSector = 512;

// One request of a concurrent batch.
struct Request {
  uint64_t offset = 0;
  uint64_t bytes = 0;
  bool zero = false;
  RequestFlags flags;
  std::vector<uint8_t> data;
  bool done = false;  // completed successfully
};

Task<void> issue(BlockNode& node, Request* r) {
  Status s = ok();
  if (r->zero) {
    s = co_await node.write_zeroes(r->offset, r->bytes, r->flags);
  } else {
    s = co_await node.write(r->offset, IoVec(r->data.data(), r->bytes));
  }
  r->done = static_cast<bool>(s);
}

// One instance: its name, the image's cluster size, how many seeds, extra qcow2 options
// (JSON members) such as cache sizes, whether the image has extended L2 entries, and its
// encryption (qcow2-format.md §9: "luks" or "aes"; empty: none).
struct PowerCutCase {
  const char* name;
  uint64_t cluster_size;
  int seeds;
  const char* options;
  bool extended_l2 = false;
  const char* encrypt = "";
  // qcow2-format.md §10: guest data in an external data file, kept raw (data_file_raw=on)
  // or not. Its own power-cut filter never cuts; it keeps a random subset of the writes
  // since its last flush, as the image file does.
  bool data_file = false;
  bool data_file_raw = false;
};

// The secret encrypted instances use (registered once; the registry is process-wide).
constexpr const char* kSecretId = "powercut-secret";

// gtest (and so ctest's test list) shows an instance by its name, not by its bytes.
void PrintTo(const PowerCutCase& c, std::ostream* os) { *os << c.name; }

class Qcow2PowerCutTest : public LoopTest, public ::testing::WithParamInterface<PowerCutCase> {
 protected:
  void SetUp() override {
    LoopTest::SetUp();
    if (std::system("qemu-img --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "no qemu-img";
  }

  // One workload; returns a failure description or "".
  std::string run_seed(uint64_t seed, const std::string& base, uint64_t cluster_size,
                       const std::string& options, bool encrypted, const std::string& data_base) {
    std::mt19937_64 rng(seed);
    const uint64_t cut_after = std::uniform_int_distribution<uint64_t>(3, 400)(rng);
    // With every allocation feature on: the preallocate filter (small sizes, so that the
    // crash images stay small), zero COW through ALLOCATE, and, because the memory node
    // completes requests asynchronously and writes go out in concurrent batches, writes
    // straight into clusters that are still being linked.
    std::string data_json;
    if (!data_base.empty()) {
      data_json =
          R"("data-file":{"driver":"powercut","cut-after":1000000000,"file":{"driver":"memory",)"
          R"("efficient-zeroes":true,"async":true,"image":")" +
          data_base + "\"}},";
    }
    std::string json =
        R"({"driver":"qcow2",)" + options + data_json +
        R"("file":{"driver":"preallocate","prealloc-size":1048576,)"
        R"("prealloc-align":65536,"file":{"driver":"powercut","cut-after":)" +
        std::to_string(cut_after) +
        R"(,"file":{"driver":"memory","efficient-zeroes":true,"async":true,"image":")" + base +
        "\"}}}}";
    NodePtr node = open(json);
    if (!node) return "open failed";
    auto& filter = static_cast<PowerCutFilter&>(*node->primary_child()->primary_child());

    std::vector<uint8_t> model(kGuestSize, 0), flushed(kGuestSize, 0);
    std::vector<bool> dirty(kGuestSize / kSector, false);
    std::uniform_int_distribution<uint64_t> sector(0, kGuestSize / kSector - 1);
    std::uniform_int_distribution<uint64_t> length(1, 256);
    std::uniform_int_distribution<int> kind(0, 9);
    for (int op = 0; op < 80;) {
      // A batch of up to 4 requests on disjoint sectors, in flight together; or a flush.
      if (kind(rng) == 9) {
        Status s = run_sync(*loop_, node->flush());
        ++op;
        if (!s) break;
        flushed = model;
        std::fill(dirty.begin(), dirty.end(), false);
        continue;
      }
      std::vector<Request> batch;
      const int n = 1 + static_cast<int>(rng() % 4);
      for (int i = 0; i < n && op < 80; ++i, ++op) {
        Request r;
        r.offset = sector(rng) * kSector;
        r.bytes = std::min(length(rng) * kSector, kGuestSize - r.offset);
        const bool overlaps = std::any_of(batch.begin(), batch.end(), [&r](const Request& o) {
          return r.offset < o.offset + o.bytes && o.offset < r.offset + r.bytes;
        });
        if (overlaps) continue;
        const int k = kind(rng);
        if (k <= 5) {
          r.data.assign(r.bytes, static_cast<uint8_t>(rng() | 1));
        } else {
          r.zero = true;
          r.flags = k == 7 ? RequestFlags(RequestFlag::kMayUnmap) : RequestFlags();
        }
        batch.push_back(std::move(r));
      }
      std::vector<Task<void>> tasks;
      for (Request& r : batch) tasks.push_back(issue(*node, &r));
      run_sync(*loop_, when_all(std::move(tasks)));
      bool power_gone = false;
      for (const Request& r : batch) {
        if (r.done) {
          if (r.zero) {
            std::fill_n(model.begin() + static_cast<std::ptrdiff_t>(r.offset), r.bytes, 0);
          } else {
            std::copy(r.data.begin(), r.data.end(),
                      model.begin() + static_cast<std::ptrdiff_t>(r.offset));
          }
        }
        power_gone |= !r.done;
        // A failed request may still have changed the disk in part: its range is dirty.
        for (uint64_t i = r.offset / kSector; i < (r.offset + r.bytes) / kSector; ++i) {
          dirty[i] = true;
        }
      }
      if (power_gone) break;
    }
    const bool was_cut = filter.cut();
    std::vector<uint8_t> image = filter.crash_image(rng, 0.5);
    std::vector<uint8_t> data_image;
    if (!data_base.empty()) {
      data_image =
          static_cast<PowerCutFilter&>(*node->child(ChildRole::kDataFile)).crash_image(rng, 0.5);
    }
    (void)run_sync(*loop_, node->close());  // fails after the cut: nothing more reaches "disk"
    (void)was_cut;
    const std::string crashed_data = dir_.file("crash.raw");
    if (!data_base.empty()) {
      std::ofstream out(crashed_data, std::ios::binary | std::ios::trunc);
      out.write(reinterpret_cast<const char*>(data_image.data()),
                static_cast<std::streamsize>(data_image.size()));
    }

    const std::string crashed = dir_.file("crash.qcow2");
    {
      std::ofstream out(crashed, std::ios::binary | std::ios::trunc);
      out.write(reinterpret_cast<const char*>(image.data()),
                static_cast<std::streamsize>(image.size()));
    }
    const std::string cmd =
        encrypted ? "qemu-img check -q --object secret,id=" + std::string(kSecretId) +
                        ",data=pc --image-opts driver=qcow2,encrypt.key-secret=" + kSecretId +
                        ",file.filename='" + crashed + "' >/dev/null 2>&1"
        : !data_base.empty()
            ? "qemu-img check -q --image-opts driver=qcow2,file.filename='" + crashed +
                  "',data-file.filename='" + crashed_data + "' >/dev/null 2>&1"
            : "qemu-img check -q '" + crashed + "' >/dev/null 2>&1";
    const int rc = std::system(cmd.c_str());
    const int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    // qemu-img check: 0 clean, 3 leaks only; 2 means corruption.
    if (code != 0 && code != 3) {
      return "qemu-img check exit " + std::to_string(code) + " (cluster size " +
             std::to_string(cluster_size) + ", cut after " + std::to_string(cut_after) + ")";
    }
    std::vector<uint8_t> back(kGuestSize);
    if (!data_base.empty()) {
      OpenFlags ro;
      ro.read_only = true;
      const std::string key =
          encrypted ? R"("encrypt":{"key-secret":")" + std::string(kSecretId) + R"("},)" : "";
      NodePtr reopened =
          open(R"({"driver":"qcow2",)" + key + R"("file":{"driver":"file","filename":")" + crashed +
                   R"("},"data-file":{"driver":"file","filename":")" + crashed_data + R"("}})",
               ro);
      if (!reopened) return "reopen failed";
      Status r = run_sync(*loop_, reopened->read(0, IoVec(back.data(), back.size())));
      (void)run_sync(*loop_, reopened->close());
      if (!r) return "read failed: " + r.error().message();
    } else if (encrypted) {
      OpenFlags ro;
      ro.read_only = true;
      const std::string json = R"({"driver":"qcow2","encrypt":{"key-secret":")" +
                               std::string(kSecretId) +
                               R"("},"file":{"driver":"file","filename":")" + crashed + R"("}})";
      NodePtr reopened = open(json, ro);
      if (!reopened) return "reopen failed";
      Status r = run_sync(*loop_, reopened->read(0, IoVec(back.data(), back.size())));
      (void)run_sync(*loop_, reopened->close());
      if (!r) return "read failed: " + r.error().message();
    } else {
      BackendOptions opts;
      opts.filename = crashed;
      opts.format = "qcow2";
      opts.flags.read_only = true;
      auto backend = run_sync(*loop_, BlockBackend::open(*loop_, opts));
      if (!backend) return "reopen failed: " + backend.error().message();
      Status r = run_sync(*loop_, (*backend)->read(0, IoVec(back.data(), back.size())));
      (void)run_sync(*loop_, (*backend)->close());
      if (!r) return "read failed: " + r.error().message();
    }
    // Every request wrote one byte value over whole sectors, so every sector of a sound
    // image is uniform, whatever subset of the unflushed writes survived. A sector that is
    // not reads as garbage: on an encrypted image, a host range that was zeroed (or never
    // written) instead of holding encrypted zeros (§9.1).
    for (uint64_t i = 0; i < kGuestSize / kSector; ++i) {
      const auto first = back.begin() + static_cast<std::ptrdiff_t>(i * kSector);
      if (std::any_of(first, first + kSector, [&first](uint8_t b) { return b != *first; })) {
        return "garbage at guest offset " + std::to_string(i * kSector);
      }
    }
    for (uint64_t i = 0; i < dirty.size(); ++i) {
      if (dirty[i]) continue;
      if (!std::equal(back.begin() + static_cast<std::ptrdiff_t>(i * kSector),
                      back.begin() + static_cast<std::ptrdiff_t>((i + 1) * kSector),
                      flushed.begin() + static_cast<std::ptrdiff_t>(i * kSector))) {
        return "flushed data lost at guest offset " + std::to_string(i * kSector);
      }
    }
    return "";
  }

  TempDir dir_;
};

TEST_P(Qcow2PowerCutTest, CrashAtRandomPointKeepsImageConsistentAndFlushedDataIntact) {
  const auto [name, cluster_size, seeds, case_options, extended_l2, encrypt, data_file,
              data_file_raw] = GetParam();
  Qcow2CreateOptions opts;
  opts.filename = dir_.file("base.qcow2");
  opts.size = kGuestSize;
  opts.cluster_size = cluster_size;
  opts.extended_l2 = extended_l2;
  std::string options = case_options;
  const bool encrypted = *encrypt != 0;
  if (encrypted) {
    if (!user_objects().secret(kSecretId)) {
      ASSERT_OK(user_objects().add(std::string("secret,id=") + kSecretId + ",data=pc"));
    }
    opts.encrypt_format = encrypt;
    opts.encrypt.key_secret = kSecretId;
    opts.encrypt.iter_time_ms = 1;
    options += R"("encrypt":{"key-secret":")" + std::string(kSecretId) + R"("},)";
  }
  if (data_file) {
    opts.data_file = dir_.file("base.raw");
    opts.data_file_raw = data_file_raw;
  }
  ASSERT_OK(run_sync(*loop_, create_qcow2(*loop_, opts)));
  int failures = 0;
  for (int seed = 0; seed < seeds; ++seed) {
    std::string problem = run_seed(static_cast<uint64_t>(seed) * 7919 + cluster_size, opts.filename,
                                   cluster_size, options, encrypted, opts.data_file);
    if (!problem.empty()) {
      ADD_FAILURE() << "seed " << seed << ": " << problem;
      if (++failures >= 5) break;
    }
  }
}

// 2 x 250 = 500 seeded workloads with the default caches, and 210 with small caches: two of
// the four L2 tables of a 4 KiB-cluster image, and four of the 256 L2 tables and four of the
// 64 refcount blocks of a 512-byte-cluster image. Dirty tables and blocks are then written
// back on eviction, in §17's order, in the middle of allocations. Extended L2 entries
// (qcow2-format.md §7): 150 workloads with zero COW on, and 100 with 16 KiB clusters and a
// one-slice L2 cache (subcluster bitmaps written back on eviction). Encrypted images
// (qcow2-format.md §9): 100 LUKS workloads with 64 KiB clusters and 100 legacy AES ones with
// 4 KiB clusters, and 60 LUKS ones with extended L2 entries, zero COW asked for (and never
// used: §9.1), every sector checked to read as what some write or the flushed state left
// there, never as garbage. External data files (qcow2-format.md §10): 100 workloads with
// 64 KiB clusters, 100 with data_file_raw=on, 4 KiB clusters and a small L2 cache, 100 with
// extended L2 entries (16 KiB clusters, a one-slice L2 cache) and 40 LUKS ones with extended
// L2 entries.
INSTANTIATE_TEST_SUITE_P(
    ClusterSizes, Qcow2PowerCutTest,
    ::testing::Values(
        PowerCutCase{"cluster64k", 65536, 250, ""}, PowerCutCase{"cluster4k", 4096, 250, ""},
        PowerCutCase{"cluster4k_l2cache8k", 4096, 150, R"("l2-cache-size":"8k",)"},
        PowerCutCase{"cluster512_smallcaches", 512, 60,
                     R"("l2-cache-size":"2k","refcount-cache-size":"2k",)"},
        PowerCutCase{"extended_l2_64k", 65536, 150, R"("zero-cow":"on",)", true},
        PowerCutCase{"extended_l2_16k_l2cache4k", 16384, 100, R"("l2-cache-size":"4k",)", true},
        PowerCutCase{"luks_64k", 65536, 100, R"("zero-cow":"on",)", false, "luks"},
        PowerCutCase{"aes_4k", 4096, 100, R"("zero-cow":"on",)", false, "aes"},
        PowerCutCase{"luks_extended_l2_32k", 32768, 60, R"("zero-cow":"on",)", true, "luks"},
        PowerCutCase{"data_file_64k", 65536, 100, "", false, "", true},
        PowerCutCase{"data_file_raw_4k", 4096, 100, R"("l2-cache-size":"8k",)", false, "", true,
                     true},
        PowerCutCase{"data_file_extended_l2_16k", 16384, 100, R"("l2-cache-size":"4k",)", true, "",
                     true},
        PowerCutCase{"data_file_luks_extended_l2_32k", 32768, 40, "", true, "luks", true}),
    [](const ::testing::TestParamInfo<PowerCutCase>& info) {
      return std::string(info.param.name);
    });

}  // namespace
}  // namespace qblock::qcow2
