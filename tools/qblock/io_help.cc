// The help texts of `qblock io` (see io_help.h), recorded from qemu-io 7.2's output.
#include "io_help.h"

namespace qblock::tools {
namespace {

const IoHelpText kHelp[] = {
    // abort
    {"abort", R"__( -- simulate a program crash using abort(3))__", R"__()__"},
    // aio_flush
    {"aio_flush", R"__( -- completes all outstanding aio requests)__", R"__()__"},
    // aio_read
    {"aio_read",
     R"__( [-Ciqv] [-P pattern] off len [len..] -- asynchronously reads a number of bytes)__", R"__(
 asynchronously reads a range of bytes from the given offset

 Example:
 'aio_read -v 512 1k 1k ' - dumps 2 kilobytes read from 512 bytes into the file

 Reads a segment of the currently open file, optionally dumping it to the
 standard output stream (with -v option) for subsequent inspection.
 The read is performed asynchronously and the aio_flush command must be
 used to ensure all outstanding aio requests have been completed.
 Note that due to its asynchronous nature, this command will be
 considered successful once the request is submitted, independently
 of potential I/O errors or pattern mismatches.
 -C, -- report statistics in a machine parsable format
 -P, -- use a pattern to verify read data
 -i, -- treat request as invalid, for exercising stats
 -v, -- dump buffer to standard output
 -q, -- quiet mode, do not show I/O statistics

)__"},
    // aio_write
    {"aio_write",
     R"__( [-Cfiquz] [-P pattern] off len [len..] -- asynchronously writes a number of bytes)__",
     R"__(
 asynchronously writes a range of bytes from the given offset source
 from multiple buffers

 Example:
 'aio_write 512 1k 1k' - writes 2 kilobytes at 512 bytes into the open file

 Writes into a segment of the currently open file, using a buffer
 filled with a set pattern (0xcdcdcdcd).
 The write is performed asynchronously and the aio_flush command must be
 used to ensure all outstanding aio requests have been completed.
 Note that due to its asynchronous nature, this command will be
 considered successful once the request is submitted, independently
 of potential I/O errors or pattern mismatches.
 -P, -- use different pattern to fill file
 -C, -- report statistics in a machine parsable format
 -f, -- use Force Unit Access semantics
 -i, -- treat request as invalid, for exercising stats
 -q, -- quiet mode, do not show I/O statistics
 -u, -- with -z, allow unmapping
 -z, -- write zeroes using blk_aio_pwrite_zeroes

)__"},
    // alloc
    {"alloc", R"__( offset [count] -- checks if offset is allocated in the file)__", R"__()__"},
    // break
    {"break", R"__( event tag -- sets a breakpoint on event and tags the stopped request as tag)__",
     R"__()__"},
    // close
    {"close", R"__( -- close the current open file)__", R"__()__"},
    // discard
    {"discard", R"__( [-Cq] off len -- discards a number of bytes at a specified offset)__", R"__(
 discards a range of bytes from the given offset

 Example:
 'discard 512 1k' - discards 1 kilobyte from 512 bytes into the file

 Discards a segment of the currently open file.
 -C, -- report statistics in a machine parsable format
 -q, -- quiet mode, do not show I/O statistics

)__"},
    // flush
    {"flush", R"__( -- flush all in-core file state to disk)__", R"__()__"},
    // help
    {"help", R"__( [command] -- help for one or all commands)__", R"__()__"},
    // info
    {"info", R"__( -- prints information about the current file)__", R"__()__"},
    // length
    {"length", R"__( -- gets the length of the current file)__", R"__()__"},
    // map
    {"map", R"__(  -- prints the allocated areas of a file)__", R"__()__"},
    // open
    {"open",
     R"__( [-rsCnkU] [-t cache] [-d discard] [-o options] [path] -- open the file specified by path)__",
     R"__(
 opens a new file in the requested mode

 Example:
 'open -n -o driver=raw /tmp/data' - opens raw data file read-write, uncached

 Opens a file for subsequent use by all of the other qemu-io commands.
 -r, -- open file read-only
 -s, -- use snapshot file
 -C, -- use copy-on-read
 -n, -- disable host cache, short for -t none
 -U, -- force shared permissions
 -k, -- use kernel AIO implementation (Linux only, prefer use of -i)
 -i, -- use AIO mode (threads, native or io_uring)
 -t, -- use the given cache mode for the image
 -d, -- use the given discard mode for the image
 -o, -- options to be given to the block driver
)__"},
    // quit
    {"quit", R"__( -- exit the program)__", R"__()__"},
    // read
    {"read",
     R"__( [-abCqv] [-P pattern [-s off] [-l len]] off len -- reads a number of bytes at a specified offset)__",
     R"__(
 reads a range of bytes from the given offset

 Example:
 'read -v 512 1k' - dumps 1 kilobyte read from 512 bytes into the file

 Reads a segment of the currently open file, optionally dumping it to the
 standard output stream (with -v option) for subsequent inspection.
 -b, -- read from the VM state rather than the virtual disk
 -C, -- report statistics in a machine parsable format
 -l, -- length for pattern verification (only with -P)
 -p, -- ignored for backwards compatibility
 -P, -- use a pattern to verify read data
 -q, -- quiet mode, do not show I/O statistics
 -s, -- start offset for pattern verification (only with -P)
 -v, -- dump buffer to standard output

)__"},
    // readv
    {"readv",
     R"__( [-Cqv] [-P pattern] off len [len..] -- reads a number of bytes at a specified offset)__",
     R"__(
 reads a range of bytes from the given offset into multiple buffers

 Example:
 'readv -v 512 1k 1k ' - dumps 2 kilobytes read from 512 bytes into the file

 Reads a segment of the currently open file, optionally dumping it to the
 standard output stream (with -v option) for subsequent inspection.
 Uses multiple iovec buffers if more than one byte range is specified.
 -C, -- report statistics in a machine parsable format
 -P, -- use a pattern to verify read data
 -v, -- dump buffer to standard output
 -q, -- quiet mode, do not show I/O statistics

)__"},
    // remove_break
    {"remove_break", R"__( tag -- remove a breakpoint by tag)__", R"__()__"},
    // reopen
    {"reopen", R"__( [(-r|-w)] [-c cache] [-o options] -- reopens an image with new options)__",
     R"__(
 Changes the open options of an already opened image

 Example:
 'reopen -o lazy-refcounts=on' - activates lazy refcount writeback on a qcow2 image

 -r, -- Reopen the image read-only
 -w, -- Reopen the image read-write
 -c, -- Change the cache mode to the given value
 -o, -- Changes block driver options (cf. 'open' command)

)__"},
    // resume
    {"resume", R"__( tag -- resumes the request tagged as tag)__", R"__()__"},
    // sigraise
    {"sigraise", R"__( signal -- raises a signal)__", R"__(
 raises the given signal

 Example:
 'sigraise 15' - raises SIGTERM

 Invokes raise(signal), where "signal" is the mandatory integer argument
 given to sigraise.

)__"},
    // sleep
    {"sleep", R"__( -- waits for the given value in milliseconds)__", R"__()__"},
    // truncate
    {"truncate", R"__( [-m prealloc_mode] off -- truncates the current file at the given offset)__",
     R"__()__"},
    // wait_break
    {"wait_break", R"__( tag -- waits for the suspension of a request)__", R"__()__"},
    // write
    {"write",
     R"__( [-bcCfnquz] [-P pattern | -s source_file] off len -- writes a number of bytes at a specified offset)__",
     R"__(
 writes a range of bytes from the given offset

 Example:
 'write 512 1k' - writes 1 kilobyte at 512 bytes into the open file

 Writes into a segment of the currently open file, using a buffer
 filled with a set pattern (0xcdcdcdcd).
 -b, -- write to the VM state rather than the virtual disk
 -c, -- write compressed data with blk_write_compressed
 -f, -- use Force Unit Access semantics
 -n, -- with -z, don't allow slow fallback
 -p, -- ignored for backwards compatibility
 -P, -- use different pattern to fill file
 -s, -- use a pattern file to fill the write buffer
 -C, -- report statistics in a machine parsable format
 -q, -- quiet mode, do not show I/O statistics
 -u, -- with -z, allow unmapping
 -z, -- write zeroes using blk_co_pwrite_zeroes

)__"},
    // writev
    {"writev",
     R"__( [-Cfq] [-P pattern] off len [len..] -- writes a number of bytes at a specified offset)__",
     R"__(
 writes a range of bytes from the given offset source from multiple buffers

 Example:
 'writev 512 1k 1k' - writes 2 kilobytes at 512 bytes into the open file

 Writes into a segment of the currently open file, using a buffer
 filled with a set pattern (0xcdcdcdcd).
 -P, -- use different pattern to fill file
 -C, -- report statistics in a machine parsable format
 -f, -- use Force Unit Access semantics
 -q, -- quiet mode, do not show I/O statistics

)__"},
};

}  // namespace

const IoHelpText* find_io_help(std::string_view name) {
  for (const IoHelpText& h : kHelp) {
    if (h.name == name) return &h;
  }
  return nullptr;
}

const IoHelpText* io_help_begin() { return kHelp; }
const IoHelpText* io_help_end() { return kHelp + sizeof(kHelp) / sizeof(kHelp[0]); }

}  // namespace qblock::tools
