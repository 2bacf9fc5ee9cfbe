// create_qcow2: byte identity with qemu-img create 7.2 for the layouts of qcow2-format.md §15
// and §16, and the §15.4 validation messages. Skips when qemu-img is not installed.
#include "block/formats/qcow2/create.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "block/test_util.h"

namespace qblock::qcow2 {
namespace {

std::vector<char> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

bool have_qemu_img() { return std::system("qemu-img --version >/dev/null 2>&1") == 0; }

struct Layout {
  const char* name;
  const char* qemu_args;  // -o ... and backing options for qemu-img
  Qcow2CreateOptions opts;
};

Qcow2CreateOptions with(uint64_t size, void (*f)(Qcow2CreateOptions&) = nullptr) {
  Qcow2CreateOptions o;
  o.size = size;
  if (f) f(o);
  return o;
}

class Qcow2CreateOnNode : public testing::LoopTest {};

class Qcow2CreateIdentity : public testing::LoopTest,
                            public ::testing::WithParamInterface<Layout> {};

TEST_P(Qcow2CreateIdentity, MatchesQemuImg) {
  if (!have_qemu_img()) GTEST_SKIP() << "qemu-img not installed";
  testing::TempDir dir;
  ASSERT_EQ(std::system(("cd " + dir.path() +
                         " && qemu-img create -q -f qcow2 base.qcow2 20M && qemu-img create -q "
                         "-f raw base.raw 10M")
                            .c_str()),
            0);
  const Layout& l = GetParam();
  Qcow2CreateOptions o = l.opts;
  std::string size = o.size ? std::to_string(*o.size) : "";
  ASSERT_EQ(std::system(("cd " + dir.path() + " && qemu-img create -q -f qcow2 " + l.qemu_args +
                         " ref.qcow2 " + size)
                            .c_str()),
            0);
  o.filename = dir.file("new.qcow2");
  if (!o.backing_file.empty()) o.backing_file = dir.file(o.backing_file);
  Status s = run_sync(*loop_, create_qcow2(*loop_, o));
  ASSERT_TRUE(s.has_value()) << s.error().message();
  std::vector<char> ref = slurp(dir.file("ref.qcow2"));
  std::vector<char> mine = slurp(o.filename);
  if (!o.backing_file.empty()) {
    // The backing name is stored as given: compare with the name qemu-img was given.
    ASSERT_EQ(std::system(("cd " + dir.path() + " && qemu-img rebase -u -f qcow2 -b " +
                           o.backing_file + " -F " + o.backing_fmt + " ref.qcow2")
                              .c_str()),
              0);
    ref = slurp(dir.file("ref.qcow2"));
  }
  ASSERT_EQ(ref.size(), mine.size());
  EXPECT_TRUE(ref == mine) << "images differ";
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, Qcow2CreateIdentity,
    ::testing::Values(
        Layout{"C64K_64M", "", with(64 << 20)}, Layout{"C64K_1G", "", with(1 << 30)},
        Layout{"C64K_8T", "", with(8ULL << 40)},
        Layout{"C4K_1G", "-o cluster_size=4k",
               with(1 << 30, [](Qcow2CreateOptions& o) { o.cluster_size = 4096; })},
        Layout{"C512_1G", "-o cluster_size=512",
               with(1 << 30, [](Qcow2CreateOptions& o) { o.cluster_size = 512; })},
        Layout{"C2M_1G", "-o cluster_size=2M",
               with(1 << 30, [](Qcow2CreateOptions& o) { o.cluster_size = 2 << 20; })},
        Layout{"Compat010_1M", "-o compat=0.10",
               with(1 << 20, [](Qcow2CreateOptions& o) { o.version = 2; })},
        Layout{"LazyRefcounts", "-o lazy_refcounts=on",
               with(1 << 30, [](Qcow2CreateOptions& o) { o.lazy_refcounts = true; })},
        Layout{"Refcount1", "-o refcount_bits=1",
               with(1 << 30, [](Qcow2CreateOptions& o) { o.refcount_bits = 1; })},
        Layout{"Refcount8", "-o refcount_bits=8",
               with(1 << 30, [](Qcow2CreateOptions& o) { o.refcount_bits = 8; })},
        Layout{"Refcount64", "-o refcount_bits=64",
               with(1 << 30, [](Qcow2CreateOptions& o) { o.refcount_bits = 64; })},
        Layout{"Zstd", "-o compression_type=zstd",
               with(1 << 30, [](Qcow2CreateOptions& o) { o.compression_type = 1; })},
        Layout{"ExtendedL2", "-o extended_l2=on,cluster_size=128k",
               with(1 << 30,
                    [](Qcow2CreateOptions& o) {
                      o.extended_l2 = true;
                      o.cluster_size = 128 << 10;
                    })},
        Layout{"BackingQcow2", "-b base.qcow2 -F qcow2",
               [] {
                 Qcow2CreateOptions o;
                 o.backing_file = "base.qcow2";
                 o.backing_fmt = "qcow2";
                 return o;
               }()},
        Layout{"BackingRaw", "-b base.raw -F raw",
               with(1 << 30,
                    [](Qcow2CreateOptions& o) {
                      o.backing_file = "base.raw";
                      o.backing_fmt = "raw";
                    })},
        Layout{"PreallocMetadata16M", "-o preallocation=metadata",
               with(16 << 20,
                    [](Qcow2CreateOptions& o) { o.preallocation = PreallocMode::kMetadata; })},
        Layout{"PreallocMetadata4K", "-o preallocation=metadata,cluster_size=4k",
               with(16 << 20,
                    [](Qcow2CreateOptions& o) {
                      o.preallocation = PreallocMode::kMetadata;
                      o.cluster_size = 4096;
                    })},
        Layout{"PreallocFalloc16M", "-o preallocation=falloc",
               with(16 << 20,
                    [](Qcow2CreateOptions& o) { o.preallocation = PreallocMode::kFalloc; })},
        Layout{"PreallocFull16M", "-o preallocation=full",
               with(16 << 20,
                    [](Qcow2CreateOptions& o) { o.preallocation = PreallocMode::kFull; })}),
    [](const ::testing::TestParamInfo<Layout>& info) { return std::string(info.param.name); });

// blockdev-create's path: the image is written into a node someone else opened, byte for byte
// what create_qcow2 writes into a file of its own.
TEST_F(Qcow2CreateOnNode, SameBytesAsCreateQcow2) {
  testing::TempDir dir;
  Qcow2CreateOptions o = with(64 << 20, [](Qcow2CreateOptions& x) { x.lazy_refcounts = true; });
  o.filename = dir.file("file.qcow2");
  ASSERT_OK(run_sync(*loop_, create_qcow2(*loop_, o)));
  ASSERT_EQ(std::system(("head -c 1000000 /dev/urandom > " + dir.file("node.qcow2")).c_str()), 0);
  NodePtr node = open(R"({"driver":"file","filename":")" + dir.file("node.qcow2") + "\"}");
  ASSERT_TRUE(node);
  ASSERT_OK(run_sync(*loop_, create_qcow2_on_node(*node, o)));
  close(*node);
  EXPECT_EQ(slurp(dir.file("node.qcow2")), slurp(dir.file("file.qcow2")));

