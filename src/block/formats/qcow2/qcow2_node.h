// The qcow2 format node, private to the driver (the counterpart of QEMU's block/qcow2.h).
// One class, its methods implemented by concern:
//   qcow2_node.cc     construction, info, flush, close
//   metadata.cc       L1/L2 lookup and allocation through the L2 cache, write-back in §17's
//                     order, deferred frees, the header
//   corruption.cc     overlap checks (§13) and corruption events (§12)
//   read_path.cc      mapping, reads, zero tests, block status
//   write_path.cc     the executor of write_plan.h's steps
//   compressed_write.cc, zero_discard.cc, resize.cc, open.cc
//   data_file.cc      images with an external data file (qcow2-format.md §10)
//   snapshot_refs.cc, snapshot_create.cc, snapshot_apply.cc, snapshot_delete.cc
//                     internal snapshots (qcow2-format.md §8)
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "block/driver.h"
#include "block/formats/qcow2/allocation_fence.h"
#include "block/formats/qcow2/bitmaps.h"
#include "block/formats/qcow2/check.h"
#include "block/formats/qcow2/crypt.h"
#include "block/formats/qcow2/header.h"
#include "block/formats/qcow2/l2_cache.h"
#include "block/formats/qcow2/l2_entry.h"
#include "block/formats/qcow2/refcount.h"
#include "block/formats/qcow2/snapshot.h"
#include "block/formats/qcow2/subcluster.h"
#include "block/formats/qcow2/write_plan.h"
#include "qblock/image.h"
#include "runtime/sync.h"

namespace qblock::qcow2 {

// Cache sizes as QEMU derives them from its options (qemu-compat.md §5.4).
struct CacheSettings {
  uint64_t l2_cache_bytes = 0;
  uint64_t l2_entry_bytes = 0;  // slice size
  uint64_t refcount_cache_bytes = 0;
  uint64_t clean_interval_seconds = 600;
};

// §10: the data-file child of an image with `header`: the `data-file` option (a node
// reference or a nested tree, removed from `options`) or else the name the header records;
// null when the image has no data file. Errors: EINVAL "'data-file' is required for this
// image" (bit 2 without a name), "'data-file' can only be set for images with an external
// data file"; the child's open errors.
Task<Result<NodePtr>> open_data_file(OpenContext& ctx, Options& options, const Header& header);

class Qcow2Node : public BlockNode {
 public:
  // REQUIRES: `header` parsed from `file`; `cache` validated (l2_entry_bytes a power of two
  // between 512 and the cluster size).
  Qcow2Node(EventLoop& loop, NodePtr file, Header header, const CacheSettings& cache);

  void set_backing(NodePtr backing);
  // The backing child was replaced (a live commit): reads go to the new one.
  void children_changed() override { backing_ = child(ChildRole::kBacking); }
  // block-semantics.md §5.2: zero the COW regions of a new allocation with one ALLOCATE
  // write-zeroes instead of writing zero buffers.
  void set_zero_cow(bool on) { zero_cow_ = on; }
  // QEMU's pass-discard-request (default: the node was opened with discard=unmap) and
  // pass-discard-other (default off): whether a cluster freed by a guest discard or
  // write-zeroes, or by anything else (a COW replacing it), is discarded in the file.
  void set_discard_passthrough(bool request, bool other) {
    pass_discard_request_ = request;
    pass_discard_other_ = other;
  }
  // An encrypted image's cipher (crypt.h), set at open before any I/O. Requests then come in
  // whole sectors (each sector is en/decrypted with its own IV).
  void set_crypt(Qcow2Crypt crypt);
  // §10: guest data goes to `data_file` (the child with role kDataFile) at host offset =
  // guest offset; metadata stays in the file child. `raw`: data_file_raw (autoclear bit 1),
  // write-zeroes and discard also zero the data file. REQUIRES: called once at open, before
  // any I/O, on an image with incompatible bit 2.
  void set_data_file(NodePtr data_file, bool raw);
  bool has_data_file() const { return data_ != file_; }
  // The snapshot table read at open: its place and the snapshots' L1 tables join the
  // structures the overlap checks protect.
  void set_snapshot_table(const SnapshotTable& table);
  // The image as check_image() works on it. REQUIRES: opened with OpenFlags::check.
  CheckTarget check_target() {
    return CheckTarget{*file_, header_, !read_only(), corruption_reported_, broken_};
  }
  // Reads the L1 table and the refcount table.
  Task<Status> load_tables();
  // qemu-img amend (amend.cc): see amend_image() in qblock/image.h. REQUIRES: writable.
  Task<Status> amend(Qcow2AmendOptions options, AmendProgress progress);

