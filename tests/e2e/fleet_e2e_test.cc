// End to end, a fleet: three `vmlet run` processes (nodes n1, n2,
// n3, each with a state directory of its own, all with --require-node-name),
// one bare Git repository on local disk, and the shipped sync script
// (deploy/sync/vmlet-sync) per node, run by the test after every push as a
// timer would run it in production: it points the node's --manifests symlink
// at a checkout of the pushed commit. Real QEMU VMs of the test guest.
//
// What an operator would check is checked the way they would: each node's
// status.json and events.jsonl, vmlet's log, and /proc. While a change
// spreads over the fleet, a thread samples every node's VMs (and the QEMU
// processes on the shared disk) every 15 ms, so "at no moment" means "at no
// sampled moment".

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api/vm_key.h"
#include "drivers/host/linux_proc_fs.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/e2e/vmm_backend.h"
#include "tests/support/temp_dir.h"
#include "tests/support/vmlet_process.h"

namespace vmlet::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kGit[] = "/usr/bin/git";
constexpr char kNamespace[] = "default";
// A git command or a sync of a local repository takes well under a second.
constexpr seconds kCommandTimeout{60};
// A node reading a new commit and writing what it makes of it.
constexpr seconds kSettleTimeout{30};
// A graceful stop (the guest powers off in about a second) and the cleanup.
constexpr seconds kStopTimeout{60};
// How often the sampler looks at every node.
constexpr milliseconds kSampleEvery{15};

std::string SyncScript() { return std::string(VMLET_SOURCE_DIR) + "/deploy/sync/vmlet-sync"; }

// The 1-based number of the first line of `text` that starts with `prefix`
// (0 when none does).
int LineOf(const std::string& text, const std::string& prefix) {
  std::istringstream lines(text);
  int number = 0;
  for (std::string line; std::getline(lines, line);) {
    ++number;
    if (line.rfind(prefix, 0) == 0) return number;
  }
  return 0;
}

// The reasons of the events in an events.jsonl.
std::vector<std::string> EventReasons(const std::string& events_jsonl) {
  std::istringstream lines(events_jsonl);
  std::vector<std::string> reasons;
  for (std::string line; std::getline(lines, line);) {
    const json event = json::parse(line, nullptr, false);
    if (event.is_object()) reasons.push_back(event.value("reason", ""));
  }
  return reasons;
}

// A member of status.json (`fallback` when there is no such status).
template <typename T>
T Field(const json& status, const std::string& name, T fallback) {
  return status.is_object() ? status.value(name, fallback) : fallback;
}

std::string ConditionMessage(const json& status, const std::string& type) {
  if (!status.is_object() || !status.contains("conditions")) return "";
  for (const json& c : status["conditions"]) {
    if (c.value("type", "") == type) return c.value("message", "");
  }
  return "";
}

bool IsRunningPhase(const std::string& phase) { return phase == "Running" || phase == "Ready"; }

// What one node shows of one VM: its status.json's phase and VMM pid.
struct VmView {
  std::string phase;
  pid_t pid = 0;
  bool operator==(const VmView&) const = default;
};
// Every VM directory of a node, by VM name.
using NodeVms = std::map<std::string, VmView>;

std::string ToString(const NodeVms& vms) {
  std::string text = "{";
  for (const auto& [name, view] : vms) {
    text += " " + name + ":" + view.phase + "/pid " + std::to_string(view.pid);
  }
  return text + " }";
}

