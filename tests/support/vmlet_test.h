#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "api/vm_key.h"
#include "tests/support/temp_dir.h"
#include "tests/support/vmlet_process.h"

namespace vmlet::testing {

// The base of every test that runs `vmlet run` as a process: a temporary
// directory of the test's own (manifests/ in it, state/ for vmlet), one vmlet
// at a time, and what an operator reads of the result (status.json).
// TearDown ends vmlet and every process in `others_` by their recorded pids;
// when the test failed, it first prints the end of every vmlet log. The
// directory goes with the fixture.
class VmletTest : public ::testing::Test {
 protected:
  // `purpose` names the temporary directory; `vmlet_binary` is what runs.
  VmletTest(std::string_view purpose, std::string vmlet_binary);

  void TearDown() override;

  // Where the manifest of `key` goes: manifests/<namespace>/<name>.yaml.
  virtual std::string ManifestPath(const api::VmKey& key) const;
  // state/vms/<namespace>/<name>.
  std::string VmDir(const api::VmKey& key) const;
  // Writes the manifest of `key` atomically (a failure is a test failure).
  void WriteManifest(const api::VmKey& key, const std::string& content);

  // A new log file name in the temporary directory, vmlet-<n>.log, recorded
  // in logs_ (TearDown prints it when the test failed).
  std::string NewLog();
  // Starts `vmlet run --manifests <manifests> --state-dir <state>` followed
  // by `args`, logging to NewLog(). A failure to start is a fatal failure.
  void StartVmletRun(const std::vector<std::string>& args);

  // status.json of `key` (a discarded value when it cannot be read or parsed).
  nlohmann::json Status(const api::VmKey& key) const;
  // Its phase ("" when none) and its VMM's pid (0 when none).
  static std::string Phase(const nlohmann::json& status);
  static pid_t VmmPid(const nlohmann::json& status);

  const TempDir tmp_dir_;
  const std::string tmp_ = tmp_dir_.path();
  const std::string manifests_ = tmp_ + "/manifests";
  const std::string state_ = tmp_ + "/state";
  const std::string vmlet_binary_;
  VmletProcess vmlet_;
  std::vector<std::unique_ptr<VmletProcess>> others_;  // non-vmlet processes a test started
  std::vector<std::string> logs_;
  size_t log_lines_shown_on_failure_ = 60;
};

}  // namespace vmlet::testing
