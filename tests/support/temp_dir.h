#pragma once

#include <string>
#include <string_view>

namespace vmlet::testing {

// A directory of one test's own under /tmp, made by the constructor
// (mkdtemp: a fresh name, mode 0700) and removed with everything in it by the
// destructor. A fixture holds one as a member, so that it outlives what the
// test puts in it and goes away even when the test fails.
//
// Throws std::system_error when the directory cannot be made (gtest reports
// that as a failure of the test that constructed it).
class TempDir {
 public:
  // Makes /tmp/vmlet-`purpose`-XXXXXX.
  explicit TempDir(std::string_view purpose = "test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // `relative` under the directory (no check that it exists).
  std::string operator/(std::string_view relative) const;

 private:
  std::string path_;
};

}  // namespace vmlet::testing
