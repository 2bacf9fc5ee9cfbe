// TempDir implementation for the unit tests (src/block/test_util.h).
#include "block/test_util.h"

#include <stdlib.h>

#include <filesystem>

namespace qblock::testing {

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "qblock-test-XXXXXX").string();
  char* made = mkdtemp(pattern.data());
  path_ = made ? made : "";
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!path_.empty()) std::filesystem::remove_all(path_, ec);
}

}  // namespace qblock::testing