  Qcow2CreateOptions bad = o;
  bad.cluster_size = 1000;
  NodePtr again = open(R"({"driver":"file","filename":")" + dir.file("node.qcow2") + "\"}");
  ASSERT_TRUE(again);
  Status s = run_sync(*loop_, create_qcow2_on_node(*again, bad));
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().message(), "Cluster size must be a power of two between 512 and 2048k");
  close(*again);
}

TEST(Qcow2CreateValidate, Messages) {
  auto msg = [](void (*f)(Qcow2CreateOptions&)) {
    Qcow2CreateOptions o;
    f(o);
    Status s = validate_create_options(o);
    return s ? std::string("ok") : s.error().message();
  };
  EXPECT_EQ(msg([](Qcow2CreateOptions& o) { o.cluster_size = 1000; }),
            "Cluster size must be a power of two between 512 and 2048k");
  EXPECT_EQ(msg([](Qcow2CreateOptions& o) {
              o.extended_l2 = true;
              o.cluster_size = 4096;
            }),
            "Extended L2 entries are only supported with cluster sizes of at least 16384 bytes");
  EXPECT_EQ(msg([](Qcow2CreateOptions& o) {
              o.version = 2;
              o.lazy_refcounts = true;
            }),
            "Lazy refcounts only supported with compatibility level 1.1 and above (use "
            "version=v3 or greater)");
  EXPECT_EQ(msg([](Qcow2CreateOptions& o) { o.refcount_bits = 3; }),
            "Refcount width must be a power of two and may not exceed 64 bits");
  EXPECT_EQ(msg([](Qcow2CreateOptions& o) {
              o.version = 2;
              o.refcount_bits = 8;
            }),
            "Different refcount widths than 16 bits require compatibility level 1.1 or above "
            "(use version=v3 or greater)");
  EXPECT_EQ(msg([](Qcow2CreateOptions& o) {
              o.version = 2;
              o.compression_type = 1;
            }),
            "Non-zlib compression type is only supported with compatibility level 1.1 and "
            "above (use version=v3 or greater)");
}

}  // namespace
}  // namespace qblock::qcow2
