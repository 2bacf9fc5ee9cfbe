// Opening a qcow2 image: runtime options (with QEMU's cache sizing), the header and its
// refusals, dirty-image repair, the preallocate filter, the backing file; and the format
// probe and the check entry point of qcow2.h.
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <bit>
#include <climits>
#include <fstream>

#include "base/byte_order.h"
#include "block/filters/preallocate.h"
#include "block/formats/qcow2/bitmaps.h"
#include "block/formats/qcow2/qcow2.h"
#include "block/formats/qcow2/qcow2_node.h"
#include "block/formats/qcow2/snapshot.h"
#include "block/node_reference.h"

namespace qblock::qcow2 {

namespace {

// Incompatible features this driver implements (§2.3).
constexpr uint64_t kSupportedIncompatible = kIncompatDirty | kIncompatCorrupt |
                                            kIncompatCompression | kIncompatExtendedL2 |
                                            kIncompatDataFile;

// QEMU 7.2's defaults on Linux and its lower bounds (in cache entries).
constexpr uint64_t kDefaultL2CacheMaxBytes = 32ULL << 20;
constexpr uint64_t kDefaultCleanIntervalSeconds = 600;
constexpr uint64_t kMinL2CacheEntries = 2;
constexpr uint64_t kMinRefcountCacheClusters = 4;

// The cache options as given (nullopt: not set).
struct CacheOptions {
  std::optional<uint64_t> cache_size;
  std::optional<uint64_t> l2_cache_size;
  std::optional<uint64_t> l2_cache_entry_size;
  std::optional<uint64_t> refcount_cache_size;
  std::optional<uint64_t> clean_interval;
};

Result<CacheOptions> take_cache_options(Options& options) {
  CacheOptions c;
  struct {
    const char* key;
    std::optional<uint64_t>* value;
  } sizes[] = {{"cache-size", &c.cache_size},
               {"l2-cache-size", &c.l2_cache_size},
               {"l2-cache-entry-size", &c.l2_cache_entry_size},
               {"refcount-cache-size", &c.refcount_cache_size}};
  for (const auto& [key, value] : sizes) {
    Result<std::optional<uint64_t>> v = take_size(options, key);
    if (!v) return fail(v.error());
    *value = *v;
  }
  // A number of seconds; QEMU reads a negative one as a huge unsigned value.
  if (options.contains("cache-clean-interval") && options["cache-clean-interval"].is_string() &&
      options["cache-clean-interval"].get<std::string>().starts_with("-")) {
    return fail(Error::with_message(EINVAL, "Cache clean interval too big"));
  }
  Result<std::optional<uint64_t>> interval = take_size(options, "cache-clean-interval");
  if (!interval) return fail(interval.error());
  c.clean_interval = *interval;
  return c;
}

// The cache sizes QEMU derives from the options for this image (its rules, observed and as
// documented for qcow2's cache options): the L2 cache covers the whole disk up to 32 MiB
// unless told otherwise, cache-size is shared out between the two caches, and a cache that
// cannot cover the disk uses 4 KiB slices of the L2 tables.
Result<CacheSettings> cache_settings(const CacheOptions& o, const Header& h) {
  const uint64_t cs = h.cluster_size();
  const uint64_t min_refcount_bytes = kMinRefcountCacheClusters * cs;
  const uint64_t disk_clusters = (h.size + cs - 1) / cs;
  const uint64_t entry_bytes = h.extended_l2() ? 16 : 8;  // §7.1
  const uint64_t max_l2_bytes = (disk_clusters * entry_bytes + cs - 1) / cs * cs;
  CacheSettings c;
  c.l2_entry_bytes = o.l2_cache_entry_size.value_or(cs);
  c.l2_cache_bytes = std::min(max_l2_bytes, o.l2_cache_size.value_or(kDefaultL2CacheMaxBytes));
  c.refcount_cache_bytes = o.refcount_cache_size.value_or(0);
  if (o.cache_size) {
    const uint64_t total = *o.cache_size;
    if (o.l2_cache_size && o.refcount_cache_size) {
      return fail(Error::with_message(
          EINVAL,
          "cache-size, l2-cache-size and refcount-cache-size may not be set at the same time"));
    }
    if (o.l2_cache_size && *o.l2_cache_size > total) {
      return fail(Error::with_message(EINVAL, "l2-cache-size may not exceed cache-size"));
    }
    if (c.refcount_cache_bytes > total) {
      return fail(Error::with_message(EINVAL, "refcount-cache-size may not exceed cache-size"));
    }
    if (o.l2_cache_size) {
      c.refcount_cache_bytes = total - c.l2_cache_bytes;
    } else if (o.refcount_cache_size) {
      c.l2_cache_bytes = total - c.refcount_cache_bytes;
    } else if (total >= max_l2_bytes + min_refcount_bytes) {
      c.l2_cache_bytes = max_l2_bytes;
      c.refcount_cache_bytes = total - max_l2_bytes;
    } else {
      c.refcount_cache_bytes = std::min(total, min_refcount_bytes);
      c.l2_cache_bytes = total - c.refcount_cache_bytes;
    }
  }
  if (c.l2_cache_bytes < max_l2_bytes && !o.l2_cache_entry_size) {
    c.l2_entry_bytes = std::min<uint64_t>(cs, 4096);
  }
  if (c.l2_entry_bytes < 512 || c.l2_entry_bytes > cs || !std::has_single_bit(c.l2_entry_bytes)) {
    return fail(Error::with_message(
        EINVAL, fmt::format("L2 cache entry size must be a power of two between 512 and the "
                            "cluster size ({})",
                            cs)));
  }
  const uint64_t l2_entries = std::max(c.l2_cache_bytes / c.l2_entry_bytes, kMinL2CacheEntries);
  if (l2_entries > INT_MAX) return fail(Error::with_message(EINVAL, "L2 cache size too big"));
  const uint64_t refcount_clusters =
      std::max(c.refcount_cache_bytes / cs, kMinRefcountCacheClusters);
  if (refcount_clusters > INT_MAX) {
    return fail(Error::with_message(EINVAL, "Refcount cache size too big"));
  }
  c.l2_cache_bytes = l2_entries * c.l2_entry_bytes;
  c.refcount_cache_bytes = refcount_clusters * cs;
  // QEMU allocates both caches up front; qblock fills them on demand, but refuses sizes no
  // machine could hold, as QEMU's allocation does.
  const uint64_t memory =
      static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  if (c.l2_cache_bytes + c.refcount_cache_bytes > memory) {
    return fail(Error::with_message(ENOMEM, "Could not allocate metadata caches"));
  }
  c.clean_interval_seconds = o.clean_interval.value_or(kDefaultCleanIntervalSeconds);
  if (c.clean_interval_seconds > UINT_MAX) {
    return fail(Error::with_message(EINVAL, "Cache clean interval too big"));
  }
  return c;
}

// Reads cluster 0 and parses it.
Task<Result<Header>> read_header(BlockNode& file, SnapshotTableLimits snapshots) {
  AlignedBuffer first(512, 4096);
  first.fill(0);
  const uint64_t len = file.length();
  if (len < 72) co_return fail(Error::with_message(EINVAL, "Image is not in qcow2 format"));
  Status s = co_await file.read(0, IoVec(first.data(), 512));
  if (!s) co_return fail(s.error());
  const uint32_t bits = load_be32(first.data() + 20);
  if (load_be32(first.data()) == kMagic && bits >= 9 && bits <= 21) {
    const uint64_t cs = 1ULL << bits;
    const uint64_t n = std::min<uint64_t>(cs, (len + 511) / 512 * 512);
    AlignedBuffer cluster(n, 4096);
    s = co_await file.read(0, IoVec(cluster.data(), n));
    if (!s) co_return fail(s.error());
    co_return parse_header(cluster.data(), std::min<uint64_t>(n, len), snapshots);
  }
  co_return parse_header(first.data(), std::min<uint64_t>(512, len), snapshots);
}

Task<Result<NodePtr>> open_backing(OpenContext& ctx, std::string backing_file,
                                   std::string backing_format, std::string image) {
  std::string path = backing_file;
  if (!path.empty() && path[0] != '/' && path.find(':') == std::string::npos) {
    const std::size_t slash = image.rfind('/');
    if (slash != std::string::npos) path = image.substr(0, slash + 1) + path;
  }
  std::string format = backing_format;
  OpenFlags flags = ctx.flags;
  flags.read_only = true;
  if (format.empty()) {
    // Probe: qcow2 or raw.
    Options probe_opts = Options::object();
    probe_opts["driver"] = "file";
    probe_opts["filename"] = path;
    OpenFlags probe_flags;
    probe_flags.read_only = true;
    probe_flags.force_share = true;
    Result<NodePtr> probe = co_await open_node(ctx.loop, std::move(probe_opts), probe_flags, "");
    if (!probe) co_return fail(probe.error());
    AlignedBuffer buf(512, 4096);
    buf.fill(0);
    Status s = ok();
    if ((*probe)->length() >= 512) s = co_await (*probe)->read(0, IoVec(buf.data(), 512));
    (void)co_await (*probe)->close();
    if (!s) co_return fail(s.error());
    format = probe_qcow2(buf.data(), 512) ? "qcow2" : "raw";
  }
  Options opts = Options::object();
  opts["driver"] = format;
  opts["file"] = Options::object();
  opts["file"]["driver"] = "file";
  opts["file"]["filename"] = path;
  Result<NodePtr> node = co_await open_node(ctx.loop, std::move(opts), flags, "");
  if (!node) {
    co_return fail(Error::with_message(node.error().errnum(),
                                       "Could not open backing file: " + node.error().message()));
  }
  co_return node;
}

// True if `path` lives on a rotating disk (/sys/dev/block/MAJ:MIN/queue/rotational of its
// device, or of the whole disk for a partition). Unknown counts as not rotational.
bool on_rotational_storage(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return false;
  const dev_t dev = S_ISBLK(st.st_mode) ? st.st_rdev : st.st_dev;
  const std::string base = fmt::format("/sys/dev/block/{}:{}", major(dev), minor(dev));
  for (const char* rel : {"/queue/rotational", "/../queue/rotational"}) {
    std::ifstream in(base + rel);
    int rotational = 0;
    if (in >> rotational) return rotational == 1;
  }
  return false;
}

bool is_regular_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

Task<Result<CheckResult>> check_qcow2_node(BlockNode& node, unsigned fix) {
  auto* qcow2 = dynamic_cast<Qcow2Node*>(&node);
  if (!qcow2 || !node.open_flags().check) co_return fail(Error::unsupported());
  Task<Result<CheckResult>> run = check_image(qcow2->check_target(), fix);
  co_return co_await std::move(run);
}

int probe_qcow2(const uint8_t* header, std::size_t len) {
  if (len < 8 || load_be32(header) != kMagic) return 0;
  const uint32_t version = load_be32(header + 4);
  return version >= 2 ? 100 : 0;
}

Task<Result<NodePtr>> open_qcow2_node(OpenContext& ctx, Options& options) {
  // Runtime options (qemu-compat.md §5.4). The cache sizes depend on the header: read below.
  Result<CacheOptions> cache_options = take_cache_options(options);
  if (!cache_options) co_return fail(cache_options.error());
  for (const char* key : {"lazy-refcounts", "pass-discard-snapshot"}) {
    auto v = take_bool(options, key);
    if (!v) co_return fail(v.error());
  }
  // Whether freed clusters are discarded in the file: for guest requests as the node's
  // discard mode says, for the rest (COW) never, unless these say otherwise.
  Result<std::optional<bool>> pass_discard_request = take_bool(options, "pass-discard-request");
  if (!pass_discard_request) co_return fail(pass_discard_request.error());
  Result<std::optional<bool>> pass_discard_other = take_bool(options, "pass-discard-other");
  if (!pass_discard_other) co_return fail(pass_discard_other.error());
  // qblock's own options (block-semantics.md §5.2, §7): zero-cow=on|off|auto and
  // prealloc=on|off (a preallocate filter above the file of a writable image).
  Result<std::optional<std::string>> zero_cow_opt = take_string(options, "zero-cow");
  if (!zero_cow_opt) co_return fail(zero_cow_opt.error());
  const std::string zero_cow = zero_cow_opt->value_or("auto");
  if (zero_cow != "on" && zero_cow != "off" && zero_cow != "auto") {
    co_return fail(
        Error::with_message(EINVAL, "Parameter 'zero-cow' expects 'on', 'off' or 'auto'"));
  }
  Result<std::optional<bool>> prealloc_opt = take_bool(options, "prealloc");
  if (!prealloc_opt) co_return fail(prealloc_opt.error());
  const bool prealloc = prealloc_opt->value_or(true);
  if (options.contains("overlap-check")) {
    Options& oc = options["overlap-check"];
    std::string value = oc.is_string() ? oc.get<std::string>()
                        : (oc.is_object() && oc.contains("template") && oc["template"].is_string())
                            ? oc["template"].get<std::string>()
                            : "cached";
    if (value != "none" && value != "constant" && value != "cached" && value != "all") {
      co_return fail(Error::with_message(
          EINVAL, "Unsupported value '" + value +
                      "' for qcow2 option 'overlap-check'. Allowed are any of the following: "
                      "none, constant, cached, all"));
    }
    options.erase("overlap-check");
  }
  std::optional<Options> backing_opts;
  bool backing_disabled = false;
  if (options.contains("backing")) {
    if (options["backing"].is_null()) {
      backing_disabled = true;
    } else {
      backing_opts = options["backing"];
    }
    options.erase("backing");
  }
  // A repair discards the clusters it frees (check_repair.cc), as QEMU's does: its protocol
  // child passes discards down unless told otherwise (file.discard=ignore).
  const DiscardMode discard = ctx.flags.discard;
  if (ctx.flags.check && !ctx.flags.read_only) ctx.flags.discard = DiscardMode::kUnmap;
  Result<NodePtr> file = co_await open_child(ctx, options, "file", "file");
  ctx.flags.discard = discard;
  if (!file) co_return fail(file.error());
  NodePtr file_node = std::move(*file);
  // qemu-img check opens what its open refuses of the snapshot table, to report or repair it.
  Result<Header> header =
      co_await read_header(*file_node, ctx.flags.check ? SnapshotTableLimits::kCheckedByCaller
                                                       : SnapshotTableLimits::kRefuse);
  if (!header) {
    (void)co_await file_node->close();
    co_return fail(header.error());
  }
  const uint64_t unsupported = header->incompatible_features & ~kSupportedIncompatible;
  std::optional<Error> refuse;
  if (unsupported) {
    refuse = Error::with_message(ENOTSUP, unsupported_features_message(*header, unsupported));
  } else if ((header->incompatible_features & kIncompatCorrupt) && !ctx.flags.read_only &&
             !ctx.flags.check) {
    refuse = Error::with_message(EACCES, "qcow2: Image is corrupt; cannot be opened read/write");
  }
  Result<CacheSettings> cache;
  SnapshotTable snapshot_table;
  if (!refuse) {
    cache = cache_settings(*cache_options, *header);
    if (!cache) refuse = cache.error();
  }
  if (!refuse) {
    // The snapshot table and the bitmap directory are validated as QEMU's open validates
    // them (a check reads the snapshot table itself, to report what is wrong with it).
    if (header->nb_snapshots && !ctx.flags.check) {
      Task<Result<SnapshotTable>> snapshots = read_snapshot_table(*file_node, *header);
      Result<SnapshotTable> table = co_await std::move(snapshots);
      if (table) {
        snapshot_table = std::move(*table);
      } else {
        refuse = table.error();
      }
    }
  }
  BitmapDirectory bitmap_directory;
  if (!refuse) {
    Task<Result<BitmapDirectory>> bitmaps = read_bitmap_directory(*file_node, *header);
    Result<BitmapDirectory> directory = co_await std::move(bitmaps);
    if (directory) {
      bitmap_directory = std::move(*directory);
    } else {
      refuse = directory.error();
    }
  }
  // §9: the key is checked at open (a wrong password fails here, not at the first read).
  Qcow2Crypt crypt;
  if (!refuse) {
    Task<Result<Qcow2Crypt>> opening = open_crypt(ctx, options, *file_node, *header);
    Result<Qcow2Crypt> c = co_await std::move(opening);
    if (c) {
      crypt = std::move(*c);
    } else {
      refuse = c.error();
    }
  }
  if (refuse) {
    (void)co_await file_node->close();
    co_return fail(*refuse);
  }
  if ((header->incompatible_features & kIncompatDirty) && !ctx.flags.read_only &&
      !ctx.flags.check) {
    // §11: refcounts of a dirty image are stale; rebuild them before anything allocates.
    bool reported = false;
    bool broken = false;
    Task<Result<CheckResult>> repair = check_image(
        CheckTarget{*file_node, *header, true, reported, broken}, kFixLeaks | kFixErrors);
    Result<CheckResult> repaired = co_await std::move(repair);
    if (!repaired || repaired->corruptions || repaired->check_errors) {
      (void)co_await file_node->close();
      const int e = repaired ? EIO : repaired.error().errnum();
      co_return fail(Error::with_message(
          e, "Could not repair dirty image: " + Error::from_errno(e).errno_text()));
    }
  }
  // §2.3: of the structures autoclear bits vouch for, qblock maintains the bitmaps
  // (bitmap_store.cc); a writer withdraws every other promise before it changes anything. A
  // bitmaps extension the header does not vouch for is dropped, as QEMU drops it.
  // §10: data_file_raw is a property of the image, kept as long as the data file is.
  const uint64_t autoclear_kept =
      (bitmap_directory.bitmaps.empty() ? 0 : (header->autoclear_features & kAutoclearBitmaps)) |
      ((header->incompatible_features & kIncompatDataFile)
           ? (header->autoclear_features & kAutoclearDataFileRaw)
           : 0);
  const bool drop_bitmaps_ext = header->bitmaps && (autoclear_kept & kAutoclearBitmaps) == 0;
  if ((header->autoclear_features != autoclear_kept || drop_bitmaps_ext) && !ctx.flags.read_only &&
      !ctx.flags.check) {
    header->autoclear_features = autoclear_kept;
    if (drop_bitmaps_ext) header->bitmaps.reset();
    Status cleared = ok();
    if (drop_bitmaps_ext) {
      Result<std::vector<uint8_t>> raw = serialize_header(*header);
      if (raw) {
        raw->resize((raw->size() + 511) / 512 * 512, 0);
        cleared = co_await file_node->write(0, IoVec(raw->data(), raw->size()));
      } else {
        cleared = fail(raw.error());
      }
    } else {
      uint8_t raw[8];
      store_be64(raw, autoclear_kept);
      cleared = co_await file_node->write(88, IoVec(raw, 8));
    }
    if (cleared) cleared = co_await file_node->flush();
    if (!cleared) {
      (void)co_await file_node->close();
      co_return fail(cleared.error());
    }
  }
  if (!ctx.flags.read_only && !ctx.flags.check) {
    // Structures that overlap each other cannot be updated without destroying one another.
    const Header& h = *header;
    const uint64_t cs = h.cluster_size();
    auto overlap = [](uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) {
      return alen && blen && a < b + blen && b < a + alen;
    };
    const uint64_t l1_len = uint64_t{h.l1_size} * 8;
    const uint64_t rt_len = uint64_t{h.refcount_table_clusters} * cs;
    std::string what;
    if (overlap(h.l1_table_offset, l1_len, 0, cs)) what = "Active L1 table overlaps the header";
    if (overlap(h.refcount_table_offset, rt_len, 0, cs)) {
      what = "Reference count table overlaps the header";
    }
    if (overlap(h.l1_table_offset, l1_len, h.refcount_table_offset, rt_len)) {
      what = "Active L1 table overlaps the reference count table";
    }
    if (!what.empty()) {
      (void)co_await file_node->close();
      co_return fail(Error::with_message(
          EUCLEAN, "qcow2: Image is corrupt: " + what + "; cannot be opened read/write"));
    }
  }
  // A file given by node name is shared with its other users: no implicit filter over it.
  const bool shared_file = referenced_node(*file_node) != nullptr;
  if (prealloc && !ctx.flags.read_only && !ctx.flags.check && !shared_file &&
      file_node->driver_name() == "file" && is_regular_file(file_node->filename())) {
    // block-semantics.md §7: allocate megabytes ahead of the end of the file, so allocating
    // writes land in allocated space instead of growing the file cluster by cluster.
    PreallocateFilter::Settings settings;
    settings.refill_ahead = true;
    file_node = std::make_unique<PreallocateFilter>(ctx.loop, std::move(file_node), settings);
  } else if (prealloc && !ctx.flags.read_only && !ctx.flags.check && !shared_file &&
             file_node->driver_name() == "rbd") {
    // On RBD every growth of the image is an rbd_resize (a metadata update on the cluster)
    // and writes past the end would pay it one cluster at a time: grow in steps of whole
    // RADOS objects instead, far ahead (growing is free: new space reads as zeros).
    PreallocateFilter::Settings settings;
    settings.refill_ahead = true;
    const uint64_t object = file_node->info().cluster_size;
    if (object >= 4096 && object % 512 == 0) {
      settings.prealloc_align = object;
      settings.prealloc_size = std::max<uint64_t>(settings.prealloc_size, 32 * object);
    }
    file_node = std::make_unique<PreallocateFilter>(ctx.loop, std::move(file_node), settings);
  }
  const std::string image_name = file_node->filename();
  // The backing chain must not come back to this image: it would be opened for ever. (Images
  // that are not files, e.g. on NBD, are not compared.)
  BackingChainLink self;
  struct stat st {};
  if (::stat(image_name.c_str(), &st) == 0) {
    self = {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
            ctx.flags.backing_chain};
    for (const BackingChainLink* l = self.above; l; l = l->above) {
      if (l->device == self.device && l->inode == self.inode) {
        (void)co_await file_node->close();
        co_return fail(Error::with_message(
            ELOOP, "Backing file '" + image_name + "' creates an infinite loop."));
      }
    }
    ctx.flags.backing_chain = &self;
  }
  NodePtr backing;
  // `backing.node-name=X` alone names the backing file the header gives (QEMU merges the
  // options into those of the image's backing file); the copy-on-read filter's `bottom`
  // finds it by that name.
  std::string backing_node_name;
  if (backing_opts && backing_opts->is_object() && backing_opts->size() == 1 &&
      backing_opts->contains("node-name") && (*backing_opts)["node-name"].is_string()) {
    backing_node_name = (*backing_opts)["node-name"].get<std::string>();
    backing_opts.reset();
  }
  if (backing_opts) {
    OpenFlags backing_flags = ctx.flags;
    backing_flags.read_only = true;
    Result<NodePtr> b = co_await open_node(ctx.loop, *backing_opts, backing_flags, "");
    if (!b) {
      (void)co_await file_node->close();
      co_return fail(b.error());
    }
    backing = std::move(*b);
  } else if (!backing_disabled && !header->backing_file.empty()) {
    Result<NodePtr> b =
        co_await open_backing(ctx, header->backing_file, header->backing_format, image_name);
    if (!b) {
      (void)co_await file_node->close();
      co_return fail(b.error());
    }
    backing = std::move(*b);
    if (!backing_node_name.empty()) backing->set_node_name(backing_node_name);
  }
  // §10: the data file, from the option or the header's name. qemu-img info (no I/O)
  // describes the image even when the data file cannot be opened.
  NodePtr data_file;
  {
    Task<Result<NodePtr>> opening = open_data_file(ctx, options, *header);
    Result<NodePtr> d = co_await std::move(opening);
    if (d) {
      data_file = std::move(*d);
    } else if (!ctx.flags.no_io) {
      if (backing) (void)co_await backing->close();
      (void)co_await file_node->close();
      co_return fail(d.error());
    }
  }
  const bool header_encrypted = header->crypt_method != 0;
  const bool data_file_raw = header->autoclear_features & kAutoclearDataFileRaw;
  auto node =
      std::make_unique<Qcow2Node>(ctx.loop, std::move(file_node), std::move(*header), *cache);
  // Two requests (zeroing, then data) cost more than one merged write on a rotating disk,
  // unless a preallocate filter sits below: it drops the zeroing of space it preallocated,
  // so only the data write remains. (Virtual disks often claim to rotate: virtio-blk does.)
  const bool preallocating = node->primary_child()->driver_name() == "preallocate";
  if (data_file) node->set_data_file(std::move(data_file), data_file_raw);
  node->set_snapshot_table(snapshot_table);
  node->set_crypt(std::move(crypt));
  node->set_discard_passthrough(
      pass_discard_request->value_or(node->open_flags().discard == DiscardMode::kUnmap),
      pass_discard_other->value_or(false));
  // §9.1: zeroed host clusters do not decrypt to zeros, so encrypted images never zero COW
  // regions with write-zeroes.
  node->set_zero_cow(
      header_encrypted
          ? false
          : zero_cow == "on" ||
                (zero_cow == "auto" && (preallocating || !on_rotational_storage(image_name))));
  // check_image() reads the tables itself, whatever state they are in.
  Status s = ok();
  if (!ctx.flags.check) s = co_await node->load_tables();
  if (s) s = co_await node->load_bitmaps(std::move(bitmap_directory));
  if (!s) {
    if (backing) (void)co_await backing->close();
    (void)co_await node->close();
    co_return fail(s.error());
  }
  node->set_backing(std::move(backing));
  co_return NodePtr(std::move(node));
}

}  // namespace qblock::qcow2