  // ---- backing_change.cc (qblock/jobs.h) ----
  // Records `backing_file` and `backing_format` (both empty: none) in the header, after
  // everything written so far is stable; one write of cluster 0 (qcow2-format.md §4.4), as
  // QEMU's change_backing_file. The backing node this node reads from is not replaced.
  // Errors: EPERM read-only; EINVAL a name over 1023 bytes, a format without a name, or a
  // header that no longer fits in cluster 0; write errors.
  Task<Status> change_backing_file(std::string backing_file, std::string backing_format);
  // Makes every cluster unallocated, so that the image reads from its backing file again
  // (qemu-img commit's emptying of the top image). As qemu-img 7.2: a v3 image without
  // snapshots, bitmaps, encryption or data file is rebuilt as a fresh one (rebuild_empty);
  // any other has every L2 entry cleared and the clusters freed (not flushed).
  // Errors: EPERM read-only; write errors.
  Task<Status> make_empty();

  // ---- internal snapshots (qcow2-format.md §8), snapshot_*.cc ----
  // Each operation takes the metadata lock, writes back the caches, works on the tables in
  // the file in §17's order (a power cut leaks clusters at worst) and ends with a flush.
  // `name` is matched as qemu-img 7.2 matches it: apply looks at the ids first, then the
  // names; delete at the names first, then the ids; the first entry in the table wins.
  // REQUIRES: no other request in flight on this node.
  //
  // The snapshot table as the file holds it. Errors: I/O, the table's open errors.
  Task<Result<std::vector<Snapshot>>> snapshots();
  // Takes snapshot `name` of the active tables: id = largest numeric id + 1, date = now,
  // no VM state, disk_size = the virtual size. Errors: EINVAL when a refcount would
  // overflow (1-bit refcounts and anything allocated), EROFS on a read-only node, I/O.
  Task<Status> create_snapshot(std::string name);
  // Makes snapshot `name`'s tables the active ones, and its disk_size the virtual size.
  // Errors: ENOENT "Failed to load snapshot: No such file or directory", EROFS, I/O.
  Task<Status> apply_snapshot(std::string name);
  // Removes snapshot `name` and releases what only it referenced.
  // Errors: ENOENT "snapshot not found", EROFS, I/O.
  Task<Status> delete_snapshot(std::string name);
  // snapshot_load_tmp.cc: reads go to the snapshot with id `id` and name `name` (each only
  // compared when given; the first entry in the table that matches) from now on, as QEMU's
  // temporary snapshot load. REQUIRES: at least one of them given. Errors: EPERM on a writable
  // node, ENOENT "Can't find snapshot", I/O.
  Task<Status> load_snapshot_tmp(std::optional<std::string> id, std::optional<std::string> name);

  // ---- bitmap_store.cc: dirty bitmaps (qcow2-format.md §14) ----
  // A dirty bitmap of the node: persistent ones live in the bitmap directory.
  struct NodeBitmap {
    std::string name;
    uint32_t granularity_bits = 16;
    bool persistent = true;
    bool enabled = true;  // records writes ("auto" on disk)
    // Null for an inconsistent bitmap (IN_USE when the image was opened: not closed cleanly),
    // which is kept on disk as it is and can only be removed.
    std::unique_ptr<DirtyBitmap> bits;
    // While a job uses the bitmap (it is "busy", QEMU's frozen bitmap): `bits` stay as they
    // were when the job began and the writes made meanwhile go here (freeze_dirty_bitmap()).
    std::unique_ptr<DirtyBitmap> successor;
    Bitmap on_disk;  // its directory entry when loaded (table_offset 0: not stored yet)
  };
  // Loads the bitmaps of `dir` (read at open). On a writable node (not a check) they are
  // marked IN_USE on disk at once, as QEMU does, and stored again by close(): an image that
  // is not closed cleanly shows them as inconsistent. With OpenFlags::check only the tables
  // are validated. Errors: read_bitmap()'s, I/O.
  Task<Status> load_bitmaps(BitmapDirectory dir);
  // Every write, write-zeroes and discard marks the granules it touches in each enabled
  // bitmap, or in its successor while it is busy (a truncate resizes them on the way).
  void mark_dirty(uint64_t offset, uint64_t bytes) {
    for (NodeBitmap& b : bitmaps_) {
      if (!b.bits || !b.enabled) continue;
      DirtyBitmap& target = b.successor ? *b.successor : *b.bits;
      if (target.length() != header_.size) target.resize(header_.size);
      target.set(offset, bytes);
    }
  }
  const std::vector<NodeBitmap>& bitmaps() const { return bitmaps_; }
  std::vector<NodeBitmap>& bitmaps() { return bitmaps_; }
  // The bitmap called `name`, or nullptr.
  NodeBitmap* find_bitmap(const std::string& name);
  // block-dirty-bitmap-add as QEMU 7.2 checks it (name, granularity, what qcow2 can store).
  // REQUIRES: granularity_bits in [9, 31]. Errors: EINVAL with QEMU's messages.
  Status add_bitmap(std::string name, uint32_t granularity_bits, bool persistent, bool enabled);
  // block-dirty-bitmap-remove: a persistent bitmap leaves the directory at once (a new
  // directory is written, the bitmap's clusters freed). Errors: ENOENT, I/O.
  Task<Status> remove_bitmap(std::string name);

