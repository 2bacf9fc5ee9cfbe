// The file protocol driver (see file.h).
#include "block/protocols/file.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/check.h"
#include "block/protocols/write_coalescer.h"
#include "qblock/driver/uring.h"

namespace qblock {

namespace {

// QEMU's permission bits and the byte offsets of their OFD locks, so qblock and QEMU see
// each other's locks (two writers can never open one image).
constexpr int kPermBits = 4;
constexpr const char* kPermNames[kPermBits] = {"consistent read", "write", "write unchanged",
                                               "resize"};
constexpr unsigned kPermConsistentRead = 1, kPermWrite = 2, kPermResize = 8;
constexpr off_t kLockPermBase = 100, kLockSharedBase = 200;

bool ofd_lock(int fd, off_t byte, short type) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  return fcntl(fd, F_OFD_SETLK, &fl) == 0;
}

// True if someone else holds a lock on `byte` (a write lock could not be taken).
bool ofd_locked_by_other(int fd, off_t byte) {
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  if (fcntl(fd, F_OFD_GETLK, &fl) != 0) return false;
  return fl.l_type != F_UNLCK;
}

class FileNode : public BlockNode, private WriteSink {
 public:
  // `fs_block` is the file system's block size (0 for a block device).
  FileNode(EventLoop& loop, int fd, std::string filename, bool block_device, uint64_t size,
           uint64_t fs_block, OpenFlags flags)
      : BlockNode(loop, "file", NodeKind::kProtocol),
        fd_(fd),
        filename_(std::move(filename)),
        block_device_(block_device),
        size_(size),
        fs_block_(fs_block),
        coalescer_(loop, *this) {
    flags_ = flags;
    // REQ-FILE-5: every zeroing path below is efficient.
    supported_zero_flags_ = RequestFlag::kMayUnmap | RequestFlag::kNoFallback;
  }
  ~FileNode() override {
    if (fd_ >= 0) ::close(fd_);
  }

  uint64_t length() const override { return size_; }
  std::string filename() const override { return filename_; }
  Options options() const override {
    Options o;
    o["driver"] = "file";
    o["filename"] = filename_;
    return o;
  }
  NodeInfo info() const override {
    NodeInfo i;
    i.format_name = "file";
    return i;
  }

  Status probe_alignment();
  Status lock(unsigned perm, unsigned shared);

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
  bool zeroes_serialise_to_end(uint64_t offset, uint64_t bytes) const override {
    return offset + bytes > size_;  // REQ-EOF-1, decided from the tracked EOF (REQ-EOF-2)
  }

 private:
  // One readv/writev, retried until complete. Returns bytes done or -errno.
  Task<int64_t> transfer(bool write, uint64_t offset, IoVec qiov);
  // WriteSink: the coalescer's writes.
  Task<int64_t> write_out(uint64_t offset, IoVec qiov) override;
  // True for a direct write that the file system may run exclusively, draining all other
  // direct I/O (see WriteCoalescer): one on a regular file not aligned to its block.
  bool serialised_by_file_system(uint64_t offset, uint64_t bytes) const {
    return flags_.direct && !block_device_ && fs_block_ > 1 && ((offset | bytes) % fs_block_) != 0;
  }
  Task<int> fallocate(int mode, uint64_t offset, uint64_t bytes);
  void grow_to(uint64_t end) { size_ = std::max(size_, end); }

  int fd_;
  std::string filename_;
  bool block_device_;
  uint64_t size_;  // the file's size including completed extensions
  uint64_t fs_block_;
  WriteCoalescer coalescer_;
  // REQ-FILE-4: modes the file system refused once are not tried again.
  bool zero_range_unsupported_ = false;
  bool punch_hole_unsupported_ = false;
  // Requests that may have changed the file (writes, zeroes, discards, resizes), counted as
  // they finish; and the count at the start of the last successful flush. Equal: a flush has
  // nothing to make stable (as QEMU's write generation).
  uint64_t changes_ = 0;
  uint64_t flushed_changes_ = 0;
};

// Counts a request that may change the file when it finishes, whatever its outcome.
class ChangeCount {
 public:
  explicit ChangeCount(uint64_t& changes) : changes_(changes) {}
  ChangeCount(const ChangeCount&) = delete;
  ChangeCount& operator=(const ChangeCount&) = delete;
  ~ChangeCount() { ++changes_; }

