// Helpers shared by the block-layer unit tests: ASSERT_OK, a loop fixture and graph builders.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "base/test_macros.h"
#include "block/driver.h"
#include "qblock/event_loop.h"

namespace qblock::testing {

// A fresh EventLoop per test and a helper to open graphs from JSON text.
class LoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop);
    loop_ = std::move(*loop);
  }
  // Opens a node graph from JSON options; fails the test on error.
  NodePtr open(const std::string& json, OpenFlags flags = {}) {
    Result<NodePtr> node = run_sync(*loop_, open_node(*loop_, Options::parse(json), flags, ""));
    EXPECT_TRUE(node.has_value()) << (node ? "" : node.error().message());
    return node ? std::move(*node) : nullptr;
  }
  void close(BlockNode& node) { EXPECT_TRUE(run_sync(*loop_, node.close()).has_value()); }

  std::unique_ptr<EventLoop> loop_;
};

// A temporary directory removed (with its contents) at destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace qblock::testing
