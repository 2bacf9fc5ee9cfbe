// Helpers shared by the filter drivers' unit tests: a loop fixture that creates qcow2 and raw
// images in a temporary directory with qblock's own create, opens graphs from JSON text and
// reads, writes and checks allocation in one line each.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "block/formats/qcow2/create.h"
#include "block/test_util.h"
#include "qblock/options.h"

namespace qblock::testing {

class FilterTest : public LoopTest {
 protected:
  // Creates `name` as a qcow2 image of `size` bytes (64 KiB clusters), optionally over
  // `backing` (a qcow2 file in the same directory). Returns its path.
  std::string make_qcow2(const std::string& name, uint64_t size, const std::string& backing = "") {
    qcow2::Qcow2CreateOptions opts;
    opts.filename = dir_.file(name);
    opts.size = size;
    if (!backing.empty()) {
      opts.backing_file = dir_.file(backing);
      opts.backing_fmt = "qcow2";
    }
    Status s = run_sync(*loop_, qcow2::create_qcow2(*loop_, opts));
    EXPECT_TRUE(s) << (s ? "" : s.error().message());
    return opts.filename;
  }
  Result<NodePtr> try_open(const std::string& json, OpenFlags flags = {}) {
    Result<Options> o = parse_json_options(json);
    if (!o) return fail(o.error());
    return run_sync(*loop_, open_node(*loop_, std::move(*o), flags, ""));
  }
  // The open error's message, or "(opened)".
  std::string open_error(const std::string& json, OpenFlags flags = {}) {
    Result<NodePtr> node = try_open(json, flags);
    if (node) {
      close(**node);
      return "(opened)";
    }
    return node.error().message();
  }
  Status write(BlockNode& n, uint64_t offset, uint64_t len, uint8_t byte) {
    std::vector<uint8_t> buf(len, byte);
    return run_sync(*loop_, n.write(offset, IoVec(buf.data(), len)));
  }
  Result<std::vector<uint8_t>> try_read(BlockNode& n, uint64_t offset, uint64_t len) {
    std::vector<uint8_t> buf(len, 0x5a);
    Status s = run_sync(*loop_, n.read(offset, IoVec(buf.data(), len)));
    if (!s) return fail(s.error());
    return buf;
  }
  std::vector<uint8_t> read(BlockNode& n, uint64_t offset, uint64_t len) {
    Result<std::vector<uint8_t>> r = try_read(n, offset, len);
    EXPECT_TRUE(r) << (r ? "" : r.error().message());
    return r ? *r : std::vector<uint8_t>();
  }
  // Whether every byte of `buf` is `byte`.
  static bool all(const std::vector<uint8_t>& buf, uint8_t byte) {
    for (uint8_t b : buf) {
      if (b != byte) return false;
    }
    return !buf.empty();
  }
  // Whether [offset, offset + len) is allocated in `n` itself (as one extent).
  bool allocated(BlockNode& n, uint64_t offset, uint64_t len) {
    Result<std::pair<bool, uint64_t>> r = run_sync(*loop_, n.is_allocated(offset, len));
    EXPECT_TRUE(r);
    return r && r->first && r->second == len;
  }
  bool unallocated(BlockNode& n, uint64_t offset, uint64_t len) {
    Result<std::pair<bool, uint64_t>> r = run_sync(*loop_, n.is_allocated(offset, len));
    EXPECT_TRUE(r);
    return r && !r->first && r->second == len;
  }
  // The writable qcow2 file `name` alone, for preparing contents.
  NodePtr open_qcow2(const std::string& name) {
    return open(R"({"driver":"qcow2","file":{"driver":"file","filename":")" + dir_.file(name) +
                R"("}})");
  }

  TempDir dir_;
};

}  // namespace qblock::testing