  // Whole sectors only, as QEMU sees the disk: a header size that is not a multiple of 512
  // (only a damaged header has one) is rounded down.
  uint64_t length() const override { return header_.size / 512 * 512; }
  std::string filename() const override;
  Options options() const override;
  NodeInfo info() const override;

 protected:
  Task<Status> do_read(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) override;
  Task<Status> do_discard(uint64_t offset, uint64_t bytes) override;
  Task<Status> do_flush() override;
  Task<Status> do_truncate(uint64_t size, PreallocMode mode, Exact exact) override;
  Task<Result<BlockStatus>> do_block_status(uint64_t offset, uint64_t bytes,
                                            WantZero want_zero) override;
  Task<Status> do_close() override;

 private:
  enum class ForWrite : bool { kNo = false, kYes = true };
  // Why a cluster is freed, as QEMU's discard types: kRequest for a guest discard or
  // write-zeroes, kOther for a COW (or anything else) replacing it.
  enum class DiscardType : unsigned char { kRequest, kOther };
  struct PendingFree {
    uint64_t entry;
    DiscardType type;
  };
  // A run of clusters with the same treatment, from a requested offset.
  struct Mapping {
    ClusterType type;
    uint64_t entry;  // of the first cluster
    uint64_t bytes;  // guest bytes covered from the requested offset
  };
  // A piece of a write that went into another request's allocation; it counts once that
  // allocation is linked (see do_write).
  struct JoinedPiece {
    std::shared_ptr<AllocationFence> fence;
    uint64_t guest;  // where the piece starts
    uint64_t len;
  };
  // A piece joined into another request's allocation that goes out with the first write of
  // this request's own next allocation (Join::then_allocate).
  struct JoinedPrefix {
    uint64_t host;
    uint64_t guest;
    IoVec data;
    WriterToken token;  // released once the prefix is written or given up
  };

  uint64_t l1_index(uint64_t guest) const { return guest / cs_ / l2_entries_; }
  uint64_t l2_index(uint64_t guest) const { return guest / cs_ % l2_entries_; }
  uint64_t slice_span() const { return cs_ * l2_cache_.slice_entries(); }
  uint64_t slice_index_in_table(uint64_t guest) const {
    return l2_index(guest) / l2_cache_.slice_entries();
  }
  // The index of `guest`'s cluster in its slice.
  uint64_t index_in_slice(uint64_t guest) const { return guest / cs_ % l2_cache_.slice_entries(); }
  SliceView view(const L2Slice& slice, uint64_t guest) const {
    return SliceView{slice.entries, guest - guest % slice_span(), cs_};
  }

