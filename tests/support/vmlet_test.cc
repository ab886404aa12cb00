#include "tests/support/vmlet_test.h"

#include <filesystem>
#include <iostream>

#include "tests/support/files.h"

namespace vmlet::testing {

VmletTest::VmletTest(std::string_view purpose, std::string vmlet_binary)
    : tmp_dir_(purpose), vmlet_binary_(std::move(vmlet_binary)) {
  std::filesystem::create_directories(manifests_);
}

void VmletTest::TearDown() {
  vmlet_.KillAndReap();
  if (HasFailure()) {
    for (const std::string& log : logs_) {
      std::cerr << "---- last lines of " << log << " ----\n"
                << TailOfFile(log, log_lines_shown_on_failure_);
    }
  }
  for (auto& process : others_) process->KillAndReap();
}

std::string VmletTest::ManifestPath(const api::VmKey& key) const {
  return manifests_ + "/" + key.ns + "/" + key.name + ".yaml";
}

std::string VmletTest::VmDir(const api::VmKey& key) const {
  return state_ + "/vms/" + key.ns + "/" + key.name;
}

void VmletTest::WriteManifest(const api::VmKey& key, const std::string& content) {
  EXPECT_TRUE(WriteFileAtomically(ManifestPath(key), content)) << ManifestPath(key);
}

std::string VmletTest::NewLog() {
  logs_.push_back(tmp_ + "/vmlet-" + std::to_string(logs_.size() + 1) + ".log");
  return logs_.back();
}

void VmletTest::StartVmletRun(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"run", "--manifests", manifests_, "--state-dir", state_};
  argv.insert(argv.end(), args.begin(), args.end());
  ASSERT_EQ(vmlet_.Start(vmlet_binary_, argv, NewLog()), "");
}

nlohmann::json VmletTest::Status(const api::VmKey& key) const {
  return nlohmann::json::parse(ReadFile(VmDir(key) + "/status.json"), nullptr,
                               /*allow_exceptions=*/false);
}

std::string VmletTest::Phase(const nlohmann::json& status) {
  return status.is_object() ? status.value("phase", "") : "";
}

pid_t VmletTest::VmmPid(const nlohmann::json& status) {
  if (!status.is_object() || !status.contains("vmm") || !status["vmm"].is_object()) return 0;
  return status["vmm"].value("pid", 0);
}

}  // namespace vmlet::testing