 private:
  uint64_t& changes_;
};

Status FileNode::probe_alignment() {
  if (!flags_.direct) {
    limits_.request_alignment = 1;
    limits_.memory_alignment = 1;
    return ok();
  }
  uint32_t align = 0;
  if (block_device_) {
    int sector = 0;
    if (ioctl(fd_, BLKSSZGET, &sector) == 0 && sector > 0) align = static_cast<uint32_t>(sector);
  }
  if (!align && size_ > 0) {
    // Try the smallest O_DIRECT read that works; the kernel answers EINVAL below the
    // device's logical block size.
    AlignedBuffer buf(4096, 4096);
    for (uint32_t a : {512u, 1024u, 2048u, 4096u}) {
      if (pread(fd_, buf.data(), a, 0) >= 0) {
        align = a;
        break;
      }
    }
  }
  // An empty file reads nothing at any alignment; 4096 is safe on every device.
  if (!align) align = 4096;
  limits_.request_alignment = align;
  limits_.memory_alignment = std::max<uint32_t>(align, 512);
  return ok();
}

Status FileNode::lock(unsigned perm, unsigned shared) {
  for (int i = 0; i < kPermBits; ++i) {
    if ((perm & (1u << i)) && ofd_locked_by_other(fd_, kLockSharedBase + i)) {
      return fail(Error::with_message(
          EAGAIN, std::string("Failed to get \"") + kPermNames[i] + "\" lock\n" +
                      "Is another process using the image [" + filename_ + "]?"));
    }
    if (!(shared & (1u << i)) && ofd_locked_by_other(fd_, kLockPermBase + i)) {
      return fail(Error::with_message(
          EAGAIN, std::string("Failed to get shared \"") + kPermNames[i] + "\" lock\n" +
                      "Is another process using the image [" + filename_ + "]?"));
    }
  }
  for (int i = 0; i < kPermBits; ++i) {
    if (perm & (1u << i)) ofd_lock(fd_, kLockPermBase + i, F_RDLCK);
    if (!(shared & (1u << i))) ofd_lock(fd_, kLockSharedBase + i, F_RDLCK);
  }
  return ok();
}

Task<int64_t> FileNode::transfer(bool write, uint64_t offset, IoVec qiov) {
  const uint64_t total = qiov.size();
  uint64_t done = 0;
  // O_DIRECT needs aligned memory: bounce through an aligned buffer when the caller's is not.
  AlignedBuffer bounce;
  if (flags_.direct && !qiov.is_aligned(limits_.memory_alignment)) {
    bounce = AlignedBuffer(total, std::max<uint32_t>(limits_.memory_alignment, 4096));
    if (write) qiov.copy_to(0, bounce.data(), total);
  }
  IoVec target = bounce.size() ? IoVec(bounce.data(), total) : qiov;
  while (done < total) {
    IoVec rest = target.slice(done, total - done);
    int r;
    if (flags_.aio == AioMode::kThreads) {
      int fd = fd_;
      const iovec* iov = rest.data();
      int cnt = static_cast<int>(rest.count());
      off_t off = static_cast<off_t>(offset + done);
      r = co_await uring::run_in_worker(loop(), [=] {
        ssize_t n = write ? pwritev(fd, iov, cnt, off) : preadv(fd, iov, cnt, off);
        return n < 0 ? -errno : static_cast<int>(n);
      });
    } else if (write) {
      // Never co_await inside ?: (architecture.md, Lessons).
      r = co_await uring::writev(loop(), fd_, rest.data(), rest.count(), offset + done);
    } else {
      r = co_await uring::readv(loop(), fd_, rest.data(), rest.count(), offset + done);
    }
    // Transient errors are retried, as the kernel may return them under memory pressure.
    if (r == -EAGAIN || r == -EINTR) continue;
    if (r < 0) co_return r;
    if (r == 0) {
      if (write) co_return -ENOSPC;  // a write that makes no progress: the disk is full
      // A read at EOF: the rest of the request reads as zeros.
      target.memset(done, 0, total - done);
      done = total;
      break;
    }
    // A short transfer is resubmitted for the remainder.
    done += static_cast<uint64_t>(r);
  }
  if (bounce.size() && !write) qiov.copy_from(0, bounce.data(), total);
  co_return static_cast<int64_t>(done);
}

Task<Status> FileNode::do_read(uint64_t offset, IoVec qiov, RequestFlags) {
  int64_t r = co_await transfer(false, offset, std::move(qiov));
  if (r < 0) co_return fail(Error::from_errno(static_cast<int>(-r), "read"));
  co_return ok();
}

Task<int64_t> FileNode::write_out(uint64_t offset, IoVec qiov) {
  return transfer(true, offset, std::move(qiov));
}

Task<Status> FileNode::do_write(uint64_t offset, IoVec qiov, RequestFlags) {
  const ChangeCount counted(changes_);
  const uint64_t end = offset + qiov.size();
  int64_t r;
  if (serialised_by_file_system(offset, qiov.size())) {
    r = co_await coalescer_.write(offset, std::move(qiov));
  } else {
    r = co_await transfer(true, offset, std::move(qiov));
  }
  if (r < 0) co_return fail(Error::from_errno(static_cast<int>(-r), "write"));
  grow_to(end);
  co_return ok();
}

Task<int> FileNode::fallocate(int mode, uint64_t offset, uint64_t bytes) {
  int r;
  do {
    r = co_await uring::fallocate(loop(), fd_, mode, offset, bytes);
  } while (r == -EINTR || r == -EAGAIN);
  if (r == -EOPNOTSUPP) r = -ENOTSUP;  // REQ-FILE-6
  co_return r;
}

Task<Status> FileNode::do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) {
  const ChangeCount counted(changes_);
  if (block_device_) {
    // REQ-FILE-7: BLKZEROOUT may be emulated slowly by the kernel; never under NO_FALLBACK.
    if (flags.has(RequestFlag::kNoFallback)) co_return fail(Error::unsupported());
    uint64_t range[2] = {offset, bytes};
    int fd = fd_;
    int r = co_await uring::run_in_worker(
        loop(), [fd, &range] { return ioctl(fd, BLKZEROOUT, range) == 0 ? 0 : -errno; });
    if (r < 0) co_return fail(Error::from_errno(r == -EINVAL ? ENOTSUP : -r, "BLKZEROOUT"));
    co_return ok();
  }
  const uint64_t end = offset + bytes;
  // REQ-FILE-2: punch a hole when unmapping is allowed.
  if (flags.has(RequestFlag::kMayUnmap) && !punch_hole_unsupported_ && end <= size_) {
    int r = co_await fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, bytes);
    if (r == 0) co_return ok();
    if (r != -ENOTSUP) co_return fail(Error::from_errno(r, "fallocate"));
    punch_hole_unsupported_ = true;
  }
  // REQ-FILE-1.
  if (!zero_range_unsupported_) {
    int r = co_await fallocate(FALLOC_FL_ZERO_RANGE, offset, bytes);
    if (r == 0) {
      grow_to(end);
      co_return ok();
    }
    if (r != -ENOTSUP) co_return fail(Error::from_errno(r, "fallocate"));
    zero_range_unsupported_ = true;
  }
  // REQ-FILE-3: at or past EOF, plain allocation yields zeros.
  if (offset >= size_) {
    int r = co_await fallocate(0, offset, bytes);
    if (r == 0) {
      grow_to(end);
      co_return ok();
    }
    if (r != -ENOTSUP) co_return fail(Error::from_errno(r, "fallocate"));
  }
  co_return fail(Error::unsupported());  // REQ-FILE-4
}

