#include "tests/e2e/e2e_fixture.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "drivers/host/linux_proc_fs.h"
#include "tests/support/manifest_builder.h"

namespace vmlet::testing {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

// When a test fails, TearDown prints the end of this many VM files at most
// (a test with hundreds of VMs would drown the log otherwise).
constexpr int kMaxFilesShownOnFailure = 12;

}  // namespace

std::vector<pid_t> PidsWithArgument(const std::function<bool(const std::string&)>& matches) {
  drivers::LinuxProcFs proc;
  std::vector<pid_t> found;
  api::StatusOr<std::vector<pid_t>> pids = proc.ListPids();
  if (!pids.ok()) return found;
  for (pid_t pid : *pids) {
    if (pid == ::getpid()) continue;
    api::StatusOr<drivers::ProcessInfo> info = proc.ReadProcess(pid);
    if (!info.ok() || info->state == 'Z') continue;
    if (std::any_of(info->cmdline.begin(), info->cmdline.end(), matches)) found.push_back(pid);
  }
  return found;
}

std::vector<pid_t> PidsNaming(const std::string& dir) {
  const std::string prefix = dir + "/";
  return PidsWithArgument(
      [&](const std::string& arg) { return arg.find(prefix) != std::string::npos; });
}

std::vector<pid_t> VirtiofsdPids(const std::string& dir) {
  drivers::LinuxProcFs proc;
  std::vector<pid_t> found;
  for (pid_t pid : PidsWithArgument([&](const std::string& arg) {
         return arg.find(dir + "/virtiofs-") != std::string::npos;
       })) {
    api::StatusOr<drivers::ProcessInfo> info = proc.ReadProcess(pid);
    if (info.ok() && !info->cmdline.empty() &&
        info->cmdline[0].find("virtiofsd") != std::string::npos) {
      found.push_back(pid);
    }
  }
  return found;
}

bool Alive(pid_t pid) {
  drivers::LinuxProcFs proc;
  api::StatusOr<drivers::ProcessInfo> info = proc.ReadProcess(pid);
  return info.ok() && info->state != 'Z';
}