// Calls `check` every kSampleEvery on a thread of its own until Stop(), and
// keeps what it found wrong ("" is a sample without fault). `check` must be
// safe to call from that thread while the test thread goes on.
class Sampler {
 public:
  explicit Sampler(std::function<std::string()> check)
      : check_(std::move(check)), thread_([this] { Loop(); }) {}
  ~Sampler() { Stop(); }
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int samples() const { return samples_; }
  // The first distinct faults (at most kKept), each with when it was first
  // and last seen in a row (ms since the start).
  std::string Faults() const {
    std::lock_guard lock(mu_);
    std::string text;
    for (const Fault& f : faults_) {
      text += "\n  +" + std::to_string(f.first_ms) + " ms";
      if (f.samples > 1) {
        text +=
            " to +" + std::to_string(f.last_ms) + " ms (" + std::to_string(f.samples) + " samples)";
      }
      text += ": " + f.what;
    }
    if (dropped_ > 0) text += "\n  ... and " + std::to_string(dropped_) + " more";
    return text;
  }
  bool clean() const {
    std::lock_guard lock(mu_);
    return faults_.empty();
  }

 private:
  static constexpr size_t kKept = 10;
  struct Fault {
    std::string what;
    int64_t first_ms = 0, last_ms = 0;
    int samples = 0;
  };

  void Loop() {
    const auto start = std::chrono::steady_clock::now();
    while (!stop_) {
      const std::string fault = check_();
      ++samples_;
      if (!fault.empty()) {
        const int64_t at =
            std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start)
                .count();
        std::lock_guard lock(mu_);
        if (!faults_.empty() && faults_.back().what == fault) {
          faults_.back().last_ms = at;
          ++faults_.back().samples;
        } else if (faults_.size() < kKept) {
          faults_.push_back(Fault{fault, at, at, 1});
        } else {
          ++dropped_;
        }
      }
      std::this_thread::sleep_for(kSampleEvery);  // the sampling period, not a wait for anything
    }
  }

  const std::function<std::string()> check_;
  std::atomic<bool> stop_{false};
  std::atomic<int> samples_{0};
  mutable std::mutex mu_;
  std::vector<Fault> faults_;  // guarded by mu_
  int dropped_ = 0;            // guarded by mu_
  std::thread thread_;         // last: starts once the rest is built
};

// One node: a vmlet with a state directory of its own, whose --manifests is
// the symlink its own vmlet-sync (with a cache of its own) swaps.
struct Node {
  std::string name;
  std::string state;  // vmlet's --state-dir
  std::string link;   // vmlet's --manifests; vmlet-sync's --link
  std::string cache;  // vmlet-sync's --cache
  std::string log;    // vmlet's log
  std::unique_ptr<VmletProcess> vmlet = std::make_unique<VmletProcess>();

  std::string VmDir(const std::string& vm) const { return state + "/vms/" + kNamespace + "/" + vm; }
};

class FleetE2eTest : public E2eTest {
 protected:
  FleetE2eTest() : E2eTest(MakeQemuBackend()) {}

  void SetUp() override {
    E2eTest::SetUp();
    if (HasFatalFailure()) return;
    repo_ = tmp_ + "/fleet.git";
    work_ = tmp_ + "/work";
    shared_ = tmp_ + "/shared";
    commands_log_ = tmp_ + "/commands.log";
    logs_.push_back(commands_log_);
    fs::create_directories(work_ + "/vms");
    fs::create_directories(shared_);
    for (size_t i = 0; i < nodes_.size(); ++i) {
      Node& node = nodes_[i];
      node.name = "n" + std::to_string(i + 1);
      const std::string dir = tmp_ + "/" + node.name;
      node.state = dir + "/state";
      node.link = dir + "/manifests";
      node.cache = dir + "/sync";
      node.log = dir + "/vmlet.log";
      fs::create_directories(dir);
      logs_.push_back(node.log);
    }
  }

  void TearDown() override {
    if (HasFailure() && !tmp_.empty()) PrintNodes();
    for (Node& node : nodes_) node.vmlet->KillAndReap();
    E2eTest::TearDown();  // the logs' tails, every process naming tmp_, the directory
  }

  // Runs `binary` with `args` to its end (killed after kCommandTimeout).
  CommandResult Run(const std::string& binary, const std::vector<std::string>& args) {
    {
      std::ofstream log(commands_log_, std::ios::app);
      log << "$ " << binary;
      for (const std::string& arg : args) log << " " << arg;
      log << "\n";
    }
    return RunToExit(binary, args, commands_log_, kCommandTimeout);
  }

