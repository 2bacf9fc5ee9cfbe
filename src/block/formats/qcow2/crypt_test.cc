// Encrypted qcow2 images (crypt.h, crypt_io.cc; qcow2-format.md §9) at the request level:
// the COW regions of a partly written new cluster hold encrypted zeros or re-encrypted
// backing data, never zeroed host bytes; the IVs are the guest (AES) or host (LUKS) sector;
// compressed writes and a wrong or missing key are refused.
#include "block/formats/qcow2/crypt.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "block/formats/qcow2/create.h"
#include "block/protocols/memory.h"
#include "block/test_util.h"
#include "qblock/image.h"
#include "qblock/user_objects.h"

namespace qblock::qcow2 {
namespace {

using Kind = RecordedRequest::Kind;
using testing::LoopTest;
using testing::TempDir;

constexpr const char* kSecret = "crypt-test-secret";
constexpr const char* kPassword = "astrochicken";

class Qcow2CryptTest : public LoopTest {
 protected:
  void SetUp() override {
    LoopTest::SetUp();
    if (!user_objects().secret(kSecret)) {
      ASSERT_OK(user_objects().add(std::string("secret,id=") + kSecret + ",data=" + kPassword));
    }
  }

  // A fresh 1 MiB image with 64 KiB clusters, encrypted as `format` ("aes" or "luks"),
  // created in the temporary directory as `name`.
  std::string create(const std::string& format, const std::string& name,
                     const std::string& backing = "") {
    Qcow2CreateOptions opts;
    opts.filename = dir_.file(name);
    opts.size = 1 << 20;
    opts.encrypt_format = format;
    opts.encrypt.key_secret = kSecret;
    opts.encrypt.iter_time_ms = 1;
    if (!backing.empty()) {
      opts.backing_file = backing;
      opts.backing_fmt = "qcow2";
    }
    Status s = run_sync(*loop_, create_qcow2(*loop_, opts));
    EXPECT_TRUE(s) << s.error().message();
    return opts.filename;
  }

  // The image over a recording memory node, with zero COW asked for (it must not be used).
  NodePtr open_image(const std::string& path, const std::string& extra = "") {
    return open(R"({"driver":"qcow2","zero-cow":"on","encrypt":{"key-secret":")" +
                std::string(kSecret) + R"("},)" + extra +
                R"("file":{"driver":"memory","efficient-zeroes":true,"image":")" + path + "\"}}");
  }

  MemoryNode& file_of(BlockNode& qcow2) { return static_cast<MemoryNode&>(*qcow2.primary_child()); }

  std::vector<uint8_t> read(BlockNode& node, uint64_t offset, uint64_t bytes) {
    std::vector<uint8_t> out(bytes);
    Status s = run_sync(*loop_, node.read(offset, IoVec(out.data(), bytes)));
    EXPECT_TRUE(s) << s.error().message();
    return out;
  }

  static bool all(const std::vector<uint8_t>& v, uint8_t byte) {
    return std::all_of(v.begin(), v.end(), [byte](uint8_t b) { return b == byte; });
  }

  TempDir dir_;
};

