// The driver registry: out-of-tree drivers added with register_driver().
#include <gtest/gtest.h>

#include "base/test_macros.h"
#include "block/driver.h"
#include "block/protocols/memory.h"

namespace qblock {
namespace {

TEST(Registry, RegisteredDriverIsFoundAndNamesStayUnique) {
  EXPECT_EQ(find_driver("registry-test-memory"), nullptr);
  ASSERT_OK(register_driver(
      {"registry-test-memory", NodeKind::kProtocol, &open_memory_node, nullptr, true}));
  const DriverEntry* found = find_driver("registry-test-memory");
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->open, &open_memory_node);
  EXPECT_NE(find_driver("qcow2"), nullptr);  // the in-tree drivers are still there
  EXPECT_ERRNO(register_driver(
                   {"registry-test-memory", NodeKind::kProtocol, &open_memory_node, nullptr, true}),
               EEXIST);
  EXPECT_ERRNO(register_driver({"raw", NodeKind::kFormat, &open_memory_node, nullptr}), EEXIST);
}

}  // namespace
}  // namespace qblock
