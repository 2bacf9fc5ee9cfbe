// Loading librbd at run time (librbd_api.h).
#include "block/protocols/librbd_api.h"

#include <dlfcn.h>

#include <mutex>

#include "base/check.h"

namespace qblock::rbd_client {

namespace {

struct Loaded {
  LibRbd table;
  std::string error;  // empty: loaded
};

Loaded load() {
  Loaded out;
  // librbd stays loaded for the life of the process, as a linked library would.
  void* handle = dlopen("librbd.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* e = dlerror();
    out.error = e ? e : "librbd.so.1: cannot be loaded";
    return out;
  }
  // dlsym searches librbd's dependencies too, so the rados_ functions resolve through it.
#define QBLOCK_LIBRBD_RESOLVE(name)                                           \
  out.table.name = reinterpret_cast<decltype(&::name)>(dlsym(handle, #name)); \
  if (!out.table.name) {                                                      \
    out.error = "librbd.so.1: undefined symbol: " #name;                      \
    return out;                                                               \
  }
  QBLOCK_LIBRBD_FUNCTIONS(QBLOCK_LIBRBD_RESOLVE)
#undef QBLOCK_LIBRBD_RESOLVE
  return out;
}

const Loaded& loaded() {
  static const Loaded library = load();
  return library;
}

}  // namespace

const LibRbd* load_librbd(std::string* error) {
  const Loaded& l = loaded();
  if (!l.error.empty()) {
    *error = l.error;
    return nullptr;
  }
  return &l.table;
}

const LibRbd& librbd() {
  const Loaded& l = loaded();
  CHECK(l.error.empty());
  return l.table;
}

}  // namespace qblock::rbd_client