  // "" when `git args...` succeeded, else what it said.
  std::string Git(const std::vector<std::string>& args) {
    const CommandResult r = Run(kGit, args);
    if (r.exit_code == 0) return "";
    std::string line = "git";
    for (const std::string& arg : args) line += " " + arg;
    return line + " exited " + std::to_string(r.exit_code) + ": " + r.output;
  }

  // The manifest of the test guest named `vm` on `node_name` ("": none),
  // with `extra` appended to its spec.
  std::string VmManifest(const std::string& vm, const std::string& node_name,
                         const std::string& extra = "") const {
    return Manifest(api::VmKey{kNamespace, vm},
                    (node_name.empty() ? "" : "  nodeName: " + node_name + "\n") + extra);
  }
  std::string ManifestInRepo(const std::string& vm) const { return work_ + "/vms/" + vm + ".yaml"; }
  void WriteVm(const std::string& vm, const std::string& content) {
    WriteFileAtomically(ManifestInRepo(vm), content);
  }

  // Commits everything in the work tree and pushes it to the bare repository.
  std::string CommitAndPush(const std::string& message) {
    for (const std::vector<std::string>& args :
         {std::vector<std::string>{"-C", work_, "add", "-A"},
          std::vector<std::string>{"-C", work_, "-c", "user.name=t", "-c", "user.email=t@localhost",
                                   "-c", "commit.gpgsign=false", "commit", "--quiet", "-m",
                                   message},
          std::vector<std::string>{"-C", work_, "push", "--quiet", repo_,
                                   "HEAD:refs/heads/main"}}) {
      if (std::string error = Git(args); !error.empty()) return error;
    }
    return "";
  }

  // The timer's job: `vmlet-sync` for one node. "" when it swapped the link
  // to a new commit (every sync here follows a push), else what it said.
  std::string Sync(const Node& node) {
    const CommandResult r = Run(SyncScript(), {"--repo", repo_, "--link", node.link, "--path",
                                               "vms", "--cache", node.cache});
    if (r.exit_code == 0 &&
        r.output.find("vmlet-sync: " + node.link + " -> ") != std::string::npos) {
      return "";
    }
    return "vmlet-sync for " + node.name + " exited " + std::to_string(r.exit_code) + ": " +
           r.output;
  }
  std::string SyncAll() {
    for (const Node& node : nodes_) {
      if (std::string error = Sync(node); !error.empty()) return error;
    }
    return "";
  }

  void StartNode(Node& node) {
    std::vector<std::string> args = {"run",      "--manifests", node.link, "--state-dir",
                                     node.state, "--node-name", node.name, "--require-node-name"};
    // No metrics, no read API: their default ports would collide.
    args.insert(args.end(), {"--driver", "qemu", "--metrics-addr", "off", "--api-addr", "off"});
    args.insert(args.end(), {"--log-level", "debug", "--resync", "5s"});
    for (const std::string& flag : backend().VmletFlags()) args.push_back(flag);
    ASSERT_EQ(node.vmlet->Start(VMLET_BINARY, args, node.log), "");
  }

  static json NodeStatus(const Node& node, const std::string& vm) {
    return json::parse(ReadFile(node.VmDir(vm) + "/status.json"), nullptr, false);
  }

  // Every VM directory of the node, with its status (safe on any thread).
  static NodeVms Vms(const Node& node) {
    NodeVms vms;
    std::error_code ec;
    for (const auto& entry :
         fs::directory_iterator(node.state + "/vms/" + std::string(kNamespace), ec)) {
      const std::string vm = entry.path().filename();
      const json status = NodeStatus(node, vm);
      vms[vm] = VmView{Phase(status), VmmPid(status)};
    }
    return vms;
  }