  // ---- metadata.cc (all REQUIRE lock_ held) ----
  // The L2 slice covering `guest`, or nullptr if its table is unallocated. ForWrite::kYes
  // makes the table a private one first (allocated if absent, copied if shared: §3.6) and
  // refuses a table that overlaps other metadata.
  Task<Result<L2SliceRef>> get_l2_slice(uint64_t guest, ForWrite for_write);
  // Allocates a private copy (or a zeroed table) for L1 index `l1i` (§17 R1, R2).
  Task<Status> allocate_l2_table(uint64_t l1i);
  Task<Status> write_l1_entry(uint64_t l1i);
  // Records changed entries [first, first + count) of `slice` (slice indexes); they reach the
  // disk through the cache's write-back. Refuses a slice that is not where its table is.
  Task<Status> update_l2_entries(L2Slice& slice, uint64_t first, uint64_t count);
  // Writes back the metadata caches in §17's order: refcount increments and guest data
  // stable, then L2 slices, stable, then the deferred frees (R5), then their refcounts.
  Task<Status> flush_metadata();
  // Drops the reference `entry` held; applied after the L2 change is stable (§17 R5).
  void queue_free(uint64_t entry, DiscardType type) { pending_frees_.push_back({entry, type}); }
  // queue_free() for the data cluster (or compressed span) an L2 entry gave up, unless it
  // overlaps metadata or the clusters [keep, keep + keep_bytes) just linked in its place, or
  // its refcount is already 0: a damaged entry's cluster stays allocated (leaked) rather than
  // freed under a live structure, and a cluster the refcounts never counted for the entry
  // (so that it may be handed out again before the free is applied) is left alone.
  Task<Status> queue_data_free(uint64_t entry, DiscardType type, uint64_t keep = 0,
                               uint64_t keep_bytes = 0);
  // Applies a queued free (with a data file at once, from queue_data_free: §10, nothing is
  // refcounted, the data file's cluster is only discarded). A reference whose cluster's
  // refcount is already 0 (a damaged entry) releases nothing. The freed cluster is discarded in the
  // file only as QEMU's pass-discard-* options say for `type`.
  Task<Status> release_entry(uint64_t entry, DiscardType type);
  Task<Status> write_header();
  // Host clusters of `entry` (data cluster or compressed span) appended to `out`.
  void host_clusters(uint64_t entry, std::vector<uint64_t>& out) const;
  // cache-clean-interval: drops cached metadata unused for an interval (checked on access).
  void clean_idle_caches();
  // A fresh Refcounts over the header's refcount table, sized and wired to the L2 cache.
  void replace_refcounts();

  // ---- snapshot_refs.cc (all REQUIRE lock_ held) ----
  // Writes back every cached change and empties the L2 cache, so that the tables in the
  // file are the whole truth while a snapshot operation rewrites them.
  Task<Status> begin_snapshot_op();
  // Refreshes what the node derives from the tables (L2 offsets, compressed packing, the
  // snapshot table's place) after a snapshot operation, and flushes.
  Task<Status> end_snapshot_op(const SnapshotTable& table);
  // Reads the `entries` L1 entries at `offset`.
  Task<Result<std::vector<uint64_t>>> read_l1(uint64_t offset, uint64_t entries);
  // Reads the whole L2 table at `offset` (a corruption event if it is unaligned).
  Task<Result<std::vector<uint64_t>>> read_l2(uint64_t offset);
  // Adds `delta` to the refcount of every L2 table `l1` references and of every cluster
  // those tables reference (each host cluster of a compressed span), in memory. Costs one
  // read per allocated L2 table, whatever the virtual size.
  Task<Status> update_tree_refcounts(const std::vector<uint64_t>& l1, int64_t delta);
  // §3.6: sets COPIED in the active L1 and L2 entries whose cluster's refcount is 1 and
  // clears it elsewhere, writing the changed tables. REQUIRES: the refcounts are on disk.
  Task<Status> recompute_copied();
  // Writes `snapshots` as the new snapshot table into new clusters, switches the header to
  // it in one write, then frees the old table (§17 R1, R7, R5). Returns the table written.
  Task<Result<SnapshotTable>> write_snapshot_table(std::vector<Snapshot> snapshots);
  // The index of the snapshot `name` names, or -1: the first entry whose id (kIdFirst) or
  // name (kNameFirst) is `name`, else the first whose name (or id) is.
  enum class Match : bool { kIdFirst, kNameFirst };
  static int64_t find_snapshot(const std::vector<Snapshot>& snapshots, const std::string& name,
                               Match match);

  // ---- bitmap_store.cc (all REQUIRE lock_ held) ----
  // Writes every consistent persistent bitmap into new clusters (data, then its table), then
  // a new directory, then frees the old tables and directory, as QEMU's close does.
  Task<Status> store_bitmaps();
  // Writes `entries` as the new bitmap directory (new clusters, the header switched to it,
  // the old directory freed); none: the extension and autoclear bit 0 go.
  Task<Status> write_bitmap_directory(const std::vector<Bitmap>& entries);
  // Frees bitmap `b`'s table and the data clusters it points at.
  Task<Status> free_bitmap_clusters(const Bitmap& b);
  // The directory entries for the current persistent bitmaps (consistent ones with `flags`
  // added, inconsistent ones as they are).
  std::vector<Bitmap> bitmap_entries(uint32_t flags) const;