Task<Status> FileNode::do_discard(uint64_t offset, uint64_t bytes) {
  const ChangeCount counted(changes_);
  if (block_device_) co_return ok();
  if (offset >= size_) co_return ok();
  bytes = std::min(bytes, size_ - offset);
  int r = co_await fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, bytes);
  // Discard is advisory: a file system without hole punching just keeps the data.
  if (r < 0 && r != -ENOTSUP) co_return fail(Error::from_errno(r, "discard"));
  co_return ok();
}

Task<Status> FileNode::do_flush() {
  if (flags_.no_flush) co_return ok();
  // Nothing has changed the file since the last successful flush began: nothing to sync.
  const uint64_t changes = changes_;
  if (changes == flushed_changes_) co_return ok();
  int r;
  if (flags_.aio == AioMode::kThreads) {
    int fd = fd_;
    r = co_await uring::run_in_worker(loop(), [fd] { return fdatasync(fd) == 0 ? 0 : -errno; });
  } else {
    r = co_await uring::fdatasync(loop(), fd_);
  }
  if (r < 0) co_return fail(Error::from_errno(r, "flush"));
  flushed_changes_ = std::max(flushed_changes_, changes);
  co_return ok();
}

Task<Status> FileNode::do_truncate(uint64_t size, PreallocMode mode, Exact exact) {
  const ChangeCount counted(changes_);
  if (block_device_) {
    if (size > size_ || (exact == Exact::kYes && size != size_)) {
      co_return fail(Error::with_message(ENOTSUP, "Cannot grow device files"));
    }
    co_return ok();
  }
  const uint64_t old = size_;
  if (mode == PreallocMode::kFalloc && size > old) {
    int r = co_await fallocate(0, old, size - old);
    if (r < 0) co_return fail(Error::from_errno(r, "Could not preallocate new data"));
  } else if (mode == PreallocMode::kFull && size > old) {
    // As qemu-img 7.2: the file gets its new length first, so a size the file cannot have
    // (past a file-size limit) fails as a resize, with the file as it was; then real zeros
    // are written so every block is allocated, and if that fails the old length comes back.
    if (ftruncate(fd_, static_cast<off_t>(size)) != 0) {
      co_return fail(Error::from_errno(errno, "Could not resize file"));
    }
    constexpr uint64_t kChunk = 1 << 20;
    AlignedBuffer zeros(kChunk, 4096);
    zeros.fill(0);
    for (uint64_t pos = old; pos < size;) {
      uint64_t n = std::min(kChunk, size - pos);
      int64_t r = co_await transfer(true, pos, IoVec(zeros.data(), n));
      if (r < 0) {
        (void)!ftruncate(fd_, static_cast<off_t>(old));
        co_return fail(
            Error::from_errno(static_cast<int>(-r), "Could not write zeros for preallocation"));
      }
      pos += n;
    }
  } else if (mode == PreallocMode::kMetadata && size > old) {
    co_return fail(Error::with_message(ENOTSUP, "Unsupported preallocation mode: metadata"));
  }
  if (ftruncate(fd_, static_cast<off_t>(size)) != 0) {
    co_return fail(Error::from_errno(errno, "Could not resize file"));
  }
  size_ = size;
  co_return ok();
}

