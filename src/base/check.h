// CHECK: a broken invariant is a bug; print file, line and the condition, then abort.
#pragma once

#include <cstdio>
#include <cstdlib>

#define QBLOCK_CHECK(cond)                                                          \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

#define CHECK(cond) QBLOCK_CHECK(cond)
