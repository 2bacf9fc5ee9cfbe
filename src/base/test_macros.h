// GoogleTest assertions on Result/Status values, for every layer's tests.
#pragma once

#include <gtest/gtest.h>

#define ASSERT_OK(expr)                                                   \
  do {                                                                    \
    auto&& _r = (expr);                                                   \
    ASSERT_TRUE(_r.has_value()) << #expr << ": " << _r.error().message(); \
  } while (0)
#define EXPECT_OK(expr)                                                   \
  do {                                                                    \
    auto&& _r = (expr);                                                   \
    EXPECT_TRUE(_r.has_value()) << #expr << ": " << _r.error().message(); \
  } while (0)
#define EXPECT_ERRNO(expr, e)                                    \
  do {                                                           \
    auto&& _r = (expr);                                          \
    ASSERT_FALSE(_r.has_value()) << #expr << " succeeded";       \
    EXPECT_EQ(_r.error().errnum(), (e)) << _r.error().message(); \
  } while (0)