  // ---- corruption.cc ----
  // qcow2-format.md §13: the metadata structure [offset, offset + bytes) would overwrite,
  // or nullptr. `self` is excluded (an L2 table rewriting itself); `ignore` names a
  // structure that may be written (the L1 table updating an entry).
  const char* overlapping_metadata(uint64_t offset, uint64_t bytes, uint64_t self = 0,
                                   const char* ignore = nullptr) const;
  // Refuses, as a fatal corruption event, a write of [offset, offset + bytes) that overlaps
  // metadata ("Preventing invalid write on metadata"); `self`/`ignore` as above.
  Task<Status> refuse_metadata_overlap(uint64_t offset, uint64_t bytes, uint64_t self = 0,
                                       const char* ignore = nullptr);
  // Refuses (as a fatal corruption event) a write of existing metadata or data at `offset`
  // that overlaps other metadata or lies past the end of the file (a damaged pointer), unless,
  // with PastEof::kIfAllocated, the clusters past the end all have a refcount (a truncated file).
  enum class PastEof : bool { kRefuse, kIfAllocated };
  Task<Status> guard_existing(uint64_t offset, uint64_t bytes, uint64_t self, const char* ignore,
                              PastEof past_eof = PastEof::kRefuse);
  // §12: reports a corruption event. On a writable image a fatal one sets the corrupt bit
  // and makes the node refuse further I/O. Returns the EIO the request fails with.
  Task<Error> corruption(std::string reason, bool fatal = true);
  Status check_usable() const {
    if (broken_) return fail(Error::from_errno(ENOMEDIUM));
    return ok();
  }

  // ---- read_path.cc ----
  // How the cluster at `guest` is mapped and how many following bytes (at most `bytes`)
  // share that treatment (RunRule::kSameMapping). REQUIRES: lock_ held.
  // With extended L2 entries (§7) the run is one of subclusters of the same type, and a
  // subcluster that is not allocated in an allocated cluster maps as kUnallocated with the
  // entry's host offset (QEMU's UNALLOCATED_ALLOC).
  Task<Result<Mapping>> map(uint64_t guest, uint64_t bytes);
  // map() for images with extended L2 entries, from the loaded `slice`.
  Task<Result<Mapping>> map_subclusters(const L2Slice& slice, uint64_t guest, uint64_t bytes);
  uint64_t subcluster_size() const { return cs_ / kSubclusters; }
  Task<Status> read_mapping(uint64_t guest, IoVec qiov, const Mapping& m);
  // One compressed cluster (or part of one) of a request: where it goes and its L2 entry.
  struct CompressedPiece {
    uint64_t guest;
    IoVec qiov;
    uint64_t entry;
  };
  // Reads the compressed clusters of one request at once, then inflates them in a few jobs on
  // the worker threads (one job per cluster would cost a thread wake-up per cluster).
  Task<Status> read_compressed(std::vector<CompressedPiece> pieces);
  Task<Status> read_backing(uint64_t guest, IoVec qiov);
  // True if the cluster at guest offset `guest_cluster` with L2 entry `entry` reads as zeros
  // (asking the backing chain for metadata only).
  Task<Result<bool>> reads_as_zero(uint64_t entry, uint64_t guest_cluster);

  // ---- data_file.cc: images with an external data file (§10) ----
  // The cluster type of `entry`: as cluster_type(), except that with a data file offset 0
  // with COPIED is a data cluster (guest cluster 0 at data-file offset 0).
  ClusterType entry_type(uint64_t entry) const {
    if (has_data_file() && entry == kCopied) return ClusterType::kNormal;
    return cluster_type(entry);
  }
  // True if `entry` references a data cluster (in the file or in the data file).
  bool references_data(uint64_t entry) const {
    return entry_references_host(entry) || (has_data_file() && (entry & kCopied));
  }
  // do_write() on an image with a data file: in place where the cluster is allocated,
  // otherwise the whole clusters written at their guest offset (the rest of each cluster as
  // it read before) and flushed before their L2 entries (offset | COPIED) are recorded. No
  // refcounts change. Requests are serialized. REQUIRES: has_data_file().
  Task<Status> write_data_file(uint64_t offset, IoVec qiov);
  // write_data_file() with extended L2 entries (§7): cluster by cluster, the subclusters the
  // request touches written whole at their guest offset (the rest of each as it read before),
  // flushed, then marked allocated in the bitmap. REQUIRES: lock_ held, extended L2.
  Task<Status> write_data_file_subclusters(uint64_t offset, IoVec qiov);
  // grow() of an image with a data file: the data file grows to `size` (`mode` passed on,
  // metadata as none); with data_file_raw or a preallocation the new clusters past the old
  // last one are mapped 1:1 (offset = guest offset | COPIED), stable before the caller
  // writes the new size. REQUIRES: lock_ held, the L1 table grown to cover `size`.
  Task<Status> grow_data_file(uint64_t old_size, uint64_t size, PreallocMode mode);
  // Reads guest [guest, guest + qiov.size()) as the image shows it now. REQUIRES: lock_ held.
  Task<Status> read_locked(uint64_t guest, IoVec qiov);