Task<Result<BlockStatus>> FileNode::do_block_status(uint64_t offset, uint64_t bytes,
                                                    WantZero want_zero) {
  BlockStatus st{kStatusData | kStatusOffsetValid, bytes, offset, this};
  if (want_zero == WantZero::kNo || block_device_) co_return st;
  off_t data = lseek(fd_, static_cast<off_t>(offset), SEEK_DATA);
  if (data < 0) {
    // ENXIO: no data after offset, so the rest of the file is a hole.
    if (errno == ENXIO) {
      st.flags = kStatusZero | kStatusOffsetValid;
    }
    co_return st;
  }
  if (static_cast<uint64_t>(data) > offset) {
    st.flags = kStatusZero | kStatusOffsetValid;
    st.bytes = std::min<uint64_t>(bytes, static_cast<uint64_t>(data) - offset);
    co_return st;
  }
  off_t hole = lseek(fd_, static_cast<off_t>(offset), SEEK_HOLE);
  if (hole > static_cast<off_t>(offset)) {
    st.bytes = std::min<uint64_t>(bytes, static_cast<uint64_t>(hole) - offset);
  }
  co_return st;
}

Task<Status> FileNode::do_close() {
  if (fd_ >= 0) {
    ::close(fd_);  // closing the descriptor releases its OFD locks
    fd_ = -1;
  }
  co_return ok();
}

}  // namespace

