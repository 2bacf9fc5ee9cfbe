// qemu-img amend for qcow2 (qemu-compat.md §3.8): the steps in qemu-img 7.2's order, its
// refusals and messages, and the version changes (qcow2-format.md §2: a v2 header is the
// first 72 bytes of a v3 one, without feature bits, refcount order or feature name table).
// The zero-cluster expansion is zero_expand.cc, the refcount width change refcount_rewrite.cc.
#include <fmt/format.h>

#include <bit>
#include <optional>
#include <string>
#include <utility>

#include "block/formats/qcow2/qcow2.h"
#include "block/formats/qcow2/qcow2_node.h"

namespace qblock::qcow2 {

namespace {

Error invalid(std::string text) { return Error::with_message(EINVAL, std::move(text)); }

// "what: strerror", as QEMU's error_setg_errno.
Error with_prefix(const Error& e, std::string_view what) {
  return Error::with_message(e.errnum(), std::string(what) + ": " + e.errno_text());
}

std::optional<std::string> optional_name(const std::string& name) {
  if (name.empty()) return std::nullopt;
  return name;
}

// Cluster 0 as QEMU's qcow2_update_header writes it: the whole cluster, so that what an
// older, longer header left after the new end is cleared.
Task<Status> write_header_cluster(BlockNode& file, const Header& header) {
  Result<std::vector<uint8_t>> raw = serialize_header(header);
  if (!raw) co_return fail(raw.error());
  raw->resize(header.cluster_size(), 0);
  Status s = co_await file.write(0, IoVec(raw->data(), raw->size()));
  if (!s) co_return s;
  co_return co_await file.flush();
}

}  // namespace

Task<Status> amend_qcow2_node(BlockNode& node, Qcow2AmendOptions options, AmendProgress progress) {
  auto* qcow2 = dynamic_cast<Qcow2Node*>(&node);
  if (!qcow2) {
    co_return fail(Error::with_message(
        ENOTSUP, "Format driver '" + node.driver_name() + "' does not support option amendment"));
  }
  co_return co_await qcow2->amend(std::move(options), std::move(progress));
}

Task<Status> Qcow2Node::amend(Qcow2AmendOptions o, AmendProgress progress) {
  if (Status u = check_usable(); !u) co_return u;
  const uint32_t old_version = header_.version;
  uint32_t new_version = old_version;
  // The checks QEMU makes while it reads the options (in the order of its option table:
  // encryption first), before anything changes.
  if (o.encryption) {
    if (header_.crypt_method == 0) {
      co_return fail(invalid("Can't amend encryption options - encryption not present"));
    }
    if (header_.crypt_method != kCryptLuks) {
      co_return fail(Error::with_message(ENOTSUP, "Amending encryption options is not supported"));
    }
    Status slots = co_await amend_luks_slots(o);
    if (!slots) co_return slots;
    const bool more = o.compat || o.lazy_refcounts || o.refcount_bits || o.backing_file ||
                      o.backing_fmt || o.data_file || o.data_file_raw || o.size;
    if (!more) co_return ok();
  }
  if (o.compat) {
    if (*o.compat == "0.10" || *o.compat == "v2") {
      new_version = 2;
    } else if (*o.compat == "1.1" || *o.compat == "v3") {
      new_version = 3;
    } else {
      co_return fail(invalid("Unknown compatibility level " + *o.compat));
    }
  }
  if (o.data_file && header_.data_file.empty()) {
    co_return fail(invalid("data-file can only be set for images that use an external data file"));
  }
  if (o.data_file_raw && *o.data_file_raw &&
      !(header_.autoclear_features & kAutoclearDataFileRaw)) {
    co_return fail(invalid("data-file-raw cannot be set on existing images"));
  }
  if (o.refcount_bits) {
    const uint64_t bits = *o.refcount_bits;
    if (bits == 0 || bits > 64 || !std::has_single_bit(bits)) {
      co_return fail(invalid("Refcount width must be a power of two and may not exceed 64 bits"));
    }
  }

  {
    AsyncMutex::Guard guard = co_await lock_.lock();
    if (Status s = co_await flush_metadata(); !s) co_return s;
    if (new_version > old_version) {
      if (Status s = co_await upgrade_to_v3(progress); !s) co_return s;
    }
    if (o.backing_file || o.backing_fmt) {
      // Only the backing file the image has is accepted (7.2 moved changes to rebase).
      if (o.backing_file != optional_name(header_.backing_file) ||
          o.backing_fmt != optional_name(header_.backing_format)) {
        co_return fail(
            invalid("Cannot amend the backing file\nYou can use 'qemu-img rebase' instead."));
      }
    }
    const bool lazy = header_.compatible_features & kCompatLazyRefcounts;
    if (o.lazy_refcounts && *o.lazy_refcounts != lazy) {
      if (*o.lazy_refcounts) {
        if (new_version < 3) {
          co_return fail(
              invalid("Lazy refcounts only supported with compatibility level 1.1 and above (use "
                      "compat=1.1 or greater)"));
        }
        header_.compatible_features |= kCompatLazyRefcounts;
      } else {
        // The refcounts are up to date (flushed above): the image is clean.
        header_.incompatible_features &= ~kIncompatDirty;
        header_.compatible_features &= ~kCompatLazyRefcounts;
      }
      if (Status s = co_await write_header_cluster(*file_, header_); !s) {
        co_return fail(with_prefix(s.error(), "Failed to update the image header"));
      }
    }
    if (o.refcount_bits && *o.refcount_bits != header_.refcount_bits()) {
      if (new_version < 3 && *o.refcount_bits != 16) {
        co_return fail(invalid(
            "Refcount widths other than 16 bits require compatibility level 1.1 or above (use "
            "compat=1.1 or greater)"));
      }
      const auto order = static_cast<uint32_t>(std::countr_zero(*o.refcount_bits));
      if (Status s = co_await change_refcount_order(order); !s) co_return s;
    }
    // §10: the data file's name in the header (the open data file stays), and dropping
    // data_file_raw (checked above: it cannot be set again).
    if (o.data_file) header_.data_file = *o.data_file;
    if (o.data_file_raw && !*o.data_file_raw) {
      header_.autoclear_features &= ~kAutoclearDataFileRaw;
      data_file_raw_ = false;
    }
    // QEMU rewrites the header here whatever changed.
    if (Status s = co_await write_header_cluster(*file_, header_); !s) {
      co_return fail(with_prefix(s.error(), "Failed to update the image header"));
    }
  }
  if (o.size && *o.size) {
    Task<Status> resize = truncate(*o.size, PreallocMode::kOff, Exact::kYes);
    if (Status s = co_await std::move(resize); !s) co_return s;
  }
  if (new_version < old_version) {
    AsyncMutex::Guard guard = co_await lock_.lock();
    if (Status s = co_await flush_metadata(); !s) co_return s;
    co_return co_await downgrade_to_v2(progress);
  }
  co_return ok();
}

Task<Status> Qcow2Node::upgrade_to_v3(const AmendProgress& progress) {
  header_.version = 3;
  header_.header_length = 112;
  header_.refcount_order = 4;
  header_.compression_type = 0;
  header_.has_feature_table = true;
  header_.feature_names = default_feature_names();
  if (progress) progress(0);
  if (progress) progress(50);
  if (Status s = co_await write_header_cluster(*file_, header_); !s) {
    co_return fail(with_prefix(s.error(), "Failed to update the image header"));
  }
  if (progress) progress(100);
  co_return ok();
}

Task<Status> Qcow2Node::downgrade_to_v2(const AmendProgress& progress) {
  if (header_.refcount_order != 4) {
    co_return fail(Error::with_message(ENOTSUP, "compat=0.10 requires refcount_bits=16"));
  }
  if (!header_.data_file.empty()) {
    co_return fail(Error::with_message(ENOTSUP, "Cannot downgrade an image with a data file"));
  }
  if (header_.incompatible_features & kIncompatDirty) {
    // The refcounts were flushed by the caller: clearing the bit is all "clean" takes.
    header_.incompatible_features &= ~kIncompatDirty;
    if (Status s = co_await write_header_cluster(*file_, header_); !s) co_return s;
  }
  // 7.2 lets the compression-type bit through: it only counts with zstd (then refused by
  // no v2 reader), and an image without compressed clusters is unaffected.
  const uint64_t incompatible = header_.incompatible_features & ~kIncompatCompression;
  if (incompatible) {
    co_return fail(Error::with_message(
        ENOTSUP, fmt::format("Cannot downgrade an image with incompatible features {:#x} set",
                             incompatible)));
  }
  header_.compatible_features = 0;
  header_.autoclear_features = 0;
  if (Status s = co_await expand_zero_clusters(); !s) {
    co_return fail(with_prefix(s.error(), "Failed to turn zero into data clusters"));
  }
  if (progress) progress(100);
  header_.version = 2;
  header_.header_length = 72;
  header_.incompatible_features = 0;
  header_.compression_type = 0;
  header_.unknown_fields.clear();
  header_.has_feature_table = false;
  header_.feature_names.clear();
  if (Status s = co_await write_header_cluster(*file_, header_); !s) {
    co_return fail(with_prefix(s.error(), "Failed to update the image header"));
  }
  co_return ok();
}

}  // namespace qblock::qcow2