  // Live QEMU processes whose QMP socket is in the VM's directory on `node`
  // (safe on any thread).
  static std::vector<pid_t> Qemus(const Node& node, const std::string& vm) {
    const std::string prefix = "unix:" + node.VmDir(vm) + "/";
    return PidsWithArgument([&](const std::string& arg) {
      return arg.rfind(prefix, 0) == 0 && arg.find("/qmp.sock,") != std::string::npos;
    });
  }

  static bool LogHas(const Node& node, const std::string& needle) {
    return ReadFile(node.log).find(needle) != std::string::npos;
  }

  bool WaitReady(const Node& node, const std::string& vm) {
    const bool ok = WaitFor(kBootTimeout, [&] { return Phase(NodeStatus(node, vm)) == "Ready"; });
    EXPECT_TRUE(ok) << vm << " never became Ready on " << node.name
                    << "; status: " << NodeStatus(node, vm).dump();
    return ok;
  }

  // Every node's VMs, for messages.
  std::string Fleet() const {
    std::string text;
    for (const Node& node : nodes_) text += "\n  " + node.name + ": " + ToString(Vms(node));
    return text;
  }

  // A sampler check: each node's VMs are exactly `baseline` (same names,
  // phases and VMM pids), except the (node index, VM) pairs in `free`.
  static std::string Unchanged(const std::array<Node, 3>& nodes,
                               const std::array<NodeVms, 3>& baseline,
                               const std::set<std::pair<size_t, std::string>>& free) {
    std::string faults;
    for (size_t i = 0; i < nodes.size(); ++i) {
      NodeVms now = Vms(nodes[i]);
      NodeVms before = baseline[i];
      for (const auto& [index, vm] : free) {
        if (index == i) {
          now.erase(vm);
          before.erase(vm);
        }
      }
      if (now != before) {
        faults += nodes[i].name + " has " + ToString(now) + ", had " + ToString(before) + "; ";
      }
    }
    return faults;
  }

  void PrintNodes() const {
    for (const Node& node : nodes_) {
      std::error_code ec;
      for (const auto& entry :
           fs::directory_iterator(node.state + "/vms/" + std::string(kNamespace), ec)) {
        const std::string dir = entry.path();
        std::cerr << "---- " << node.name << ": " << dir << "/status.json ----\n"
                  << ReadFile(dir + "/status.json") << "---- events.jsonl ----\n"
                  << TailOfFile(dir + "/events.jsonl", 15) << "---- serial.log ----\n"
                  << TailOfFile(dir + "/serial.log", 8) << "---- vmm.log ----\n"
                  << TailOfFile(dir + "/vmm.log", 5);
      }
    }
  }

  std::string repo_;    // the bare repository: the fleet's source of truth
  std::string work_;    // an operator's clone, where manifests are edited and committed
  std::string shared_;  // stands in for shared storage (every node sees the same files)
  std::string commands_log_;
  std::array<Node, 3> nodes_;
};

