// The public image-level operations (qblock/image.h), forwarding to the qcow2 creator, header
// and table readers and checker in src/block/formats/qcow2/. The public types are plain
// copies of the internal ones, so the qcow2 internals can change without touching the API.
#include "qblock/image.h"

#include <algorithm>
#include <utility>

#include "block/driver.h"
#include "block/formats/luks.h"
#include "block/formats/qcow2/bitmaps.h"
#include "block/formats/qcow2/check.h"
#include "block/formats/qcow2/create.h"
#include "block/formats/qcow2/header.h"
#include "block/formats/qcow2/qcow2.h"
#include "block/formats/qcow2/snapshot.h"
#include "block/protocols/nbd_address.h"
#include "block/protocols/rbd.h"
#include "block/protocols/rbd_address.h"

namespace qblock {

namespace {

// Incompatible features qblock's qcow2 support knows (qcow2-format.md §2.3).
constexpr uint64_t kKnownIncompatible = 0x1f;

Task<Result<NodePtr>> open_file_read_only(EventLoop& loop, std::string filename) {
  Options options = Options::object();
  // An nbd URI names the nbd protocol, as in BlockBackend.
  options["driver"] = nbd_client::has_nbd_prefix(filename)   ? "nbd"
                      : rbd_client::has_rbd_prefix(filename) ? "rbd"
                                                             : "file";
  options["filename"] = std::move(filename);
  OpenFlags flags;
  flags.read_only = true;
  co_return co_await open_node(loop, std::move(options), flags, "file");
}

// The first bytes of `file` (up to 2 MiB, the largest cluster).
Task<Result<std::vector<uint8_t>>> read_head(BlockNode& file) {
  std::vector<uint8_t> buf(std::min<uint64_t>(file.length(), 2 << 20), 0);
  IoVec qiov(buf.data(), buf.size());
  Status read = co_await file.read(0, std::move(qiov));
  if (!read) co_return fail(read.error());
  co_return buf;
}

// Internal snapshots (qcow2-format.md §8.1) and persistent bitmaps (§14) into `info`.
Task<Status> read_tables(BlockNode& file, qcow2::Header header, Qcow2Info* info) {
  Status result = ok();
  if (header.nb_snapshots) {
    Task<Result<qcow2::SnapshotTable>> read = qcow2::read_snapshot_table(file, header);
    Result<qcow2::SnapshotTable> table = co_await std::move(read);
    if (table) {
      for (const qcow2::Snapshot& s : table->snapshots) {
        info->snapshots.push_back(SnapshotInfo{s.id, s.name, s.date_sec, s.date_nsec,
                                               s.vm_clock_nsec, s.vm_state_size, s.icount});
      }
    } else {
      result = fail(table.error());
    }
  }
  if (result) {
    Task<Result<qcow2::BitmapDirectory>> read = qcow2::read_bitmap_directory(file, header);
    Result<qcow2::BitmapDirectory> dir = co_await std::move(read);
    if (dir) {
      for (const qcow2::Bitmap& b : dir->bitmaps) {
        // QEMU's open loads every consistent bitmap: a damaged table fails it.
        if (!(b.flags & qcow2::kBitmapInUse)) {
          Task<Result<std::vector<uint64_t>>> read_table =
              qcow2::read_bitmap_table(file, header, b);
          Result<std::vector<uint64_t>> bitmap_table = co_await std::move(read_table);
          if (!bitmap_table) co_return fail(bitmap_table.error());
        }
        info->bitmaps.push_back(BitmapInfo{b.name, (b.flags & qcow2::kBitmapInUse) != 0,
                                           (b.flags & qcow2::kBitmapAuto) != 0,
                                           uint64_t{1} << b.granularity_bits});
      }
    } else {
      result = fail(dir.error());
    }
  }
  co_return result;
}

}  // namespace

Status validate_qcow2_create_options(const Qcow2CreateOptions& options) {
  return qcow2::validate_create_options(options);
}

Task<Status> create_qcow2_image(EventLoop& loop, Qcow2CreateOptions options) {
  co_return co_await qcow2::create_qcow2(loop, std::move(options));
}

Task<Status> create_raw_image(EventLoop& loop, std::string filename, uint64_t size,
                              PreallocMode preallocation, FileCreateOptions file) {
  co_return co_await qcow2::create_raw(loop, std::move(filename), size, preallocation, file);
}

Status validate_file_create_options(const FileCreateOptions& options) {
  return qcow2::validate_file_options(options);
}

Task<Result<ImageInfo>> read_image_info(BlockNode& file, std::string format) {
  Task<Result<std::vector<uint8_t>>> read = read_head(file);
  Result<std::vector<uint8_t>> head = co_await std::move(read);
  if (!head) co_return fail(head.error());
  const std::vector<uint8_t>& buf = *head;
  ImageInfo info;
  info.file_length = file.length();
  if (format.empty()) {
    format = buf.size() >= 8 && buf[0] == 0x51 && buf[1] == 0x46 && buf[2] == 0x49 && buf[3] == 0xfb
                 ? "qcow2"
                 : "raw";
    if (format == "raw" && probe_luks_format(buf.data(), buf.size())) format = "luks";
  }
  info.format = format;
  // An image on RBD: qemu-img shows its node tree as the name, knows no disk size and, for
  // raw, gives the object size as the cluster size.
  info.display_filename = rbd_display_filename(file, format);
  info.remote = !info.display_filename.empty();
  if (format == "raw") {
    if (info.remote) {
      info.file_cluster_size = file.info().cluster_size;
      Task<std::vector<SnapshotInfo>> list = list_rbd_snapshots(file);
      info.file_snapshots = co_await std::move(list);
    }
    // QEMU reports the raw length rounded up to whole sectors (observed with qemu-img 7.2).
    info.virtual_size = (info.file_length + 511) / 512 * 512;
    co_return info;
  }
  if (format == "luks") {
    Result<LuksInfo> luks = parse_luks_info(buf.data(), buf.size(), info.file_length);
    if (!luks) co_return fail(luks.error());
    // Whole sectors after the key slots, as QEMU counts them.
    const uint64_t payload = std::min(info.file_length, luks->payload_offset);
    info.virtual_size = (info.file_length - payload + 511) / 512 * 512;
    info.luks = std::move(*luks);
    co_return info;
  }
  if (format != "qcow2") {
    co_return fail(Error::with_message(EINVAL, "Unknown driver '" + format + "'"));
  }
  Result<qcow2::Header> h = qcow2::parse_header(buf.data(), buf.size());
  if (!h) co_return fail(h.error());
  if (uint64_t unknown = h->incompatible_features & ~kKnownIncompatible) {
    co_return fail(Error::with_message(ENOTSUP, qcow2::unsupported_features_message(*h, unknown)));
  }
  info.virtual_size = h->size / 512 * 512;
  Qcow2Info& q = info.qcow2.emplace();
  q.version = h->version;
  q.cluster_size = h->cluster_size();
  q.refcount_bits = h->refcount_bits();
  q.compression_type = h->compression_type;
  q.encrypted = h->crypt_method != 0;
  if (q.encrypted) {
    q.encrypt_format = h->crypt_method == 1 ? "aes" : "luks";
    // qcow2-format.md §9.3: the LUKS header lies in the area the extension points at.
    if (h->crypt_method == 2 && h->crypto_header) {
      const auto [area, area_len] = *h->crypto_header;
      if (area >= info.file_length || info.file_length - area < 1024) {
        co_return fail(Error::with_message(EINVAL, "Volume is not in LUKS format"));
      }
      AlignedBuffer luks_head(1024, 4096);
      Status r = co_await file.read(area, IoVec(luks_head.data(), luks_head.size()));
      if (!r) co_return fail(r.error());
      Result<LuksInfo> luks = parse_luks_info(luks_head.data(), luks_head.size(), area_len);
      if (!luks) co_return fail(luks.error());
      q.luks = std::move(*luks);
    }
  }
  q.lazy_refcounts = (h->compatible_features & qcow2::kCompatLazyRefcounts) != 0;
  q.dirty = (h->incompatible_features & qcow2::kIncompatDirty) != 0;
  q.corrupt = (h->incompatible_features & qcow2::kIncompatCorrupt) != 0;
  q.extended_l2 = h->extended_l2();
  q.has_data_file = h->incompatible_features & qcow2::kIncompatDataFile;
  q.data_file = h->data_file;
  q.data_file_raw = h->autoclear_features & qcow2::kAutoclearDataFileRaw;
  q.backing_file = h->backing_file;
  q.backing_format = h->backing_format;
  if (h->nb_snapshots || h->bitmaps) {
    Task<Status> tables = read_tables(file, std::move(*h), &q);
    Status read_tables_status = co_await std::move(tables);
    if (!read_tables_status) co_return fail(read_tables_status.error());
  }
  co_return info;
}

Task<Result<ImageInfo>> read_image_info(EventLoop& loop, std::string filename, std::string format) {
  Task<Result<NodePtr>> open = open_file_read_only(loop, std::move(filename));
  Result<NodePtr> file = co_await std::move(open);
  if (!file) co_return fail(file.error());
  Task<Result<ImageInfo>> describe = read_image_info(**file, std::move(format));
  Result<ImageInfo> info = co_await std::move(describe);
  Status closed = co_await (*file)->close();
  (void)closed;
  co_return info;
}

Task<Result<CheckResult>> check_image(BlockNode& root, unsigned repair) {
  unsigned fix = 0;
  if (repair & kRepairLeaks) fix |= qcow2::kFixLeaks;
  if (repair & kRepairErrors) fix |= qcow2::kFixErrors;
  Task<Result<qcow2::CheckResult>> check = qcow2::check_qcow2_node(root, fix);
  Result<qcow2::CheckResult> r = co_await std::move(check);
  if (!r) co_return fail(r.error());
  CheckResult out;
  out.corruptions = r->corruptions;
  out.leaks = r->leaks;
  out.check_errors = r->check_errors;
  out.corruptions_fixed = r->corruptions_fixed;
  out.leaks_fixed = r->leaks_fixed;
  out.image_end_offset = r->image_end_offset;
  out.total_clusters = r->total_clusters;
  out.allocated_clusters = r->allocated_clusters;
  out.fragmented_clusters = r->fragmented_clusters;
  out.compressed_clusters = r->compressed_clusters;
  co_return out;
}

Task<Status> amend_image(BlockNode& root, Qcow2AmendOptions options, AmendProgress progress) {
  co_return co_await qcow2::amend_qcow2_node(root, std::move(options), std::move(progress));
}

}  // namespace qblock
