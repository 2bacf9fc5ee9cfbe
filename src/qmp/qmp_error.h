// QMP's error reply (qmp-spec.rst, "error"): a class and a human description. qblock sends the
// classes and descriptions qemu-storage-daemon 7.2 sends for the same mistakes.
#pragma once

#include <string>
#include <tl/expected.hpp>
#include <utility>

#include "qblock/block_node.h"
#include "qblock/error.h"

namespace qblock::qmp {

struct QmpError {
  std::string error_class;  // "GenericError", "CommandNotFound", "DeviceNotFound"
  std::string desc;

  static QmpError generic(std::string desc) { return {"GenericError", std::move(desc)}; }
  static QmpError command_not_found(std::string desc) {
    return {"CommandNotFound", std::move(desc)};
  }
  static QmpError device_not_found(std::string desc) { return {"DeviceNotFound", std::move(desc)}; }
  // A library error as QEMU reports it: GenericError with the error's message.
  static QmpError from(const Error& e) { return generic(e.message()); }
  // The same without the message's hint (a second line after '\n', which qemu-img prints and
  // QMP leaves out).
  static QmpError from_without_hint(const Error& e) {
    std::string desc = e.message();
    if (std::size_t nl = desc.find('\n'); nl != std::string::npos) desc.resize(nl);
    return generic(std::move(desc));
  }
};

// What a command handler returns: the "return" value (an object, or an array for queries).
using CommandResult = tl::expected<Options, QmpError>;

inline tl::unexpected<QmpError> qmp_fail(QmpError e) {
  return tl::unexpected<QmpError>(std::move(e));
}

}  // namespace qblock::qmp