// iotests-060-066-134.md §4: a 512-byte write at 512 into an unallocated cluster of an
// AES image. The new cluster (0x50000 in a fresh image: qcow2-format.md §15.3) is written
// once, head and tail encrypted zeros around the data; nothing zeroes host bytes.
TEST_F(Qcow2CryptTest, AesCowRegionsAreEncryptedZerosInOneWrite) {
  NodePtr node = open_image(create("aes", "a.qcow2"));
  ASSERT_TRUE(node);
  MemoryNode& file = file_of(*node);
  file.clear_log();
  std::vector<uint8_t> data(512, 0x0b);
  ASSERT_OK(run_sync(*loop_, node->write(512, IoVec(data.data(), data.size()))));
  for (const RecordedRequest& r : file.log()) {
    EXPECT_NE(r.kind, Kind::kWriteZeroes) << "host bytes zeroed at " << r.offset;
  }
  EXPECT_NE(std::find(file.log().begin(), file.log().end(),
                      RecordedRequest{Kind::kWrite, 0x50000, 65536, {}}),
            file.log().end());
  EXPECT_TRUE(all(read(*node, 0, 512), 0));
  EXPECT_TRUE(all(read(*node, 512, 512), 0x0b));
  EXPECT_TRUE(all(read(*node, 1024, 65536 - 1024), 0));
  // §9.2: the host bytes are AES-128-CBC of the plaintext, IV = the guest sector number.
  std::vector<uint8_t> host = read(file, 0x50000, 1024);
  EXPECT_FALSE(all(host, 0));
  SecretBytes key(16);
  std::copy_n(kPassword, std::strlen(kPassword), key.data());
  crypto::SectorCryptoSpec spec;
  spec.cipher = crypto::CipherAlg::kAes128;
  spec.mode = crypto::CipherMode::kCbc;
  spec.ivgen = crypto::IvGenAlg::kPlain64;
  Result<std::unique_ptr<crypto::SectorCrypto>> aes = crypto::SectorCrypto::create(spec, key);
  ASSERT_TRUE(aes);
  (*aes)->decrypt(0, host.data(), host.size());
  EXPECT_TRUE(std::all_of(host.begin(), host.begin() + 512, [](uint8_t b) { return b == 0; }));
  EXPECT_TRUE(std::all_of(host.begin() + 512, host.end(), [](uint8_t b) { return b == 0x0b; }));
  close(*node);
}

// A misaligned write into a LUKS image over a backing file: the COW head and tail are the
// backing file's data, encrypted for the new host cluster; a second write into the cluster
// goes in place; everything reads back after a reopen.
TEST_F(Qcow2CryptTest, LuksCowRegionsAreReencryptedBackingData) {
  Qcow2CreateOptions base;
  base.filename = dir_.file("base.qcow2");
  base.size = 1 << 20;
  ASSERT_OK(run_sync(*loop_, create_qcow2(*loop_, base)));
  {
    NodePtr b =
        open(R"({"driver":"qcow2","file":{"driver":"file","filename":")" + base.filename + "\"}}");
    ASSERT_TRUE(b);
    std::vector<uint8_t> pattern(1 << 20, 0x5a);
    ASSERT_OK(run_sync(*loop_, b->write(0, IoVec(pattern.data(), pattern.size()))));
    close(*b);
  }
  const std::string top = create("luks", "top.qcow2", base.filename);
  {
    NodePtr node =
        open(R"({"driver":"qcow2","zero-cow":"on","encrypt":{"key-secret":")" +
             std::string(kSecret) + R"("},"file":{"driver":"file","filename":")" + top + "\"}}");
    ASSERT_TRUE(node);
    std::vector<uint8_t> data(3000, 0x11);
    // 3000 bytes at 70000: the block layer pads to sectors (69632..73216), read-modify-write.
    ASSERT_OK(run_sync(*loop_, node->write(70000, IoVec(data.data(), data.size()))));
    std::vector<uint8_t> more(512, 0x22);
    ASSERT_OK(run_sync(*loop_, node->write(65536 + 60000 / 512 * 512, IoVec(more.data(), 512))));
    close(*node);
  }
  NodePtr node = open(R"({"driver":"qcow2","encrypt":{"key-secret":")" + std::string(kSecret) +
                      R"("},"file":{"driver":"file","filename":")" + top + "\"}}");
  ASSERT_TRUE(node);
  EXPECT_TRUE(all(read(*node, 0, 70000), 0x5a));
  EXPECT_TRUE(all(read(*node, 70000, 3000), 0x11));
  EXPECT_TRUE(all(read(*node, 73000, 65536 + 59904 - 73000), 0x5a));
  EXPECT_TRUE(all(read(*node, 65536 + 59904, 512), 0x22));
  EXPECT_TRUE(all(read(*node, 65536 + 60416, (1 << 20) - 65536 - 60416), 0x5a));
  close(*node);
}

