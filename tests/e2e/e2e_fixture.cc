#include "tests/e2e/e2e_fixture.h"

#include <curl/curl.h>
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

namespace vmlet::testing {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

constexpr milliseconds kPoll{25};
// When a test fails, TearDown prints the end of this many VM files at most
// (a test with hundreds of VMs would drown the log otherwise).
constexpr int kMaxFilesShownOnFailure = 12;

}  // namespace

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

void WriteFileAtomically(const std::string& path, const std::string& content) {
  const fs::path target(path);
  const fs::path temp = target.parent_path() / ("." + target.filename().string() + ".tmp");
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out << content;
  }
  fs::rename(temp, target);
}

bool WaitFor(milliseconds timeout, const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(kPoll);
  }
}

const Guest& TestGuest() {
  static const Guest guest = [] {
    const std::string cmd = std::string(VMLET_SOURCE_DIR) + "/tests/guest/build-guest";
    FILE* pipe = ::popen(cmd.c_str(), "r");
    if (pipe == nullptr) return Guest{"", "", "cannot run " + cmd};
    std::vector<std::string> lines;
    char buf[4096];
    while (std::fgets(buf, sizeof buf, pipe) != nullptr) {
      std::string line(buf);
      while (!line.empty() && line.back() == '\n') line.pop_back();
      lines.push_back(line);
    }
    const int status = ::pclose(pipe);
    if (status != 0 || lines.size() != 2) {
      return Guest{"", "", cmd + " failed (status " + std::to_string(status) + ")"};
    }
    return Guest{lines[0], lines[1], ""};
  }();
  return guest;
}

namespace {

size_t AppendToString(char* data, size_t size, size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}

}  // namespace

HttpReply HttpGet(const std::string& url, const std::string& unix_socket) {
  HttpReply reply;
  CURL* curl = curl_easy_init();
  if (curl == nullptr) {
    reply.error = "curl_easy_init failed";
    return reply;
  }
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  if (!unix_socket.empty()) curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, unix_socket.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &AppendToString);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &reply.body);
  const CURLcode code = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply.status);
  curl_easy_cleanup(curl);
  if (code != CURLE_OK) reply.error = curl_easy_strerror(code);
  return reply;
}

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

void E2eTest::SetUp() {
  ASSERT_EQ(TestGuest().error, "");
  char dir[] = "/tmp/vmlet-e2e-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  tmp_ = dir;
  manifests_ = tmp_ + "/manifests";
  state_ = tmp_ + "/state";
  fs::create_directories(manifests_);
  ASSERT_EQ(backend_->Prepare(tmp_), "");
}

void E2eTest::TearDown() {
  vmlet_.KillAndReap();
  if (tmp_.empty()) return;  // SetUp failed before making it: nothing of ours runs
  if (HasFailure()) {
    for (const std::string& log : logs_) {
      std::cerr << "---- last lines of " << log << " ----\n" << TailOfFile(log, 60);
    }
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
  // Every VMM and sidecar this test's vmlet started names this test's
  // directory; so does nothing else.
  for (pid_t pid : PidsNaming(tmp_)) ::kill(pid, SIGKILL);
  EXPECT_TRUE(WaitFor(seconds(30), [&] { return PidsNaming(tmp_).empty(); }))
      << PidsNaming(tmp_).size() << " processes naming " << tmp_ << " outlived SIGKILL";
  for (auto& p : others_) p->KillAndReap();
  std::error_code ignored;
  fs::remove_all(tmp_, ignored);
}

std::string E2eTest::ManifestPath(const api::VmKey& key) const {
  return manifests_ + "/" + key.ns + "-" + key.name + ".yaml";
}

std::string E2eTest::VmDir(const api::VmKey& key) const {
  return state_ + "/vms/" + key.ns + "/" + key.name;
}

std::string E2eTest::Manifest(const api::VmKey& key, const std::string& extra) const {
  return "apiVersion: vmlet.dev/v1alpha1\n"
         "kind: VirtualMachine\n"
         "metadata:\n"
         "  name: " +
         key.name +
         "\n"
         "  namespace: " +
         key.ns +
         "\n"
         "spec:\n"
         "  kernel: " +
         backend_->Kernel(TestGuest().kernel) +
         "\n"
         "  initramfs: " +
         backend_->Initramfs(TestGuest().initramfs) +
         "\n"
         "  memoryMb: 256\n"
         "  stopGracePeriodSeconds: 60\n" +
         backend_->ManifestSpecLines() + extra;
}

void E2eTest::WriteManifest(const api::VmKey& key, const std::string& content) {
  WriteFileAtomically(ManifestPath(key), content);
}

void E2eTest::StartVmlet(const std::vector<std::string>& extra_flags) {
  const std::string log = tmp_ + "/vmlet-" + std::to_string(logs_.size() + 1) + ".log";
  logs_.push_back(log);
  std::vector<std::string> args = {"run",         "--manifests", manifests_, "--state-dir", state_,
                                   "--log-level", "debug",       "--resync", "5s"};
  if (std::find(extra_flags.begin(), extra_flags.end(), "--metrics-addr") == extra_flags.end()) {
    args.insert(args.end(), {"--metrics-addr", "off"});
  }
  // The read API's default port would collide with any other vmlet here.
  if (std::find(extra_flags.begin(), extra_flags.end(), "--api-addr") == extra_flags.end()) {
    args.insert(args.end(), {"--api-addr", "off"});
  }
  for (const std::string& flag : backend_->VmletFlags()) args.push_back(flag);
  for (const std::string& flag : extra_flags) args.push_back(flag);
  ASSERT_EQ(vmlet_.Start(VMLET_BINARY, args, log), "");
}

void E2eTest::StopVmlet(milliseconds timeout) {
  vmlet_.Signal(SIGTERM);
  std::optional<int> status = vmlet_.WaitForExit(timeout);
  ASSERT_TRUE(status.has_value()) << "vmlet did not exit within " << timeout.count()
                                  << " ms of SIGTERM";
}

json E2eTest::Status(const api::VmKey& key) const {
  return json::parse(ReadFile(VmDir(key) + "/status.json"), nullptr, false);
}

std::string E2eTest::Phase(const json& status) {
  return status.is_object() ? status.value("phase", "") : "";
}

pid_t E2eTest::VmmPid(const json& status) {
  if (!status.is_object() || !status.contains("vmm") || !status["vmm"].is_object()) return 0;
  return status["vmm"].value("pid", 0);
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