Task<Result<NodePtr>> open_file_node(OpenContext& ctx, Options& options) {
  auto filename = take_string(options, "filename");
  if (!filename) co_return fail(filename.error());
  if (!*filename) {
    co_return fail(Error::with_message(EINVAL, "The 'file' block driver requires a file name"));
  }
  std::string name = **filename;
  auto aio = take_string(options, "aio");
  if (!aio) co_return fail(aio.error());
  OpenFlags flags = ctx.flags;
  if (*aio) {
    if (**aio == "threads") {
      flags.aio = AioMode::kThreads;
    } else if (**aio == "io_uring" || **aio == "native") {
      flags.aio = AioMode::kIoUring;  // native AIO is served by io_uring too
      if (**aio == "native" && !flags.direct) {
        co_return fail(Error::with_message(
            EINVAL,
            "aio=native was specified, but it requires cache.direct=on, which was not "
            "specified."));
      }
    } else {
      co_return fail(Error::with_message(EINVAL, "Invalid aio option: " + **aio));
    }
  }
  auto locking = take_string(options, "locking");
  if (!locking) co_return fail(locking.error());
  bool use_locks = !*locking || **locking != "off";

  int open_flags = O_CLOEXEC | (flags.read_only ? O_RDONLY : O_RDWR);
  if (flags.direct) open_flags |= O_DIRECT;
  int fd = ::open(name.c_str(), open_flags);
  if (fd < 0) {
    int e = errno;
    co_return fail(Error::with_message(e, "Could not open '" + name + "': " + std::strerror(e)));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    co_return fail(Error::with_message(e, "Could not stat '" + name + "': " + std::strerror(e)));
  }
  bool block_device = S_ISBLK(st.st_mode);
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (block_device) {
    uint64_t dev_size = 0;
    if (ioctl(fd, BLKGETSIZE64, &dev_size) == 0) size = dev_size;
  }
  uint64_t fs_block = 0;
  struct statfs fs {};
  if (!block_device && fstatfs(fd, &fs) == 0 && fs.f_bsize > 0) {
    fs_block = static_cast<uint64_t>(fs.f_bsize);
  }
  auto node = std::make_unique<FileNode>(ctx.loop, fd, name, block_device, size, fs_block, flags);
  if (Status s = node->probe_alignment(); !s) co_return fail(s.error());
  if (use_locks && !flags.force_share) {
    unsigned perm = kPermConsistentRead | (flags.read_only ? 0 : kPermWrite | kPermResize);
    unsigned shared = 0xf & ~(kPermWrite | kPermResize);
    if (Status s = node->lock(perm, shared); !s) co_return fail(s.error());
  }
  co_return NodePtr(std::move(node));
}

}  // namespace qblock
