// librbd and librados, loaded on first use instead of linked. Linking them costs every qblock
// process about 16 ms at start-up (they bring in some 30 more shared libraries and Ceph's
// static constructors): `qblock snapshot -l` took 18 ms against qemu-img's 6.5 ms, which
// loads its rbd driver as a module for the same reason. Only a process that opens, creates or
// removes an rbd image pays for them now.
#pragma once

#include <rados/librados.h>
#include <rbd/librbd.h>

#include <string>

namespace qblock::rbd_client {

// The functions the rbd driver calls, as the library's headers declare them.
#define QBLOCK_LIBRBD_FUNCTIONS(X) \
  X(rados_create)                  \
  X(rados_conf_read_file)          \
  X(rados_conf_parse_env)          \
  X(rados_conf_set)                \
  X(rados_conf_get)                \
  X(rados_connect)                 \
  X(rados_shutdown)                \
  X(rados_ioctx_create)            \
  X(rados_ioctx_destroy)           \
  X(rados_ioctx_set_namespace)     \
  X(rbd_namespace_exists)          \
  X(rbd_open)                      \
  X(rbd_open_read_only)            \
  X(rbd_close)                     \
  X(rbd_stat)                      \
  X(rbd_get_features)              \
  X(rbd_get_flags)                 \
  X(rbd_resize)                    \
  X(rbd_create4)                   \
  X(rbd_remove)                    \
  X(rbd_image_options_create)      \
  X(rbd_image_options_destroy)     \
  X(rbd_snap_list)                 \
  X(rbd_snap_list_end)             \
  X(rbd_diff_iterate2)             \
  X(rbd_aio_create_completion)     \
  X(rbd_aio_get_return_value)      \
  X(rbd_aio_release)               \
  X(rbd_aio_readv)                 \
  X(rbd_aio_writev)                \
  X(rbd_aio_write_zeroes)          \
  X(rbd_aio_discard)               \
  X(rbd_aio_flush)

struct LibRbd {
#define QBLOCK_LIBRBD_MEMBER(name) decltype(&::name) name = nullptr;
  QBLOCK_LIBRBD_FUNCTIONS(QBLOCK_LIBRBD_MEMBER)
#undef QBLOCK_LIBRBD_MEMBER
};

// Loads librbd.so.1 (with librados.so.2 beneath it) the first time; later calls return the
// same table. Thread-safe. On failure returns null and sets `*error` to what the dynamic
// loader said (the library is missing, or lacks one of the functions).
const LibRbd* load_librbd(std::string* error);

// The loaded table. REQUIRES: load_librbd() has succeeded in this process (every cluster,
// pool, image and completion handle comes from a connection made after it did).
const LibRbd& librbd();

}  // namespace qblock::rbd_client