// Given one repository placing a on n1 (with a data disk on shared storage),
// b on n2 and c on n3, and each node syncing it: each VM runs on exactly its
// node. Moving a to n2 stops it on n1 and boots it on n2, never running on
// both (n2's first boot finds the disk locked and waits, without counting a
// restart). A commit that breaks b's manifest changes nothing anywhere but
// b's error status on n2; deleting c's manifest removes c from n3 only; and a
// manifest without nodeName is an error on every node, booted nowhere.
TEST_F(FleetE2eTest, EachVmRunsOnTheNodeItsManifestNamesAndMovesWithoutRunningTwice) {
  Node& n1 = nodes_[0];
  Node& n2 = nodes_[1];
  Node& n3 = nodes_[2];
  const std::string disk = shared_ + "/a-data.img";
  { std::ofstream(disk, std::ios::binary); }
  fs::resize_file(disk, 1 << 20);
  const std::string a_extra = "  dataDisk: " + disk + "\n";
  const std::string b_manifest = VmManifest("b", "n2");

  // 1. Placement.
  ASSERT_EQ(Git({"init", "--quiet", "--bare", "--initial-branch=main", repo_}), "");
  ASSERT_EQ(Git({"init", "--quiet", "--initial-branch=main", work_}), "");
  WriteFileAtomically(work_ + "/README", "The fleet's VMs, one manifest per VM under vms/.\n");
  WriteVm("a", VmManifest("a", "n1", a_extra));
  WriteVm("b", b_manifest);
  WriteVm("c", VmManifest("c", "n3"));
  ASSERT_EQ(CommitAndPush("a on n1, b on n2, c on n3"), "");
  ASSERT_EQ(SyncAll(), "");
  for (Node& node : nodes_) ASSERT_NO_FATAL_FAILURE(StartNode(node));
  ASSERT_TRUE(WaitReady(n1, "a"));
  ASSERT_TRUE(WaitReady(n2, "b"));
  ASSERT_TRUE(WaitReady(n3, "c"));
  const std::map<std::string, std::string> home = {{"a", "n1"}, {"b", "n2"}, {"c", "n3"}};
  for (const Node& node : nodes_) {
    const NodeVms vms = Vms(node);
    for (const auto& [vm, where] : home) {
      const std::vector<pid_t> qemus = Qemus(node, vm);
      if (where == node.name) {
        EXPECT_EQ(vms.count(vm), 1u) << node.name << " has " << ToString(vms);
        EXPECT_EQ(qemus, std::vector<pid_t>{VmmPid(NodeStatus(node, vm))})
            << vm << " on " << node.name;
      } else {
        EXPECT_EQ(vms.count(vm), 0u) << node.name << " has " << ToString(vms);
        EXPECT_TRUE(qemus.empty()) << vm << " has a QEMU on " << node.name;
      }
    }
    EXPECT_EQ(vms.size(), 1u) << node.name << " has " << ToString(vms);
  }
  ASSERT_FALSE(HasFailure()) << Fleet();
  const pid_t a_on_n1 = VmmPid(NodeStatus(n1, "a"));
  EXPECT_EQ(PidsNaming(shared_), std::vector<pid_t>{a_on_n1}) << "only a's QEMU opens the disk";
  const pid_t b_pid = VmmPid(NodeStatus(n2, "b"));
  const pid_t c_pid = VmmPid(NodeStatus(n3, "c"));

  // 2. Move a from n1 to n2. n2 syncs first, so its boot meets n1's QEMU
  // still holding the disk (QEMU's write lock) and must wait; only then does
  // n1 sync, stop its guest and clean up, after which n2's retry boots.
  //
  // Sampled all along: (1) never are both nodes' statuses Running or Ready;
  // (2) never do two guests execute with the disk attached. A QEMU that
  // fails the lock exists for a moment but its guest never runs, so
  // counting QEMU processes would count it; a guest that ran has written to
  // its serial log (the kernel's console), which that QEMU never does. So
  // (2) counts live QEMUs naming the disk whose serial log is not empty: it
  // fails if n2 ever booted a guest on the disk while n1's still ran (for
  // example were the lock ever bypassed), and never because of a lock
  // failure's short-lived QEMU.
  const auto move_start = std::chrono::steady_clock::now();
  WriteVm("a", VmManifest("a", "n2", a_extra));
  ASSERT_EQ(CommitAndPush("move a to n2"), "");
  std::atomic<int> most_qemus_on_disk{0};
  Sampler exclusion([&] {
    std::string fault;
    const std::string on_n1 = Phase(NodeStatus(n1, "a"));
    const std::string on_n2 = Phase(NodeStatus(n2, "a"));
    if (IsRunningPhase(on_n1) && IsRunningPhase(on_n2)) {
      fault += "a is " + on_n1 + " on n1 and " + on_n2 + " on n2; ";
    }
    drivers::LinuxProcFs proc;
    std::vector<std::string> guests;
    const std::vector<pid_t> qemus = PidsNaming(shared_);
    most_qemus_on_disk = std::max<int>(most_qemus_on_disk, static_cast<int>(qemus.size()));
    for (pid_t pid : qemus) {
      api::StatusOr<drivers::ProcessInfo> info = proc.ReadProcess(pid);
      if (!info.ok()) continue;
      const std::vector<std::string>& argv = info->cmdline;
      const auto serial = std::find(argv.begin(), argv.end(), "-serial");
      if (serial == argv.end() || serial + 1 == argv.end()) continue;
      const std::string path = (serial + 1)->substr(std::string("file:").size());
      std::error_code ec;
      if (fs::file_size(path, ec) > 0 && !ec) {
        guests.push_back("pid " + std::to_string(pid) + " (" + path + ")");
      }
    }
    if (guests.size() > 1) {
      fault += "guests running with the disk:";
      for (const std::string& g : guests) fault += " " + g;
    }
    return fault;
  });
  ASSERT_EQ(Sync(n2), "");
  // DiskLocked: an event, or the status's reason while it waits.
  auto disk_locked_on_n2 = [&] {
    const std::vector<std::string> reasons =
        EventReasons(ReadFile(n2.VmDir("a") + "/events.jsonl"));
    return std::count(reasons.begin(), reasons.end(), "DiskLocked") > 0 ||
           Field<std::string>(NodeStatus(n2, "a"), "reason", "").rfind("DiskLocked", 0) == 0;
  };
  EXPECT_TRUE(WaitFor(kSettleTimeout, disk_locked_on_n2))
      << "n2 never reported DiskLocked for a; status: " << NodeStatus(n2, "a").dump()
      << "\nevents: " << ReadFile(n2.VmDir("a") + "/events.jsonl");
  EXPECT_EQ(Phase(NodeStatus(n1, "a")), "Ready") << "n1 has not synced yet";
  EXPECT_EQ(VmmPid(NodeStatus(n1, "a")), a_on_n1);
  ASSERT_EQ(Sync(n1), "");
  EXPECT_TRUE(WaitFor(kStopTimeout, [&] { return !fs::exists(n1.VmDir("a")); }))
      << "a's state directory is still on n1; status: " << NodeStatus(n1, "a").dump();
  EXPECT_TRUE(Qemus(n1, "a").empty());
  EXPECT_FALSE(Alive(a_on_n1));
  ASSERT_TRUE(WaitReady(n2, "a"));
  exclusion.Stop();
  const auto move_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - move_start).count();
  std::cout << "[ fleet    ] the move took " << move_seconds << " s; " << exclusion.samples()
            << " samples; at most " << most_qemus_on_disk << " QEMU(s) naming the disk at once\n";
  EXPECT_TRUE(exclusion.clean()) << "during the move:" << exclusion.Faults();
  EXPECT_GT(exclusion.samples(), 10);
  const json a_status = NodeStatus(n2, "a");
  const pid_t a_on_n2 = VmmPid(a_status);
  EXPECT_EQ(Field(a_status, "restartCount", -1), 0) << "waiting for a locked disk is no restart";
  const std::vector<std::string> a_events = EventReasons(ReadFile(n2.VmDir("a") + "/events.jsonl"));
  EXPECT_GE(std::count(a_events.begin(), a_events.end(), "DiskLocked"), 1)
      << ReadFile(n2.VmDir("a") + "/events.jsonl");
  EXPECT_EQ(std::count(a_events.begin(), a_events.end(), "Crashed"), 0)
      << ReadFile(n2.VmDir("a") + "/events.jsonl");
  EXPECT_EQ(Qemus(n2, "a"), std::vector<pid_t>{a_on_n2});
  EXPECT_EQ(PidsNaming(shared_), std::vector<pid_t>{a_on_n2});
  // n1 pressed the power button and its guest powered off: vmlet's log keeps
  // the events of the VM directory it removed.
  EXPECT_TRUE(LogHas(n1, "name=a event=Stopping"));
  EXPECT_TRUE(LogHas(n1, "name=a event=Stopped the VMM exited as asked"))
      << "n1's guest must power off when asked";
  EXPECT_FALSE(LogHas(n1, "name=a event=Killed"));
  EXPECT_EQ(VmmPid(NodeStatus(n2, "b")), b_pid);
  EXPECT_EQ(VmmPid(NodeStatus(n3, "c")), c_pid);
  EXPECT_EQ(Phase(NodeStatus(n2, "b")), "Ready");
  EXPECT_EQ(Phase(NodeStatus(n3, "c")), "Ready");

  // 3. A commit that breaks b's manifest: n2 reports the error where it is,
  // and keeps b as it was; no VM appears, disappears or changes anywhere.
  const std::array<NodeVms, 3> settled = {Vms(n1), Vms(n2), Vms(n3)};
  ASSERT_EQ(settled[0], NodeVms{}) << Fleet();
  ASSERT_EQ(settled[1], (NodeVms{{"a", {"Ready", a_on_n2}}, {"b", {"Ready", b_pid}}})) << Fleet();
  ASSERT_EQ(settled[2], (NodeVms{{"c", {"Ready", c_pid}}})) << Fleet();
  const std::string broken = VmManifest("b", "n2", "  cpus: \"2\"\n");
  // The parser points at the value: column 9 of `  cpus: "2"`.
  const std::string error =
      "/b.yaml:" + std::to_string(LineOf(broken, "  cpus: ")) + ":9: spec.cpus: must be an integer";
  {
    Sampler unchanged([&] { return Unchanged(nodes_, settled, {}); });
    WriteVm("b", broken);
    ASSERT_EQ(CommitAndPush("b: cpus as a string"), "");
    ASSERT_EQ(SyncAll(), "");
    EXPECT_TRUE(
        WaitFor(kSettleTimeout,
                [&] {
                  return ConditionMessage(NodeStatus(n2, "b"), "ManifestValid").find(error) !=
                         std::string::npos;
                }))
        << "want ManifestValid False with \"..." << error
        << "\"; status: " << NodeStatus(n2, "b").dump();
    const json b_status = NodeStatus(n2, "b");
    EXPECT_EQ(ConditionStatus(b_status, "ManifestValid"), "False") << b_status.dump();
    EXPECT_EQ(Phase(b_status), "Ready");
    EXPECT_EQ(VmmPid(b_status), b_pid);
    // Every node read the commit (each logs a new manifest error once).
    for (const Node& node : nodes_) {
      EXPECT_TRUE(WaitFor(kSettleTimeout, [&] { return LogHas(node, error); }))
          << node.name << " never logged " << error;
    }
    EXPECT_EQ(Unchanged(nodes_, settled, {}), "");

    WriteVm("b", b_manifest);
    ASSERT_EQ(CommitAndPush("b: fixed"), "");
    ASSERT_EQ(SyncAll(), "");
    EXPECT_TRUE(WaitFor(kSettleTimeout, [&] {
      return ConditionStatus(NodeStatus(n2, "b"), "ManifestValid") == "True";
    })) << NodeStatus(n2, "b").dump();
    unchanged.Stop();
    EXPECT_TRUE(unchanged.clean()) << "while b's manifest was broken:" << unchanged.Faults();
  }
  // Whatever happened meanwhile, the next steps start from the settled fleet.
  ASSERT_TRUE(WaitFor(kSettleTimeout, [&] { return Unchanged(nodes_, settled, {}).empty(); }))
      << Fleet();

  // 4. Deleting c's manifest removes c from n3, and changes nothing else.
  {
    Sampler unchanged([&] { return Unchanged(nodes_, settled, {{2, "c"}}); });
    fs::remove(ManifestInRepo("c"));
    ASSERT_EQ(CommitAndPush("delete c"), "");
    ASSERT_EQ(SyncAll(), "");
    EXPECT_TRUE(WaitFor(kStopTimeout, [&] { return !fs::exists(n3.VmDir("c")); }))
        << "c's state directory is still on n3; status: " << NodeStatus(n3, "c").dump();
    EXPECT_TRUE(Qemus(n3, "c").empty());
    EXPECT_FALSE(Alive(c_pid));
    EXPECT_TRUE(LogHas(n3, "name=c event=Stopped the VMM exited as asked"));
    EXPECT_FALSE(LogHas(n3, "name=c event=Killed"));
    unchanged.Stop();
    EXPECT_TRUE(unchanged.clean()) << "while c was deleted:" << unchanged.Faults();
  }
  ASSERT_EQ(Vms(n3), NodeVms{}) << Fleet();

  // 5. --require-node-name: a manifest without nodeName is an error on every
  // node, naming spec.nodeName where it is missing; it boots nowhere.
  {
    std::array<NodeVms, 3> now = {Vms(n1), Vms(n2), Vms(n3)};
    Sampler unchanged([&, now] {
      std::string fault = Unchanged(nodes_, now, {{0, "d"}, {1, "d"}, {2, "d"}});
      for (const Node& node : nodes_) {
        if (!Qemus(node, "d").empty()) fault += "d has a QEMU on " + node.name + "; ";
      }
      return fault;
    });
    const std::string homeless = VmManifest("d", "");
    WriteVm("d", homeless);
    ASSERT_EQ(CommitAndPush("d, on no node"), "");
    ASSERT_EQ(SyncAll(), "");
    // A missing field is reported at its mapping: spec, whose first key
    // (kernel) is at column 3.
    const std::string missing = "/d.yaml:" + std::to_string(LineOf(homeless, "  kernel: ")) +
                                ":3: spec.nodeName: required here (--require-node-name)";
    for (const Node& node : nodes_) {
      EXPECT_TRUE(
          WaitFor(kSettleTimeout,
                  [&] {
                    return ConditionMessage(NodeStatus(node, "d"), "ManifestValid").find(missing) !=
                           std::string::npos;
                  }))
          << node.name << ": want ManifestValid False with \"..." << missing
          << "\"; status: " << NodeStatus(node, "d").dump();
      const json d_status = NodeStatus(node, "d");
      EXPECT_EQ(ConditionStatus(d_status, "ManifestValid"), "False");
      EXPECT_EQ(Phase(d_status), "Failed");
      EXPECT_EQ(VmmPid(d_status), 0);
      EXPECT_TRUE(WaitFor(kSettleTimeout, [&] { return LogHas(node, missing); }))
          << node.name << " never logged " << missing;
    }
    unchanged.Stop();
    EXPECT_TRUE(unchanged.clean()) << "after d was added:" << unchanged.Faults();
  }
}