  // ---- crypt_io.cc: data clusters of encrypted images (§9) ----
  bool encrypted() const { return crypt_.method != kCryptNone; }
  // Reads host [host, host + qiov.size()) that holds guest [guest, ...) and decrypts it into
  // qiov (through a bounce buffer, on the loop's worker threads). REQUIRES: encrypted(),
  // guest and host sector-aligned, qiov.size() a multiple of 512.
  Task<Status> read_decrypted(uint64_t guest, uint64_t host, IoVec qiov);
  // Encrypts a copy of `data` (guest [guest, ...)) for host offset `host` and writes it
  // there. REQUIRES: as read_decrypted.
  Task<Status> write_encrypted(uint64_t guest, uint64_t host, IoVec data);
  // Writes guest data [guest, guest + data.size()) at host offset `host` of the file:
  // through write_encrypted() on an encrypted image, as it is otherwise.
  Task<Status> write_payload(uint64_t guest, uint64_t host, IoVec data);
  // amend's encrypt.* options on a LUKS image (qemu-compat.md, QEMU 7.2's messages): with
  // encrypt.state=active, a new slot (encrypt.keyslot or the first free one) for
  // encrypt.new-secret holding the master key the image was opened with; with
  // encrypt.state=inactive, slot encrypt.keyslot or every slot encrypt.old-secret opens is
  // erased, unless that leaves none active (then only with `force`). Key material before
  // header, each flushed. REQUIRES: lock_ held, a LUKS image opened with its key.
  Task<Status> amend_luks_slots(const Qcow2AmendOptions& o);
  // Writes into `out` (data.size() bytes) `data` encrypted as it is stored at `host`.
  // REQUIRES: as read_decrypted.
  Task<Status> encrypt_copy(uint64_t guest, uint64_t host, IoVec data, uint8_t* out);

  // ---- write_path.cc ----
  // Writes a prefix of [offset, offset + qiov.size()) as planned by plan_write_step();
  // returns the bytes written (0 after a wait). Joined pieces are appended to `joined`.
  // REQUIRES: lock_ held through `guard`; returns with it released.
  Task<Result<uint64_t>> write_step(uint64_t offset, IoVec qiov, AsyncMutex::Guard guard,
                                    std::vector<JoinedPiece>& joined);
  Task<Result<uint64_t>> write_in_place(uint64_t guest, IoVec qiov, WriteInPlace step,
                                        AsyncMutex::Guard guard);
  // Carries out an Allocate step: allocates, fences, fills the clusters (COW method chosen
  // by choose_cow) and links them. With `prefix`, that joined piece goes out with the first
  // write. Returns the data bytes written. REQUIRES: lock_ held through `guard`.
  Task<Result<uint64_t>> allocate_and_write(Allocate step, IoVec data, AsyncMutex::Guard guard,
                                            JoinedPrefix* prefix);
  // Fills newly allocated clusters at `host` with their COW contents and the data.
  Task<Status> fill_new_clusters(const Allocate& step, const AllocationLayout& layout,
                                 uint64_t host, uint64_t head_entry, uint64_t tail_entry,
                                 IoVec data, AllocationFence& fence, JoinedPrefix* prefix);
  // fill_new_clusters() for encrypted images: the joined `prefix` (if it goes out with this
  // write), the COW head, the data and the COW tail encrypted into one buffer, one write.
  Task<Status> write_new_encrypted(const Allocate& step, const AllocationLayout& layout,
                                   uint64_t host, uint64_t head_entry, uint64_t tail_entry,
                                   IoVec payload, JoinedPrefix* prefix);
  // Links the allocation: new L2 entries for `granted` clusters at `host`, old ones freed.
  Task<Status> link_allocation(const Allocate& step, uint64_t granted, uint64_t host,
                               AllocationFence& fence);
  // ---- subcluster_write.cc ----
  // write_step() for images with extended L2 entries (§7): writes a prefix of the request
  // inside one cluster (or over following clusters that already hold data there) and returns
  // the bytes written (0 after a wait). A write into a cluster another request is linking
  // goes straight into its host cluster when its partly written subclusters are final
  // there; the piece is appended to `joined`. REQUIRES: lock_ held through `guard`; returns
  // with it released.
  Task<Result<uint64_t>> write_subclusters(uint64_t guest, IoVec data, AsyncMutex::Guard guard,
                                           std::vector<JoinedPiece>& joined);

