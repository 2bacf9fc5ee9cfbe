// NBD protocol constants and wire helpers (the NBD project's proto.md: fixed newstyle
// negotiation, simple and structured replies, block status). All integers on the wire are
// big-endian.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace qblock::nbd {

// Handshake.
inline constexpr uint64_t kNbdMagic = 0x4e42444d41474943;     // "NBDMAGIC"
inline constexpr uint64_t kOptionMagic = 0x49484156454F5054;  // "IHAVEOPT"
inline constexpr uint64_t kOptionReplyMagic = 0x3e889045565a9;
inline constexpr uint16_t kFlagFixedNewstyle = 1 << 0;  // server handshake flags
inline constexpr uint16_t kFlagNoZeroes = 1 << 1;
inline constexpr uint32_t kClientFixedNewstyle = 1 << 0;  // client flags
inline constexpr uint32_t kClientNoZeroes = 1 << 1;

// Options.
enum Option : uint32_t {
  kOptExportName = 1,
  kOptAbort = 2,
  kOptList = 3,
  kOptStartTls = 5,
  kOptInfo = 6,
  kOptGo = 7,
  kOptStructuredReply = 8,
  kOptListMetaContext = 9,
  kOptSetMetaContext = 10,
};

// Option replies.
enum OptionReply : uint32_t {
  kRepAck = 1,
  kRepServer = 2,
  kRepInfo = 3,
  kRepMetaContext = 4,
  kRepErrUnsup = 0x80000001,
  kRepErrPolicy = 0x80000002,
  kRepErrInvalid = 0x80000003,
  kRepErrPlatform = 0x80000004,
  kRepErrTlsReqd = 0x80000005,
  kRepErrUnknown = 0x80000006,
  kRepErrShutdown = 0x80000007,
  kRepErrBlockSizeReqd = 0x80000008,
  kRepErrTooBig = 0x80000009,
};

// NBD_INFO_* items of NBD_REP_INFO.
enum InfoType : uint16_t {
  kInfoExport = 0,
  kInfoName = 1,
  kInfoDescription = 2,
  kInfoBlockSize = 3,
};

// Transmission flags.
enum TransmissionFlag : uint16_t {
  kTxHasFlags = 1 << 0,
  kTxReadOnly = 1 << 1,
  kTxSendFlush = 1 << 2,
  kTxSendFua = 1 << 3,
  kTxRotational = 1 << 4,
  kTxSendTrim = 1 << 5,
  kTxSendWriteZeroes = 1 << 6,
  kTxSendDf = 1 << 7,
  kTxCanMultiConn = 1 << 8,
  kTxSendResize = 1 << 9,
  kTxSendCache = 1 << 10,
  kTxSendFastZero = 1 << 11,
};

// Requests.
inline constexpr uint32_t kRequestMagic = 0x25609513;
inline constexpr uint32_t kSimpleReplyMagic = 0x67446698;
inline constexpr uint32_t kStructuredReplyMagic = 0x668e33ef;
inline constexpr std::size_t kRequestHeaderBytes = 28;

enum Command : uint16_t {
  kCmdRead = 0,
  kCmdWrite = 1,
  kCmdDisc = 2,
  kCmdFlush = 3,
  kCmdTrim = 4,
  kCmdCache = 5,
  kCmdWriteZeroes = 6,
  kCmdBlockStatus = 7,
};

enum CommandFlag : uint16_t {
  kCmdFlagFua = 1 << 0,
  kCmdFlagNoHole = 1 << 1,
  kCmdFlagDf = 1 << 2,
  kCmdFlagReqOne = 1 << 3,
  kCmdFlagFastZero = 1 << 4,
};

// Structured reply chunks.
inline constexpr uint16_t kReplyFlagDone = 1 << 0;
enum ReplyType : uint16_t {
  kReplyNone = 0,
  kReplyOffsetData = 1,
  kReplyOffsetHole = 2,
  kReplyBlockStatus = 5,
  kReplyError = 0x8001,
  kReplyErrorOffset = 0x8002,
};

// base:allocation extent flags.
inline constexpr uint32_t kStateHole = 1 << 0;
inline constexpr uint32_t kStateZero = 1 << 1;

// Error values on the wire.
enum WireError : uint32_t {
  kErrPerm = 1,
  kErrIo = 5,
  kErrNoMem = 12,
  kErrInval = 22,
  kErrNoSpc = 28,
  kErrOverflow = 75,
  kErrNotSup = 95,
  kErrShutdown = 108,
};

// Maps an errno to the NBD error sent for it (EINVAL for anything the protocol lacks).
constexpr uint32_t wire_error(int errnum) {
  switch (errnum) {
    case EPERM:
    case EROFS: return kErrPerm;
    case EIO: return kErrIo;
    case ENOMEM: return kErrNoMem;
    case ENOSPC:
    case EDQUOT:
    case EFBIG: return kErrNoSpc;
    case EOVERFLOW: return kErrOverflow;
    case ENOTSUP: return kErrNotSup;
    case ESHUTDOWN: return kErrShutdown;
    default: return kErrInval;
  }
}

// Limits the server enforces.
inline constexpr uint32_t kMaxPayloadBytes = 32 * 1024 * 1024;  // NBD_MAX_BUFFER_SIZE
inline constexpr uint32_t kMaxOptionBytes = 64 * 1024;          // larger options: disconnect
inline constexpr uint32_t kMaxStringBytes = 4096;               // names, queries (proto.md)

// Meta contexts the server offers, and the ids it hands out for them.
inline constexpr char kContextBaseAllocation[] = "base:allocation";
inline constexpr char kContextAllocationDepth[] = "qemu:allocation-depth";
enum ContextId : uint32_t { kContextIdBaseAllocation = 1, kContextIdAllocationDepth = 2 };
// qemu:dirty-bitmap:NAME, the export's i-th bitmap, has context id kContextIdFirstBitmap + i.
inline constexpr char kContextDirtyBitmapPrefix[] = "qemu:dirty-bitmap:";
inline constexpr uint32_t kContextIdFirstBitmap = 3;
inline constexpr uint32_t kStateDirty = 1;

}  // namespace qblock::nbd
