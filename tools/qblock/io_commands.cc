// The qemu-io command language of `qblock io` (qemu-compat.md §2.4-§2.8, OBSERVED.md in
// tests/iotests): word splitting, the command table, per-command getopt parsing, and every
// command. Synchronous commands drive the event loop with run_sync; AIO commands are spawned
// tasks that print their report on completion.
#include "io_commands.h"

#include <fcntl.h>
#include <getopt.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "io_format.h"
#include "io_help.h"
#include "qblock/options.h"
#include "qblock/task.h"

namespace qblock::tools {

bool valid_cache_mode(std::string_view mode) {
  OpenFlags flags;
  return apply_cache_mode(mode, flags);
}

bool valid_aio_mode(std::string_view mode) {
  return mode == "threads" || mode == "native" || mode == "io_uring";
}

bool valid_discard_mode(std::string_view mode) {
  return mode == "ignore" || mode == "off" || mode == "unmap" || mode == "on";
}

namespace {

constexpr std::size_t kMisalignOffset = 16;

// Prints to stderr; stdout is flushed first so merged output is in program order
// (tests/iotests/OBSERVED.md §1).
void err(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void err(const char* fmt, ...) {
  std::fflush(stdout);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
}

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// An I/O buffer, misaligned by 16 bytes with -m.
struct IoBuffer {
  AlignedBuffer mem;
  uint8_t* data = nullptr;
  std::size_t len = 0;
};

IoBuffer alloc_buffer(const IoSession& s, std::size_t len, uint8_t fill) {
  IoBuffer b;
  std::size_t extra = s.misalign_ ? kMisalignOffset : 0;
  b.mem = AlignedBuffer(len + extra + 1, 4096);
  b.data = b.mem.data() + extra;
  b.len = len;
  std::memset(b.data, fill, len);
  return b;
}

// Splits a buffer into an IoVec with the given segment lengths.
IoVec make_iovec(IoBuffer& b, const std::vector<uint64_t>& lengths) {
  IoVec v;
  std::size_t pos = 0;
  for (uint64_t l : lengths) {
    v.append(b.data + pos, l);
    pos += l;
  }
  return v;
}

struct Command;
using CommandFn = int (*)(IoSession&, const Command&, int, char**);

struct Command {
  const char* name;
  const char* alias;
  int argmin;
  int argmax;  // -1: unlimited
  bool needs_file;
  bool needs_write;
  CommandFn fn;
};

// Prints "NAME ARGS -- ONELINE" with the canonical name (OBSERVED.md §2) and fails.
int usage(const Command& cmd) {
  const IoHelpText* h = find_io_help(cmd.name);
  std::printf("%s%.*s\n", cmd.name, static_cast<int>(h->tail.size()), h->tail.data());
  return -EINVAL;
}

// Starts getopt over a command's words; glibc prints its messages with argv[0], the typed name.
void reset_getopt() {
  std::fflush(stdout);
  ::optind = 0;
  ::opterr = 1;
}

bool parse_num(const char* text, int64_t& out) {
  Result<int64_t> v = parse_number(text);
  if (!v) {
    std::printf("%s\n", number_error_text(v.error(), text).c_str());
    return false;
  }
  out = *v;
  return true;
}

bool parse_pat(const char* text, uint8_t& out) {
  Result<uint8_t> v = parse_pattern(text);
  if (!v) {
    std::printf("%s\n", v.error().message().c_str());
    return false;
  }
  out = *v;
  return true;
}

// Parses the length words of readv/writev/aio_* into `lengths`. Prints the error on failure.
bool parse_lengths(int argc, char** argv, int first, std::vector<uint64_t>& lengths,
                   uint64_t& total) {
  total = 0;
  for (int i = first; i < argc; ++i) {
    int64_t len;
    if (!parse_num(argv[i], len)) return false;
    if (static_cast<uint64_t>(len) > kMaxRequestBytes) {
      std::printf("Argument '%s' exceeds maximum size %llu\n", argv[i],
                  static_cast<unsigned long long>(kMaxRequestBytes));
      return false;
    }
    if (total + static_cast<uint64_t>(len) > kMaxRequestBytes) {
      std::printf("The total number of bytes exceed the maximum size %llu\n",
                  static_cast<unsigned long long>(kMaxRequestBytes));
      return false;
    }
    total += static_cast<uint64_t>(len);
    lengths.push_back(static_cast<uint64_t>(len));
  }
  return true;
}

bool check_sector_aligned(int64_t offset, int64_t count) {
  if (offset % 512 != 0) {
    std::printf("%lld is not a sector-aligned value for 'offset'\n",
                static_cast<long long>(offset));
    return false;
  }
  if (count % 512 != 0) {
    std::printf("%lld is not a sector-aligned value for 'count'\n", static_cast<long long>(count));
    return false;
  }
  return true;
}

// Runs one request synchronously (the event loop also advances outstanding AIO meanwhile).
Status run(IoSession& s, Task<Status> task) { return run_sync(*s.loop_, std::move(task)); }

// qemu-compat.md §2.2 / OBSERVED.md §10: on a probed raw image, a write is refused when the
// first sector would afterwards probe as another format. The backend does not enforce this
// yet, so the tool does: the qcow/qcow2 magic followed by a non-zero version.
bool probe_restricted(IoSession& s, uint64_t offset, const IoVec& data) {
  if (!s.blk_->probed_raw() || offset >= 512 || data.size() == 0) return false;
  uint8_t sector[8] = {};
  uint64_t have = std::min<uint64_t>(8, s.blk_->length());
  if (have > 0) {
    Status st = run(s, s.blk_->read(0, IoVec(sector, have)));
    if (!st) return false;
  }
  for (uint64_t i = offset; i < 8 && i - offset < data.size(); ++i) {
    data.copy_to(i - offset, &sector[i], 1);
  }
  bool magic = sector[0] == 'Q' && sector[1] == 'F' && sector[2] == 'I' && sector[3] == 0xfb;
  uint32_t version = (uint32_t{sector[4]} << 24) | (uint32_t{sector[5]} << 16) |
                     (uint32_t{sector[6]} << 8) | sector[7];
  return magic && version != 0;
}

void print_io_error(const char* what, const Error& e) {
  std::printf("%s failed: %s\n", what, e.errno_text().c_str());
}

// ---------------------------------------------------------------------------------------------
// read / write / readv / writev

int read_f(IoSession& s, const Command& cmd, int argc, char** argv) {
  bool csv = false, quiet = false, dump = false, vmstate = false;
  bool pflag = false, sflag = false, lflag = false;
  uint8_t pattern = 0;
  int64_t pattern_offset = 0, pattern_count = 0;
  reset_getopt();
  int c;
  while ((c = getopt(argc, argv, "bCl:pP:qs:v")) != -1) {
    switch (c) {
      case 'b': vmstate = true; break;
      case 'C': csv = true; break;
      case 'l':
        lflag = true;
        if (!parse_num(::optarg, pattern_count)) return -EINVAL;
        break;
      case 'p': break;
      case 'P':
        pflag = true;
        if (!parse_pat(::optarg, pattern)) return -EINVAL;
        break;
      case 'q': quiet = true; break;
      case 's':
        sflag = true;
        if (!parse_num(::optarg, pattern_offset)) return -EINVAL;
        break;
      case 'v': dump = true; break;
      default: return usage(cmd);
    }
  }
  if (::optind != argc - 2) return usage(cmd);
  int64_t offset, count;
  if (!parse_num(argv[::optind], offset)) return -EINVAL;
  if (!parse_num(argv[::optind + 1], count)) return -EINVAL;
  if (static_cast<uint64_t>(count) > kMaxRequestBytes) {
    std::printf("length cannot exceed %llu, given %s\n",
                static_cast<unsigned long long>(kMaxRequestBytes), argv[::optind + 1]);
    return -EINVAL;
  }
  if (!pflag && (lflag || sflag)) return usage(cmd);
  if (!lflag) pattern_count = count - pattern_offset;
  if (pattern_count < 0 || pattern_count + pattern_offset > count) {
    std::printf("pattern verification range exceeds end of read data\n");
    return -EINVAL;
  }
  if (vmstate && !check_sector_aligned(offset, count)) return -EINVAL;

  IoBuffer buf = alloc_buffer(s, static_cast<std::size_t>(count), 0xab);
  Clock::time_point start = Clock::now();
  Status st;
  if (vmstate) {
    st = fail(Error::unsupported());  // no driver has VM state yet
  } else {
    st = run(s, s.blk_->read(static_cast<uint64_t>(offset), IoVec(buf.data, buf.len)));
  }
  double elapsed = seconds_since(start);
  if (!st) {
    print_io_error("read", st.error());
    return -st.error().errnum();
  }
  int ret = 0;
  if (pflag) {
    for (int64_t i = 0; i < pattern_count; ++i) {
      if (buf.data[pattern_offset + i] != pattern) {
        std::printf("Pattern verification failed at offset %lld, %lld bytes\n",
                    static_cast<long long>(offset + pattern_offset),
                    static_cast<long long>(pattern_count));
        ret = -EINVAL;
        break;
      }
    }
  }
  if (quiet) return ret;
  if (dump) std::fputs(hexdump(buf.data, buf.len, offset).c_str(), stdout);
  std::fputs(format_report("read", elapsed, offset, count, count, 1, csv).c_str(), stdout);
  return ret;
}

// Fills `buf` from FILE, repeating a short file (§2.7 write -s). Prints the error on failure.
bool fill_from_file(const char* path, IoBuffer& buf) {
  int fd = ::open(path, O_RDONLY);
  if (fd < 0) {
    err("%s: %s\n", path, std::strerror(errno));
    return false;
  }
  std::size_t got = 0;
  while (got < buf.len) {
    ssize_t n = ::read(fd, buf.data + got, buf.len - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      err("%s: %s\n", path, std::strerror(errno));
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  if (got == 0) {
    err("%s: file is empty\n", path);
    return false;
  }
  for (std::size_t pos = got; pos < buf.len; ++pos) buf.data[pos] = buf.data[pos % got];
  return true;
}

int write_f(IoSession& s, const Command& cmd, int argc, char** argv) {
  bool csv = false, quiet = false, vmstate = false, compressed = false;
  bool zflag = false, pflag = false, sflag = false;
  RequestFlags flags;
  uint8_t pattern = 0xcd;
  const char* source = nullptr;
  reset_getopt();
  int c;
  // -a (undocumented extension): with -z, a kAllocate request (NO_FALLBACK|SERIALISING|NO_WAIT).
  while ((c = getopt(argc, argv, "abcCfnpP:qs:uz")) != -1) {
    switch (c) {
      case 'a': flags |= kAllocate; break;
      case 'b': vmstate = true; break;
      case 'c': compressed = true; break;
      case 'C': csv = true; break;
      case 'f': flags |= RequestFlag::kFua; break;
      case 'n': flags |= RequestFlag::kNoFallback; break;
      case 'p': break;
      case 'P':
        pflag = true;
        if (!parse_pat(::optarg, pattern)) return -EINVAL;
        break;
      case 'q': quiet = true; break;
      case 's':
        sflag = true;
        source = ::optarg;
        break;
      case 'u': flags |= RequestFlag::kMayUnmap; break;
      case 'z': zflag = true; break;
      default: return usage(cmd);
    }
  }
  if (::optind != argc - 2) return usage(cmd);
  if (vmstate && zflag) {
    std::printf("-b and -z cannot be specified at the same time\n");
    return -EINVAL;
  }
  if (flags.has(RequestFlag::kFua) && (vmstate || compressed)) {
    std::printf("-f and -b or -c cannot be specified at the same time\n");
    return -EINVAL;
  }
  if (flags.has(RequestFlag::kMayUnmap) && !zflag) {
    std::printf("-u requires -z to be specified\n");
    return -EINVAL;
  }
  if (flags.has(RequestFlag::kNoFallback) && !zflag) {
    std::printf("-n requires -z to be specified\n");
    return -EINVAL;
  }
  if (int(zflag) + int(pflag) + int(sflag) > 1) {
    std::printf("Only one of -z, -P, and -s can be specified at the same time\n");
    return -EINVAL;
  }
  int64_t offset, count;
  if (!parse_num(argv[::optind], offset)) return -EINVAL;
  if (!parse_num(argv[::optind + 1], count)) return -EINVAL;
  if (static_cast<uint64_t>(count) > kMaxRequestBytes && !flags.has(RequestFlag::kNoFallback)) {
    std::printf("length cannot exceed %llu without -n, given %s\n",
                static_cast<unsigned long long>(kMaxRequestBytes), argv[::optind + 1]);
    return -EINVAL;
  }
  if ((vmstate || compressed) && !check_sector_aligned(offset, count)) return -EINVAL;

  IoBuffer buf;
  if (!zflag) {
    buf = alloc_buffer(s, static_cast<std::size_t>(count), pattern);
    if (sflag && !fill_from_file(source, buf)) return -EINVAL;
  }
  Clock::time_point start = Clock::now();
  Status st;
  if (vmstate) {
    st = fail(Error::unsupported());
  } else if (zflag) {
    // `write -z -n` may exceed kMaxRequestBytes (OBSERVED.md §4); the backend splits it.
    st = run(s, s.blk_->write_zeroes(static_cast<uint64_t>(offset), static_cast<uint64_t>(count),
                                     flags));
  } else if (probe_restricted(s, static_cast<uint64_t>(offset), IoVec(buf.data, buf.len))) {
    st = fail(Error::permission());
  } else {
    if (compressed) flags |= RequestFlag::kWriteCompressed;
    st = run(s, s.blk_->write(static_cast<uint64_t>(offset), IoVec(buf.data, buf.len), flags));
  }
  double elapsed = seconds_since(start);
  if (!st) {
    print_io_error("write", st.error());
    return -st.error().errnum();
  }
  if (quiet) return 0;
  std::fputs(format_report("wrote", elapsed, offset, count, count, 1, csv).c_str(), stdout);
  return 0;
}

int readv_f(IoSession& s, const Command& cmd, int argc, char** argv) {
  bool csv = false, quiet = false, dump = false, pflag = false;
  uint8_t pattern = 0;
  reset_getopt();
  int c;
  while ((c = getopt(argc, argv, "CP:qv")) != -1) {
    switch (c) {
      case 'C': csv = true; break;
      case 'P':
        pflag = true;
        if (!parse_pat(::optarg, pattern)) return -EINVAL;
        break;
      case 'q': quiet = true; break;
      case 'v': dump = true; break;
      default: return usage(cmd);
    }
  }
  if (::optind > argc - 2) return usage(cmd);
  int64_t offset;
  if (!parse_num(argv[::optind], offset)) return -EINVAL;
  std::vector<uint64_t> lengths;
  uint64_t total;
  if (!parse_lengths(argc, argv, ::optind + 1, lengths, total)) return -EINVAL;
  IoBuffer buf = alloc_buffer(s, total, 0xab);
  Clock::time_point start = Clock::now();
  Status st = run(s, s.blk_->read(static_cast<uint64_t>(offset), make_iovec(buf, lengths)));
  double elapsed = seconds_since(start);
  if (!st) {
    print_io_error("readv", st.error());
    return -st.error().errnum();
  }
  int ret = 0;
  if (pflag) {
    for (uint64_t i = 0; i < total; ++i) {
      if (buf.data[i] != pattern) {
        std::printf("Pattern verification failed at offset %lld, %zu bytes\n",
                    static_cast<long long>(offset), static_cast<std::size_t>(total));
        ret = -EINVAL;
        break;
      }
    }
  }
  if (quiet) return ret;
  if (dump) std::fputs(hexdump(buf.data, buf.len, offset).c_str(), stdout);
  std::fputs(format_report("read", elapsed, offset, total, total, 1, csv).c_str(), stdout);
  return ret;
}

int writev_f(IoSession& s, const Command& cmd, int argc, char** argv) {
  bool csv = false, quiet = false;
  RequestFlags flags;
  uint8_t pattern = 0xcd;
  reset_getopt();
  int c;
  while ((c = getopt(argc, argv, "CfqP:")) != -1) {
    switch (c) {
      case 'C': csv = true; break;
      case 'f': flags |= RequestFlag::kFua; break;
      case 'q': quiet = true; break;
      case 'P':
        if (!parse_pat(::optarg, pattern)) return -EINVAL;
        break;
      default: return usage(cmd);
    }
  }
  if (::optind > argc - 2) return usage(cmd);
  int64_t offset;
  if (!parse_num(argv[::optind], offset)) return -EINVAL;
  std::vector<uint64_t> lengths;
  uint64_t total;
  if (!parse_lengths(argc, argv, ::optind + 1, lengths, total)) return -EINVAL;
  IoBuffer buf = alloc_buffer(s, total, pattern);
  Clock::time_point start = Clock::now();
  IoVec qiov = make_iovec(buf, lengths);
  Status st = probe_restricted(s, static_cast<uint64_t>(offset), qiov)
                  ? Status(fail(Error::permission()))
                  : run(s, s.blk_->write(static_cast<uint64_t>(offset), qiov, flags));
  double elapsed = seconds_since(start);
  if (!st) {
    print_io_error("writev", st.error());
    return -st.error().errnum();
  }
  if (quiet) return 0;
  std::fputs(format_report("wrote", elapsed, offset, total, total, 1, csv).c_str(), stdout);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// aio_read / aio_write / aio_flush

struct AioRequest {
  IoSession* session = nullptr;
  bool is_write = false;
  bool zero = false;
  bool csv = false, quiet = false, dump = false, pflag = false;
  uint8_t pattern = 0;
  RequestFlags flags;
  uint64_t offset = 0;
  uint64_t total = 0;
  std::vector<uint64_t> lengths;
  IoBuffer buf;
  bool restricted = false;  // refused by probe_restricted()
  Clock::time_point start;
};

// Runs one AIO request and prints its completion (§2.7 aio_*). Errors never fail the session.
Task<void> aio_task(std::unique_ptr<AioRequest> req) {
  IoSession& s = *req->session;
  Status st;
  if (req->zero) {
    Task<Status> t = s.blk_->write_zeroes(req->offset, req->total, req->flags);
    st = co_await std::move(t);
  } else if (req->is_write && req->restricted) {
    st = fail(Error::permission());
  } else if (req->is_write) {
    Task<Status> t = s.blk_->write(req->offset, make_iovec(req->buf, req->lengths), req->flags);
    st = co_await std::move(t);
  } else {
    Task<Status> t = s.blk_->read(req->offset, make_iovec(req->buf, req->lengths));
    st = co_await std::move(t);
  }
  double elapsed = seconds_since(req->start);
  --s.outstanding_;
  if (!st) {
    std::printf("%s failed: %s\n", req->is_write ? "aio_write" : "readv",
                st.error().errno_text().c_str());
    co_return;
  }
  if (!req->is_write && req->pflag) {
    for (uint64_t i = 0; i < req->total; ++i) {
      if (req->buf.data[i] != req->pattern) {
        std::printf("Pattern verification failed at offset %llu, %zu bytes\n",
                    static_cast<unsigned long long>(req->offset),
                    static_cast<std::size_t>(req->total));
        break;
      }
    }
  }
  if (req->quiet) co_return;
  if (req->dump) std::fputs(hexdump(req->buf.data, req->buf.len, req->offset).c_str(), stdout);
  std::string report = format_report(req->is_write ? "wrote" : "read", elapsed, req->offset,
                                     req->total, req->total, 1, req->csv);
  std::fputs(report.c_str(), stdout);
}

int aio_common(IoSession& s, const Command& cmd, int argc, char** argv, bool is_write) {
  auto req = std::make_unique<AioRequest>();
  req->session = &s;
  req->is_write = is_write;
  req->pattern = is_write ? 0xcd : 0;
  bool invalid = false;
  reset_getopt();
  int c;
  const char* optstring = is_write ? "CfiqP:uz" : "CP:iqv";
  while ((c = getopt(argc, argv, optstring)) != -1) {
    switch (c) {
      case 'C': req->csv = true; break;
      case 'f': req->flags |= RequestFlag::kFua; break;
      case 'i': invalid = true; break;
      case 'q': req->quiet = true; break;
      case 'v': req->dump = true; break;
      case 'P':
        req->pflag = true;
        if (!parse_pat(::optarg, req->pattern)) return -EINVAL;
        break;
      case 'u': req->flags |= RequestFlag::kMayUnmap; break;
      case 'z': req->zero = true; break;
      default: return usage(cmd);
    }
  }
  if (::optind > argc - 2) return usage(cmd);
  if (req->flags.has(RequestFlag::kMayUnmap) && !req->zero) {
    std::printf("-u requires -z to be specified\n");
    return -EINVAL;
  }
  if (req->zero && argc - ::optind != 2) {
    std::printf("-z supports only a single length parameter\n");
    return -EINVAL;
  }
  int64_t offset;
  if (!parse_num(argv[::optind], offset)) return -EINVAL;
  req->offset = static_cast<uint64_t>(offset);
  if (req->zero) {
    int64_t count;
    if (!parse_num(argv[::optind + 1], count)) return -EINVAL;
    req->total = static_cast<uint64_t>(count);
  } else {
    if (!parse_lengths(argc, argv, ::optind + 1, req->lengths, req->total)) return -EINVAL;
  }
  if (invalid) {
    std::printf("injecting invalid %s request\n", is_write ? "write" : "read");
    return 0;
  }
  if (!req->zero) req->buf = alloc_buffer(s, req->total, is_write ? req->pattern : 0xab);
  if (is_write && !req->zero) {
    req->restricted = probe_restricted(s, req->offset, make_iovec(req->buf, req->lengths));
  }
  req->start = Clock::now();
  ++s.outstanding_;
  spawn(aio_task(std::move(req)));
  return 0;
}

int aio_read_f(IoSession& s, const Command& cmd, int argc, char** argv) {
  return aio_common(s, cmd, argc, argv, false);
}

int aio_write_f(IoSession& s, const Command& cmd, int argc, char** argv) {
  return aio_common(s, cmd, argc, argv, true);
}

int aio_flush_f(IoSession& s, const Command&, int, char**) {
  s.drain();
  return 0;
}

// ---------------------------------------------------------------------------------------------
// discard / flush / truncate / length / info / map / alloc

int discard_f(IoSession& s, const Command& cmd, int argc, char** argv) {
  bool csv = false, quiet = false;
  reset_getopt();
  int c;
  while ((c = getopt(argc, argv, "Cq")) != -1) {
    switch (c) {
      case 'C': csv = true; break;
      case 'q': quiet = true; break;
      default: return usage(cmd);
    }
  }
  if (::optind != argc - 2) return usage(cmd);
  int64_t offset, bytes;
  if (!parse_num(argv[::optind], offset)) return -EINVAL;
  if (!parse_num(argv[::optind + 1], bytes)) return -EINVAL;
  if (static_cast<uint64_t>(bytes) > kMaxRequestBytes) {
    std::printf("length cannot exceed %llu, given %s\n",
                static_cast<unsigned long long>(kMaxRequestBytes), argv[::optind + 1]);
    return -EINVAL;
  }
  Clock::time_point start = Clock::now();
  Status st = run(s, s.blk_->discard(static_cast<uint64_t>(offset), static_cast<uint64_t>(bytes)));
  double elapsed = seconds_since(start);
  if (!st) {
    print_io_error("discard", st.error());
    return -st.error().errnum();
  }
  if (quiet) return 0;
  std::fputs(format_report("discard", elapsed, offset, bytes, bytes, 1, csv).c_str(), stdout);
  return 0;
}

int flush_f(IoSession& s, const Command&, int, char**) {
  Status st = run(s, s.blk_->flush());
  return st ? 0 : -st.error().errnum();
}

int truncate_f(IoSession& s, const Command& cmd, int argc, char** argv) {
  PreallocMode mode = PreallocMode::kOff;
  reset_getopt();
  int c;
  while ((c = getopt(argc, argv, "m:")) != -1) {
    switch (c) {
      case 'm': {
        Result<PreallocMode> m = parse_prealloc_mode(::optarg);
        if (!m) {
          err("qemu-io: Invalid preallocation mode '%s'\n", ::optarg);
          return -EINVAL;
        }
        mode = *m;
        break;
      }
      default: return usage(cmd);
    }
  }
  // qemu-compat.md §7: extra positional words are a usage error (7.2 ignores them).
  if (::optind != argc - 1) return usage(cmd);
  int64_t size;
  if (!parse_num(argv[::optind], size)) return -EINVAL;
  Status st = run(s, s.blk_->truncate(static_cast<uint64_t>(size), mode));
  if (!st) {
    std::string msg = st.error().message();
    err("qemu-io: %s\n", msg.c_str());
    return -st.error().errnum();
  }
  return 0;
}

int length_f(IoSession& s, const Command&, int, char**) {
  std::printf("%s\n", cvtstr(static_cast<double>(s.blk_->length())).c_str());
  return 0;
}

int info_f(IoSession& s, const Command&, int, char**) {
  NodeInfo info = s.blk_->root().info();
  std::printf("format name: %s\n", info.format_name.c_str());
  if (!info.protocol_name.empty()) std::printf("format name: %s\n", info.protocol_name.c_str());
  if (info.name_only) return -ENOTSUP;  // QEMU's get_info failed: no message, exit status 1
  std::printf("cluster size: %s\n", cvtstr(static_cast<double>(info.cluster_size)).c_str());
  std::printf("vm state offset: %s\n", cvtstr(static_cast<double>(info.vm_state_offset)).c_str());
  if (!info.format_specific.empty()) {
    std::printf("Format specific information:\n");
    for (const auto& [key, value] : info.format_specific) {
      if (value.empty()) {
        std::printf("    %s:\n", key.c_str());
      } else {
        std::printf("    %s: %s\n", key.c_str(), value.c_str());
      }
    }
  }
  return 0;
}

// The allocation state of [offset, offset + bytes) as one run: whether it is allocated and
// its length (runs of equal state are merged).
Result<std::pair<bool, uint64_t>> allocated_run(IoSession& s, uint64_t offset, uint64_t bytes) {
  bool first_state = false;
  uint64_t done = 0;
  while (done < bytes) {
    auto r = run_sync(*s.loop_, s.blk_->root().is_allocated(offset + done, bytes - done));
    if (!r) return fail(r.error());
    if (r->second == 0) break;
    if (done == 0) {
      first_state = r->first;
    } else if (r->first != first_state) {
      break;
    }
    done += r->second;
  }
  return std::make_pair(first_state, done);
}

int map_f(IoSession& s, const Command&, int, char**) {
  uint64_t length = s.blk_->length();
  uint64_t offset = 0;
  while (offset < length) {
    auto r = allocated_run(s, offset, length - offset);
    if (!r) {
      err("qemu-io: Failed to get allocation status: %s\n", r.error().errno_text().c_str());
      return -r.error().errnum();
    }
    if (r->second == 0) break;
    std::printf(
        "%s (0x%llx) bytes %s at offset %s (0x%llx)\n",
        cvtstr(static_cast<double>(r->second)).c_str(), static_cast<unsigned long long>(r->second),
        r->first ? "    allocated" : "not allocated", cvtstr(static_cast<double>(offset)).c_str(),
        static_cast<unsigned long long>(offset));
    offset += r->second;
  }
  return 0;
}

int alloc_f(IoSession& s, const Command&, int argc, char** argv) {
  int64_t offset, count = 512;
  if (!parse_num(argv[1], offset)) return -EINVAL;
  if (argc == 3 && !parse_num(argv[2], count)) return -EINVAL;
  uint64_t length = s.blk_->length();
  uint64_t off = static_cast<uint64_t>(offset);
  uint64_t bytes = off >= length ? 0 : std::min<uint64_t>(count, length - off);
  uint64_t allocated = 0;
  uint64_t pos = off;
  while (pos < off + bytes) {
    auto r = run_sync(*s.loop_, s.blk_->root().is_allocated(pos, off + bytes - pos));
    if (!r) {
      std::printf("is_allocated failed: %s\n", r.error().errno_text().c_str());
      return -r.error().errnum();
    }
    if (r->second == 0) break;
    if (r->first) allocated += r->second;
    pos += r->second;
  }
  std::printf("%llu/%llu bytes allocated at offset %s\n",
              static_cast<unsigned long long>(allocated), static_cast<unsigned long long>(bytes),
              cvtstr(static_cast<double>(offset)).c_str());
  return 0;
}

// ---------------------------------------------------------------------------------------------
// open / close / reopen

int open_f(IoSession& s, const Command& cmd, int argc, char** argv) {
  OpenRequest req;
  reset_getopt();
  int c;
  while ((c = getopt(argc, argv, "snCrkUi:t:d:o:")) != -1) {
    switch (c) {
      case 's': req.snapshot = true; break;
      case 'n': req.cache = "none"; break;
      case 'C': req.copy_on_read = true; break;
      case 'r': req.read_only = true; break;
      case 'k': req.aio = "native"; break;
      case 'U': req.force_share = true; break;
      case 'i':
        if (!valid_aio_mode(::optarg)) {
          err("qemu-io: Invalid aio option: %s\n", ::optarg);
          return -EINVAL;
        }
        req.aio = ::optarg;
        break;
      case 't':
        if (!valid_cache_mode(::optarg)) {
          err("qemu-io: Invalid cache option: %s\n", ::optarg);
          return -EINVAL;
        }
        req.cache = ::optarg;
        break;
      case 'd':
        if (!valid_discard_mode(::optarg)) {
          err("qemu-io: Invalid discard option: %s\n", ::optarg);
          return -EINVAL;
        }
        req.discard = ::optarg;
        break;
      case 'o':
        if (!req.options.empty()) req.options += ',';
        req.options += ::optarg;
        break;
      default: return usage(cmd);
    }
  }
  if (::optind == argc - 1) {
    req.path = argv[::optind];
    req.has_path = true;
  } else if (::optind != argc) {
    return usage(cmd);
  }
  return s.open_image(req) ? 0 : -EINVAL;
}

int close_f(IoSession& s, const Command&, int, char**) {
  s.close_image();
  return 0;
}

int reopen_f(IoSession& s, const Command& cmd, int argc, char** argv) {
  bool ro = false, rw = false;
  std::string cache;
  std::string options;
  std::string discard;
  reset_getopt();
  int c;
  while ((c = getopt(argc, argv, "c:o:rw")) != -1) {
    switch (c) {
      case 'c':
        if (!valid_cache_mode(::optarg)) {
          err("qemu-io: Invalid cache option: %s\n", ::optarg);
          return -EINVAL;
        }
        cache = ::optarg;
        break;
      case 'o':
        if (!options.empty()) options += ',';
        options += ::optarg;
        break;
      case 'r':
        if (rw) {
          err("qemu-io: Only one -r/-w option may be given\n");
          return -EINVAL;
        }
        ro = true;
        break;
      case 'w':
        if (ro) {
          err("qemu-io: Only one -r/-w option may be given\n");
          return -EINVAL;
        }
        rw = true;
        break;
      default: return usage(cmd);
    }
  }
  if (::optind != argc) return usage(cmd);
  if (!options.empty()) {
    Result<Options> opts = parse_key_value_options(options, "file");
    if (!opts) {
      err("qemu-io: %s\n", opts.error().message().c_str());
      return -EINVAL;
    }
    // Only generic options can change; driver options of an open graph cannot yet.
    for (auto it = opts->begin(); it != opts->end(); ++it) {
      const std::string& key = it.key();
      if (key == "discard" && it->is_string() && valid_discard_mode(it->get<std::string>())) {
        discard = it->get<std::string>();
        continue;
      }
      if (key == "read-only" || key == "cache" || key == "detect-zeroes") continue;
      err("qemu-io: Cannot change the option '%s'\n", key.c_str());
      return -EINVAL;
    }
  }
  OpenRequest req = s.current_;
  if (ro) req.read_only = true;
  if (rw) req.read_only = false;
  if (!cache.empty()) req.cache = cache;
  if (!discard.empty()) req.discard = discard;
  OpenRequest old = s.current_;
  s.close_image();
  if (!s.open_image(req)) {
    // Best effort: get the previous image back.
    if (!s.blk_) (void)s.open_image(old);
    return -EINVAL;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// breakpoints

int break_f(IoSession& s, const Command&, int, char** argv) {
  Status st = s.blk_->root().debug_breakpoint(argv[1], argv[2]);
  if (!st) {
    std::printf("Could not set breakpoint: %s\n", st.error().errno_text().c_str());
    return -st.error().errnum();
  }
  return 0;
}

int remove_break_f(IoSession& s, const Command&, int, char** argv) {
  Status st = s.blk_->root().debug_remove_breakpoint(argv[1]);
  if (!st) {
    std::printf("Could not remove breakpoint %s: %s\n", argv[1], st.error().errno_text().c_str());
    return -st.error().errnum();
  }
  return 0;
}

int resume_f(IoSession& s, const Command&, int, char** argv) {
  Status st = s.blk_->root().debug_resume(argv[1]);
  if (!st) {
    std::printf("Could not resume request: %s\n", st.error().errno_text().c_str());
    return -st.error().errnum();
  }
  return 0;
}

// qemu-compat.md §7: 7.2 loops forever when the tag never gets suspended; qblock drives the
// loop while there is work and fails when there is none left or after a timeout.
int wait_break_f(IoSession& s, const Command&, int, char** argv) {
  Clock::time_point start = Clock::now();
  while (!s.blk_->root().debug_is_suspended(argv[1])) {
    bool busy = s.loop_->run_once(false);
    if (!busy) {
      err("qemu-io: wait_break: no request can reach breakpoint '%s'\n", argv[1]);
      return -ENOENT;
    }
    if (seconds_since(start) > 60) {
      err("qemu-io: wait_break: timed out waiting for breakpoint '%s'\n", argv[1]);
      return -ETIMEDOUT;
    }
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// misc

int help_f(IoSession&, const Command&, int argc, char** argv);

int quit_f(IoSession& s, const Command&, int, char**) {
  s.quit_ = true;
  return 0;
}

int abort_f(IoSession&, const Command&, int, char**) {
  std::fflush(stdout);
  std::abort();
}

int sigraise_f(IoSession&, const Command&, int, char** argv) {
  int64_t sig;
  if (!parse_num(argv[1], sig)) return -EINVAL;
  std::fflush(stdout);
  std::fflush(stderr);
  std::raise(static_cast<int>(sig));
  return 0;
}

Task<Status> sleep_for(EventLoop* loop, long ms) {
  Task<void> slept = loop->sleep_for(std::chrono::milliseconds(ms));
  co_await std::move(slept);
  co_return ok();
}

int sleep_f(IoSession& s, const Command&, int, char** argv) {
  Result<long> ms = parse_c_long(argv[1]);
  if (!ms) {
    std::printf("%s\n", ms.error().message().c_str());
    return -EINVAL;
  }
  (void)run(s, sleep_for(s.loop_.get(), *ms));
  return 0;
}

const Command kCommands[] = {
    {"abort", nullptr, 0, 0, false, false, abort_f},
    {"aio_flush", nullptr, 0, 0, true, false, aio_flush_f},
    {"aio_read", nullptr, 2, -1, true, false, aio_read_f},
    {"aio_write", nullptr, 2, -1, true, true, aio_write_f},
    {"alloc", "a", 1, 2, true, false, alloc_f},
    {"break", nullptr, 2, 2, true, false, break_f},
    {"close", "c", 0, 0, true, false, close_f},
    {"discard", "d", 2, -1, true, true, discard_f},
    {"flush", "f", 0, 0, true, false, flush_f},
    {"help", "?", 0, 1, false, false, help_f},
    {"info", "i", 0, 0, true, false, info_f},
    {"length", "l", 0, 0, true, false, length_f},
    {"map", nullptr, 0, 0, true, false, map_f},
    {"open", "o", 1, -1, false, false, open_f},
    {"quit", "q", -1, -1, false, false, quit_f},
    {"read", "r", 2, -1, true, false, read_f},
    {"readv", nullptr, 2, -1, true, false, readv_f},
    {"remove_break", nullptr, 1, 1, true, false, remove_break_f},
    {"reopen", nullptr, 0, -1, true, false, reopen_f},
    {"resume", nullptr, 1, 1, true, false, resume_f},
    {"sigraise", nullptr, 1, 1, false, false, sigraise_f},
    {"sleep", nullptr, 1, 1, false, false, sleep_f},
    {"truncate", "t", 1, 3, true, true, truncate_f},
    {"wait_break", nullptr, 1, 1, true, false, wait_break_f},
    {"write", "w", 2, -1, true, true, write_f},
    {"writev", nullptr, 2, -1, true, true, writev_f},
};

const Command* find_command(std::string_view name) {
  for (const Command& c : kCommands) {
    if (name == c.name || (c.alias && name == c.alias)) return &c;
  }
  return nullptr;
}

int help_f(IoSession&, const Command&, int argc, char** argv) {
  if (argc == 1) {
    for (const IoHelpText* h = io_help_begin(); h != io_help_end(); ++h) {
      std::printf("%.*s%.*s\n", static_cast<int>(h->name.size()), h->name.data(),
                  static_cast<int>(h->tail.size()), h->tail.data());
    }
    std::printf("\nUse 'help commandname' for extended help.\n");
    return 0;
  }
  const Command* cmd = find_command(argv[1]);
  if (!cmd) {
    std::printf("command %s not found\n", argv[1]);
    return -EINVAL;
  }
  const IoHelpText* h = find_io_help(cmd->name);
  std::printf("%s%.*s\n", argv[1], static_cast<int>(h->tail.size()), h->tail.data());
  std::fwrite(h->extended.data(), 1, h->extended.size(), stdout);
  return 0;
}

}  // namespace

// Copies `path` sparsely to a new temporary file and returns its name.
Result<std::string> make_snapshot_copy(const std::string& path) {
  int in = ::open(path.c_str(), O_RDONLY);
  if (in < 0) {
    return fail(Error::with_message(
        errno, "Could not open '" + path + "': " + std::string(std::strerror(errno))));
  }
  const char* tmpdir = std::getenv("TMPDIR");
  std::string name = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/qblock-io-snap.XXXXXX";
  int out = ::mkstemp(name.data());
  if (out < 0) {
    int e = errno;
    ::close(in);
    return fail(Error::from_errno(e, "Could not create temporary overlay"));
  }
  off_t size = ::lseek(in, 0, SEEK_END);
  int e = 0;
  off_t pos = 0;
  while (size > 0 && pos < size && e == 0) {
    off_t data = ::lseek(in, pos, SEEK_DATA);
    if (data < 0) break;  // ENXIO: only a hole remains
    off_t hole = ::lseek(in, data, SEEK_HOLE);
    if (hole < 0) hole = size;
    loff_t src = data, dst = data;
    while (src < hole) {
      ssize_t n = ::copy_file_range(in, &src, out, &dst, static_cast<std::size_t>(hole - src), 0);
      if (n <= 0) {
        e = n < 0 ? errno : EIO;
        break;
      }
    }
    pos = hole;
  }
  if (e == 0 && ::ftruncate(out, size) < 0) e = errno;
  ::close(in);
  ::close(out);
  if (e != 0) {
    ::unlink(name.c_str());
    return fail(Error::from_errno(e, "Could not create temporary overlay"));
  }
  return name;
}

// ---------------------------------------------------------------------------------------------
// IoSession

Result<std::unique_ptr<IoSession>> IoSession::create(bool misalign) {
  Result<std::unique_ptr<EventLoop>> loop = EventLoop::create();
  if (!loop) return fail(loop.error());
  auto s = std::unique_ptr<IoSession>(new IoSession());
  s->loop_ = std::move(*loop);
  s->misalign_ = misalign;
  return s;
}

IoSession::~IoSession() { finish(); }

void IoSession::drain() {
  while (outstanding_ > 0) {
    if (!loop_->run_once(true)) break;  // nothing can progress (e.g. a suspended request)
  }
}

void IoSession::close_image() {
  drain();
  if (!blk_) return;
  Status st = run_sync(*loop_, blk_->close());
  if (!st) err("qemu-io: %s\n", st.error().message().c_str());
  blk_.reset();
  if (!snapshot_path_.empty()) ::unlink(snapshot_path_.c_str());
  snapshot_path_.clear();
}

void IoSession::finish() {
  if (loop_) close_image();
}

bool IoSession::open_image(const OpenRequest& request) {
  if (blk_) {
    err("qemu-io: file open already, try 'help close'\n");
    return false;
  }
  bool named = request.has_path && request.image_opts.empty();
  std::string prefix = named ? "can't open device " + request.path + ": " : "can't open: ";

  BackendOptions opts;
  opts.format = request.format;
  if (!request.image_opts.empty()) {
    Result<Options> tree = parse_key_value_options(request.image_opts, "file");
    if (!tree) {
      err("qemu-io: %s%s\n", prefix.c_str(), tree.error().message().c_str());
      return false;
    }
    opts.tree = std::move(*tree);
  }
  if (!request.options.empty()) {
    // `open -o`: a bare word is a deprecated short-form boolean (OBSERVED.md §9).
    std::string text;
    std::size_t pos = 0;
    const std::string& o = request.options;
    while (pos <= o.size()) {
      std::size_t end = pos;
      while (end < o.size()) {
        if (o[end] == ',' && end + 1 < o.size() && o[end + 1] == ',') {
          end += 2;
          continue;
        }
        if (o[end] == ',') break;
        ++end;
      }
      std::string item = o.substr(pos, end - pos);
      if (!item.empty() && item.find('=') == std::string::npos) {
        err("qemu-io: warning: short-form boolean option '%s' deprecated\n", item.c_str());
        err("Please use %s=on instead\n", item.c_str());
        item += "=on";
      }
      if (!item.empty()) {
        if (!text.empty()) text += ',';
        text += item;
      }
      pos = end + 1;
    }
    Result<Options> tree = parse_key_value_options(text, "file");
    if (!tree) {
      err("qemu-io: %s%s\n", prefix.c_str(), tree.error().message().c_str());
      return false;
    }
    opts.tree.update(*tree, true);
  }
  if (request.has_path) opts.filename = request.path;

  OpenFlags& flags = opts.flags;
  flags.read_only = request.read_only;
  flags.force_share = request.force_share;
  flags.discard = DiscardMode::kUnmap;  // qemu-io opens with discard=unmap (OBSERVED.md §8)
  if (request.discard == "ignore" || request.discard == "off") flags.discard = DiscardMode::kIgnore;
  // qemu-io's default cache mode is writethrough: every write is flushed (observed with
  // strace: one fdatasync per write).
  (void)apply_cache_mode(request.cache.empty() ? "writethrough" : request.cache, flags);
  if (request.aio == "threads") flags.aio = AioMode::kThreads;
  if (request.aio == "native") flags.aio = AioMode::kNative;

  std::string snapshot_path;
  if (request.snapshot) {
    // -s: writes must not reach the image. Without an overlay format, a plain image file is
    // copied (sparsely) to a temporary file that is opened instead and deleted at close.
    // Options must not name another file, or writes would bypass the copy.
    bool plain = request.has_path && opts.tree.find("file") == opts.tree.end() &&
                 request.image_opts.empty() && request.path.rfind("json:", 0) != 0 &&
                 request.path.find(':') == std::string::npos;
    if (!plain) {
      err("qemu-io: %ssnapshot mode is not supported yet\n", prefix.c_str());
      return false;
    }
    Result<std::string> copy = make_snapshot_copy(request.path);
    if (!copy) {
      err("qemu-io: %s%s\n", prefix.c_str(), copy.error().message().c_str());
      return false;
    }
    snapshot_path = *copy;
    opts.filename = snapshot_path;
  }
  if (request.force_share && !request.read_only) {
    err("qemu-io: %sforce-share=on can only be used with read-only images\n", prefix.c_str());
    return false;
  }
  if (flags.aio == AioMode::kNative && !flags.direct) {
    err("qemu-io: %saio=native was specified, but it requires cache.direct=on, which was not "
        "specified.\n",
        prefix.c_str());
    return false;
  }
  auto blk = run_sync(*loop_, BlockBackend::open(*loop_, opts));
  if (!blk && !snapshot_path.empty()) ::unlink(snapshot_path.c_str());
  if (!blk) {
    err("qemu-io: %s%s\n", prefix.c_str(), blk.error().message().c_str());
    return false;
  }
  blk_ = std::move(*blk);
  current_ = request;
  snapshot_path_ = snapshot_path;
  if (blk_->probed_raw()) {
    err("WARNING: Image format was not specified for '%s' and probing guessed raw.\n"
        "         Automatically detecting the format is dangerous for raw images, write "
        "operations on block 0 will be restricted.\n"
        "         Specify the 'raw' format explicitly to remove the restrictions.\n",
        request.path.c_str());
  }
  return true;
}

void IoSession::run_line(std::string_view line) {
  std::vector<std::string> words;
  std::size_t pos = 0;
  while (pos < line.size()) {
    while (pos < line.size() && line[pos] == ' ') ++pos;
    if (pos >= line.size()) break;
    std::size_t end = line.find(' ', pos);
    if (end == std::string_view::npos) end = line.size();
    words.emplace_back(line.substr(pos, end - pos));
    pos = end;
  }
  if (words.empty()) return;
  const Command* cmd = find_command(words[0]);
  if (!cmd) {
    err("command \"%s\" not found\n", words[0].c_str());
    failed_ = true;
    return;
  }
  if (cmd->needs_file && !blk_) {
    err("no file open, try 'help open'\n");
    failed_ = true;
    return;
  }
  int nargs = static_cast<int>(words.size()) - 1;
  if (cmd->argmin >= 0 && (nargs < cmd->argmin || (cmd->argmax >= 0 && nargs > cmd->argmax))) {
    if (cmd->argmax == cmd->argmin) {
      err("bad argument count %d to %s, expected %d arguments\n", nargs, words[0].c_str(),
          cmd->argmin);
    } else if (cmd->argmax < 0) {
      err("bad argument count %d to %s, expected at least %d arguments\n", nargs, words[0].c_str(),
          cmd->argmin);
    } else {
      err("bad argument count %d to %s, expected between %d and %d arguments\n", nargs,
          words[0].c_str(), cmd->argmin, cmd->argmax);
    }
    failed_ = true;
    return;
  }
  if (cmd->needs_write && blk_ && blk_->read_only()) {
    err("qemu-io: Block node is read-only\n");
    failed_ = true;
    return;
  }
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  int ret = cmd->fn(*this, *cmd, nargs + 1, argv.data());
  if (ret < 0) failed_ = true;
}

}  // namespace qblock::tools