std::string BackendParamName(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

void E2eTest::SetUp() {
  ASSERT_EQ(TestGuest().error, "");
  ASSERT_EQ(backend_->Prepare(tmp_), "");
}

void E2eTest::TearDown() {
  if (HasFailure()) {
    int shown = 0;
    std::error_code ec;
    for (const auto& entry : fs::recursive_directory_iterator(state_ + "/vms", ec)) {
      const std::string name = entry.path().filename();
      if (name != "serial.log" && name != "vmm.log" && name != "events.jsonl" &&
          name != "events.json") {
        continue;
      }
      if (++shown > kMaxFilesShownOnFailure) break;
      std::cerr << "---- last lines of " << entry.path() << " ----\n"
                << TailOfFile(entry.path(), 15);
    }
  }
  vmlet_.KillAndReap();
  // Every VMM and sidecar this test's vmlet started names this test's
  // directory; so does nothing else.
  for (pid_t pid : PidsNaming(tmp_)) ::kill(pid, SIGKILL);
  EXPECT_TRUE(WaitFor(seconds(30), [&] { return PidsNaming(tmp_).empty(); }))
      << PidsNaming(tmp_).size() << " processes naming " << tmp_ << " outlived SIGKILL";
  VmletTest::TearDown();
}

std::string E2eTest::ManifestPath(const api::VmKey& key) const {
  return manifests_ + "/" + key.ns + "-" + key.name + ".yaml";
}

std::string E2eTest::Manifest(const api::VmKey& key, const std::string& extra) const {
  return VmManifest(key, "  kernel: " + backend_->Kernel(TestGuest().kernel) +
                             "\n"
                             "  initramfs: " +
                             backend_->Initramfs(TestGuest().initramfs) +
                             "\n"
                             "  memoryMb: 256\n"
                             "  stopGracePeriodSeconds: 60\n" +
                             backend_->ManifestSpecLines() + extra);
}

pid_t E2eTest::BootToReady(const api::VmKey& key) {
  WriteManifest(key, Manifest(key));
  StartVmlet();
  if (HasFatalFailure() || !WaitPhase(key, "Ready", kBootTimeout)) return 0;
  const pid_t vmm = VmmPid(Status(key));
  EXPECT_GT(vmm, 0) << "a Ready VM without a VMM pid: " << Status(key).dump();
  return vmm;
}

E2eTest::SharedDirs E2eTest::WriteSharedDirsManifest(const api::VmKey& key) {
  const SharedDirs dirs{tmp_ + "/share-rw", tmp_ + "/share-ro"};
  fs::create_directories(dirs.rw);
  fs::create_directories(dirs.ro);
  WriteManifest(key, Manifest(key,
                              "  cmdline: \"console=ttyS0 panic=-1 vmlet.mount=rw vmlet.mount=ro "
                              "vmlet.write=rw vmlet.write=ro\"\n"
                              "  sharedDirs:\n"
                              "    - {hostPath: " +
                                  dirs.rw +
                                  ", tag: rw}\n"
                                  "    - {hostPath: " +
                                  dirs.ro + ", tag: ro, readOnly: true}\n"));
  return dirs;
}

void E2eTest::ExpectGuestWroteOnlyToTheReadWriteDir(const api::VmKey& key, const SharedDirs& dirs) {
  const std::string serial = ReadFile(VmDir(key) + "/serial.log");
  EXPECT_NE(serial.find("VMLET_WRITE rw ok"), std::string::npos) << serial;
  EXPECT_NE(serial.find("VMLET_WRITE ro failed"), std::string::npos) << serial;
  EXPECT_EQ(ReadFile(dirs.rw + "/written-by-guest"), "written by the guest\n");
  EXPECT_FALSE(fs::exists(dirs.ro + "/written-by-guest"));
}

void E2eTest::StartVmlet(const std::vector<std::string>& extra_flags) {
  std::vector<std::string> args = {"--log-level", "debug", "--resync", "5s"};
  if (std::find(extra_flags.begin(), extra_flags.end(), "--metrics-addr") == extra_flags.end()) {
    args.insert(args.end(), {"--metrics-addr", "off"});
  }
  // The read API's default port would collide with any other vmlet here.
  if (std::find(extra_flags.begin(), extra_flags.end(), "--api-addr") == extra_flags.end()) {
    args.insert(args.end(), {"--api-addr", "off"});
  }
  for (const std::string& flag : backend_->VmletFlags()) args.push_back(flag);
  for (const std::string& flag : extra_flags) args.push_back(flag);
  StartVmletRun(args);
}

void E2eTest::StopVmlet(milliseconds timeout) {
  vmlet_.Signal(SIGTERM);
  std::optional<int> status = vmlet_.WaitForExit(timeout);
  ASSERT_TRUE(status.has_value()) << "vmlet did not exit within " << timeout.count()
                                  << " ms of SIGTERM";
}

std::string E2eTest::ConditionStatus(const json& status, const std::string& type) {
  if (!status.is_object() || !status.contains("conditions")) return "";
  for (const json& c : status["conditions"]) {
    if (c.value("type", "") == type) return c.value("status", "");
  }
  return "";
}

std::string E2eTest::Events(const api::VmKey& key) const {
  return ReadFile(VmDir(key) + "/events.jsonl");
}

int E2eTest::CountEvents(const api::VmKey& key, const std::vector<std::string>& reasons) const {
  std::istringstream lines(Events(key));
  int count = 0;
  for (std::string line; std::getline(lines, line);) {
    const json event = json::parse(line, nullptr, false);
    if (!event.is_object()) continue;
    const std::string reason = event.value("reason", "");
    count += std::find(reasons.begin(), reasons.end(), reason) != reasons.end();
  }
  return count;
}

bool E2eTest::WaitPhase(const api::VmKey& key, const std::string& phase, milliseconds timeout) {
  const bool ok = WaitFor(timeout, [&] { return Phase(Status(key)) == phase; });
  EXPECT_TRUE(ok) << key.ns << "/" << key.name << " never reached " << phase
                  << "; status: " << Status(key).dump();
  return ok;
}

}  // namespace vmlet::testing