  // ---- subcluster_zero.cc (extended L2 entries, §7) ----
  // do_write_zeroes(): a request that does not cover whole subclusters zeroes the subcluster
  // if the rest of it reads as zeros already (ENOTSUP otherwise: the caller writes zeros).
  Task<Status> write_zeroes_subclusters(uint64_t offset, uint64_t bytes, RequestFlags flags);
  // Makes [start, end) read as zeros through the bitmaps: zero bits for subclusters of
  // partly covered clusters, whole clusters as zero_clusters() does. REQUIRES: lock_ held,
  // start subcluster-aligned, end subcluster-aligned or the image's end. ENOTSUP for part of
  // a compressed cluster.
  Task<Status> zeroize_subclusters(uint64_t start, uint64_t end, RequestFlags flags);
  // True if [guest, guest + bytes) reads as zeros, asking the backing chain for metadata only
  // (QEMU's is_zero). REQUIRES: lock_ held.
  Task<Result<bool>> range_reads_zero(uint64_t guest, uint64_t bytes);

  // Waits (releasing and retaking `guard`) until no allocation overlaps [start, end).
  Task<void> wait_inflight(uint64_t start, uint64_t end, AsyncMutex::Guard& guard);

  // ---- zero_discard.cc ----
  // Makes the clusters of [start, end) zero clusters: ZERO_ALLOC where a COPIED allocation
  // is kept (without kMayUnmap), ZERO_PLAIN otherwise, freeing what is released.
  // REQUIRES: lock_ held, v3, start cluster-aligned, end cluster-aligned or the image's end,
  // no allocation in flight over the range.
  Task<Status> zero_clusters(uint64_t start, uint64_t end, RequestFlags flags);

  // ---- compressed_write.cc ----
  // §6: whole clusters (or the image's last, partial one) compressed into unallocated
  // clusters; a cluster that does not shrink is written normally. The clusters of one request
  // are compressed at once on the loop's worker threads; the allocation, the writes (host
  // ranges that follow each other in one write) and the L2 links stay on the loop, in guest
  // order. Requests compress concurrently but allocate one after another in the order they
  // entered, so a caller that issues them in guest order (convert -c without -W) gets the
  // layout of one-at-a-time writes whatever the workers' timing.
  Task<Status> write_compressed(uint64_t offset, IoVec qiov);
  // The compressed part of write_compressed: clusters [first, last) of the request starting
  // at guest offset `base`, each with its compressed stream in packed[i] (none empty).
  Task<Status> write_compressed_run(uint64_t base, const std::vector<std::vector<uint8_t>>& packed,
                                    std::size_t first, std::size_t last);
  // Byte allocation for compressed data (§5.4: several compressed clusters may share a host
  // cluster; each user holds one reference). REQUIRES: lock_ held.
  Task<Result<uint64_t>> allocate_compressed(uint64_t bytes);

  // ---- backing_change.cc ----
  // make_empty's fresh layout: header, refcount table, one refcount block, the zeroed L1
  // table (`l1_clusters` clusters), the file cut after it. REQUIRES: lock_ held, v3.
  Task<Status> rebuild_empty(uint64_t l1_clusters);

  // ---- resize.cc ----
  // do_truncate's shrinking half. REQUIRES: lock_ held, size < header_.size.
  Task<Status> shrink(uint64_t size);
  // Part of shrink: drops refcount blocks that count nothing but themselves; returns the
  // host cluster indexes of the dropped blocks.
  Task<Result<std::vector<uint64_t>>> drop_unused_refblocks();
  // do_truncate's growing half, the new area preallocated as `mode` says. REQUIRES: `guard`
  // holds lock_, size > header_.size.
  Task<Status> grow(uint64_t size, PreallocMode mode, AsyncMutex::Guard guard);
  // Grows the L1 table to `needed` entries; the virtual size stays. REQUIRES: lock_ held.
  Task<Status> grow_l1_table(uint64_t needed);

  // ---- amend.cc, zero_expand.cc, refcount_rewrite.cc (all REQUIRE lock_ held) ----
  // compat=1.1: version 3 with QEMU's feature name table; reports 0%, 50% and 100%.
  Task<Status> upgrade_to_v3(const AmendProgress& progress);
  // compat=0.10 after QEMU's refusals: zero clusters expanded, then the 72-byte header.
  Task<Status> downgrade_to_v2(const AmendProgress& progress);
  // Turns every zero cluster of the active and the snapshots' L2 tables into a data cluster
  // that reads as zeros (a preallocated one loses its flag; a plain one gets a new, zeroed
  // cluster, or becomes unallocated when there is no backing file). Per table: clusters
  // allocated and zeroed and stable before the table is rewritten.
  Task<Status> expand_zero_clusters();
  // The refcount table and blocks rebuilt at 2^order bits: the new structures are written
  // past every allocated cluster and flushed, the header switches to them, then the old ones
  // are freed. A cut before the switch leaves the old image; after it, at most leaks.
  Task<Status> change_refcount_order(uint32_t order);

