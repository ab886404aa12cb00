#include "tests/support/temp_dir.h"

#include <stdlib.h>

#include <cerrno>
#include <filesystem>
#include <system_error>
#include <vector>

namespace vmlet::testing {

TempDir::TempDir(std::string_view purpose) {
  std::string pattern = "/tmp/vmlet-" + std::string(purpose) + "-XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (::mkdtemp(buffer.data()) == nullptr) {
    throw std::system_error(errno, std::generic_category(), "mkdtemp " + pattern);
  }
  path_ = buffer.data();
}

namespace {

// Gives the owner every permission on `dir` and on every directory below it,
// so that remove_all can enter them: a test may leave a directory it made
// unreadable (mode 0) behind, which only root could remove as it is.
void OpenForRemoval(const std::filesystem::path& dir) {
  std::error_code ignored;
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::add, ignored);
  for (const auto& entry : std::filesystem::directory_iterator(dir, ignored)) {
    if (entry.is_directory(ignored) && !entry.is_symlink(ignored)) OpenForRemoval(entry.path());
  }
}

}  // namespace

TempDir::~TempDir() {
  OpenForRemoval(path_);
  std::error_code ignored;  // a destructor reports nothing; what is left is in /tmp
  std::filesystem::remove_all(path_, ignored);
}

std::string TempDir::operator/(std::string_view relative) const {
  return path_ + "/" + std::string(relative);
}

}  // namespace vmlet::testing