// Given a manifest without nodeName, `vmlet validate --require-node-name`
// rejects it with the error at its spec (exit status 1), and accepts it
// again once it names a node; without the flag the manifest is valid.
TEST(FleetValidateTest, RequireNodeNameRejectsAManifestWithoutNodeName) {
  const TempDir tmp_dir("e2e");
  const std::string file = tmp_dir / "d.yaml";
  const std::string log = tmp_dir / "validate.log";
  const std::string manifest =
      "apiVersion: vmlet.dev/v1alpha1\n"
      "kind: VirtualMachine\n"
      "metadata:\n"
      "  name: d\n"
      "spec:\n"
      "  kernel: /var/lib/vmlet/images/vmlinuz\n";
  auto validate = [&](const std::vector<std::string>& args) {
    return RunToExit(VMLET_BINARY, args, log, kCommandTimeout);
  };

  WriteFileAtomically(file, manifest);
  CommandResult r = validate({"validate", "--require-node-name", file});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(
      r.output.find(file + ":6:3: spec.nodeName: required here (--require-node-name): a fleet "
                           "repository must name the host of every VM\n"),
      std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("0 valid VirtualMachines, 1 error\n"), std::string::npos) << r.output;

  r = validate({"validate", file});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("1 valid VirtualMachine, 0 errors\n"), std::string::npos) << r.output;

  WriteFileAtomically(file, manifest + "  nodeName: n1\n");
  r = validate({"validate", "--require-node-name", file});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("1 valid VirtualMachine, 0 errors\n"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace vmlet::testing