  // ---- resize_prealloc.cc (all REQUIRE lock_ held, the L1 table grown to cover `end`) ----
  // The private L2 slice `guest` (cluster-aligned) lies in, allocated if absent, from the
  // index of `guest`'s cluster, and how many clusters of [guest, end) it covers.
  struct SliceRun {
    L2SliceRef slice;
    uint64_t first = 0;
    uint64_t count = 0;
  };
  Task<Result<SliceRun>> private_slice_run(uint64_t guest, uint64_t end);
  // resize --preallocation=metadata: host clusters for [start, end) from the first-fit
  // allocator, sparse in the file.
  Task<Status> preallocate_metadata(uint64_t start, uint64_t end);
  // resize --preallocation=falloc|full: refcount structures moved past the used area, then one
  // data area for [start, end) allocated in the file by `mode`.
  Task<Status> preallocate_data(uint64_t start, uint64_t end, PreallocMode mode);
  // Points `count` entries of `slice` from index `first` at the clusters from `host` (the
  // first one's head before `start` copied over where it holds data) and frees what they
  // pointed at. With WriteZeros::kYes a head that reads as zeros is written too.
  enum class WriteZeros : bool { kNo = false, kYes = true };
  Task<Status> link_preallocated(L2Slice& slice, uint64_t first, uint64_t count, uint64_t host,
                                 uint64_t start, WriteZeros zeros);
  // Copies the first `bytes` of the guest cluster at `guest_cluster` (L2 entry `old_entry`)
  // to `host`; with WriteZeros::kNo not if they read as zeros.
  Task<Status> copy_cluster_head(uint64_t guest_cluster, uint64_t old_entry, uint64_t bytes,
                                 uint64_t host, WriteZeros zeros);

  AsyncMutex lock_;  // guards every metadata structure below
  // Compressed writes allocate in the order they arrived (compressed_write.cc): each takes
  // ticket compressed_tickets_ on entry, compresses, and waits until compressed_turn_ reaches
  // its ticket. Invariant: compressed_turn_ <= compressed_tickets_.
  WaitQueue compressed_turns_;
  uint64_t compressed_tickets_ = 0;
  uint64_t compressed_turn_ = 0;
  Header header_;
  const uint64_t cs_;
  const uint64_t l2_entries_;
  BlockNode* file_ = nullptr;
  BlockNode* backing_ = nullptr;
  BlockNode* data_ = nullptr;   // where guest data lives: the data-file child, or file_
  bool data_file_raw_ = false;  // §10: autoclear bit 1, the data file is a raw image
  std::unique_ptr<Refcounts> refcounts_;
  std::size_t refcount_cache_blocks_;
  std::vector<uint64_t> l1_;
  L2Cache l2_cache_;
  std::vector<PendingFree> pending_frees_;  // L2 entries whose clusters are released at flush
  std::vector<FenceRange*> inflight_;       // allocations between allocation and L2 link
  std::set<uint64_t> l2_offsets_;           // host offsets of the active L2 tables (overlap checks)
  uint64_t snapshot_table_bytes_ = 0;       // the snapshot table at header_.snapshots_offset
  std::vector<std::pair<uint64_t, uint64_t>> inactive_l1_;  // snapshots' L1 tables: offset, bytes
  bool zero_cow_ = true;
  Qcow2Crypt crypt_;  // method kCryptNone: a plaintext image
  std::vector<NodeBitmap> bitmaps_;
  uint64_t bitmap_dir_offset_ = 0;  // the directory in the file (0: none)
  uint64_t bitmap_dir_bytes_ = 0;
  bool bitmaps_in_use_ = false;  // IN_USE set on disk: close() must store them
  bool pass_discard_request_ = false;
  bool pass_discard_other_ = false;
  uint64_t compressed_end_ = 0;  // where the next compressed data may go (0: a fresh cluster)
  bool broken_ = false;          // a fatal corruption event happened: refuse all I/O
  bool corruption_reported_ = false;
  // cache-clean-interval (0: never); next_clean_ is when idle entries are dropped next.
  std::chrono::steady_clock::duration clean_interval_{};
  std::chrono::steady_clock::time_point next_clean_{};
};

}  // namespace qblock::qcow2