// Write-zeroes of part of an unallocated cluster zeroes the whole cluster through the L2
// entry (the rest reads as zeros already), and of part of a data cluster writes encrypted
// zero buffers; compressed writes are refused (§9.1).
TEST_F(Qcow2CryptTest, ZeroWritesAndCompressedWrites) {
  NodePtr node = open_image(create("luks", "z.qcow2"));
  ASSERT_TRUE(node);
  std::vector<uint8_t> data(65536, 0x33);
  ASSERT_OK(run_sync(*loop_, node->write(0, IoVec(data.data(), data.size()))));
  ASSERT_OK(run_sync(*loop_, node->write_zeroes(4096, 4096)));
  ASSERT_OK(run_sync(*loop_, node->write_zeroes(200000, 1000)));
  EXPECT_TRUE(all(read(*node, 0, 4096), 0x33));
  EXPECT_TRUE(all(read(*node, 4096, 4096), 0));
  EXPECT_TRUE(all(read(*node, 8192, 65536 - 8192), 0x33));
  EXPECT_TRUE(all(read(*node, 196608, 65536), 0));
  Status c = run_sync(*loop_, node->write(131072, IoVec(data.data(), data.size()),
                                          RequestFlags(RequestFlag::kWriteCompressed)));
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().errnum(), ENOTSUP);
  close(*node);
}

// §9.3: opening needs the key; a wrong one does not unlock; info names the format.
TEST_F(Qcow2CryptTest, OpenNeedsTheRightKey) {
  const std::string path = create("luks", "k.qcow2");
  Result<NodePtr> none = run_sync(
      *loop_, open_node(*loop_,
                        Options::parse(R"({"driver":"qcow2","file":{"driver":"file","filename":")" +
                                       path + "\"}}"),
                        OpenFlags{}, ""));
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().message(), "Parameter 'encrypt.key-secret' is required for cipher");
  if (!user_objects().secret("crypt-test-wrong")) {
    ASSERT_OK(user_objects().add("secret,id=crypt-test-wrong,data=platypus"));
  }
  Result<NodePtr> wrong = run_sync(
      *loop_,
      open_node(
          *loop_,
          Options::parse(
              R"({"driver":"qcow2","encrypt":{"key-secret":"crypt-test-wrong"},"file":{"driver":"file","filename":")" +
              path + "\"}}"),
          OpenFlags{}, ""));
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().message(), "Invalid password, cannot unlock any keyslot");
  NodePtr node = open_image(path);
  ASSERT_TRUE(node);
  const NodeInfo info = node->info();
  EXPECT_NE(std::find(info.format_specific.begin(), info.format_specific.end(),
                      std::pair<std::string, std::string>("    format", "luks")),
            info.format_specific.end());
  close(*node);
}

// amend -o compat=0.10 expands zero clusters (v2 has no zero flag): on an encrypted image the
// host clusters get encrypted zeros, never zeroed bytes, which would read back as garbage
// (QEMU 7.2 zeroes them, qcow2-format.md §19).
TEST_F(Qcow2CryptTest, DowngradeWritesEncryptedZeros) {
  const std::string path = create("aes", "d.qcow2");
  const std::string json = R"({"driver":"qcow2","encrypt":{"key-secret":")" + std::string(kSecret) +
                           R"("},"file":{"driver":"file","filename":")" + path + "\"}}";
  {
    NodePtr node = open(json);
    ASSERT_TRUE(node);
    std::vector<uint8_t> data(65536, 0x44);
    ASSERT_OK(run_sync(*loop_, node->write(0, IoVec(data.data(), data.size()))));
    // A preallocated zero cluster (the data cluster is kept, without kMayUnmap) and a plain one.
    ASSERT_OK(run_sync(*loop_, node->write_zeroes(0, 65536)));
    ASSERT_OK(run_sync(*loop_, node->write_zeroes(131072, 65536)));
    Qcow2AmendOptions o;
    o.compat = "0.10";
    ASSERT_OK(run_sync(*loop_, amend_image(*node, o, nullptr)));
    EXPECT_TRUE(all(read(*node, 0, 262144), 0));
    close(*node);
  }
  NodePtr node = open(json);
  ASSERT_TRUE(node);
  EXPECT_TRUE(all(read(*node, 0, 262144), 0));
  EXPECT_EQ(node->info().format_specific[0].second, "0.10");
  // The kept host cluster (0x50000 in a fresh image) holds ciphertext.
  EXPECT_FALSE(all(read(*node->primary_child(), 0x50000, 512), 0));
  close(*node);
}

}  // namespace
}  // namespace qblock::qcow2
