// vmlet_bench_qemu: the real-VM figures from docs/design.md, "Goals", measured on the
// `vmlet run` daemon (started once, `--qemu-accel tcg`) booting the test guest
// that tests/guest/build-guest makes (256 MiB, 1 vCPU), against QEMU started
// by hand with the same command line. Writes the figures as JSON to argv[1]
// and prints them. It asserts nothing about time: the figures are for people
// and trend lines.
//
//   Usage: vmlet_bench_qemu OUT.json [--runs N]      (N defaults to 5)
//
//   manifest_to_ready_ms        rename of a new VM's manifest into the watched
//                               directory -> its status.json says phase Ready
//   raw_qemu_to_marker_ms       spawn of qemu-system-x86_64 with the arguments
//                               vmlet uses -> the complete line
//                               `VMRS_READY <ip>` read from its serial file
//   ready_ratio_of_medians      median(manifest_to_ready) / median(raw)
//   boot_duration_reported_*    the status' lastBootDurationSeconds: spawn ->
//                               marker on vmlet's own clock
//   manifest_to_ready_minus_reported_boot_ms
//                               what vmlet adds around the boot: manifest
//                               watcher, reconcile, spawn, status write
//   marker_to_status_ready_ms   the marker line complete in the VM's
//                               serial.log (read by this bench on inotify) ->
//                               status.json phase Ready
//   pause_ms / resume_ms        manifest rewritten with desiredState Paused /
//                               Running -> status.json phase Paused / Ready,
//                               each confirmed afterwards by QMP query-status
//   cpu_ms_per_boot             CPU time of vmlet, and of this bench, per boot
//
// The vmlet and raw runs alternate (vmlet, raw, vmlet, ...) so that a change in
// the host's load hits both alike; one unmeasured raw boot first warms the page
// cache (QEMU, its firmware, the guest). Every wait watches a directory with
// inotify and also wakes every 1 ms (status.json is stat'ed at each wake and
// parsed only when replaced), the same way for both kinds of run.
//
// The raw QEMU is spawned as vmlet spawns it: by PosixProcessLauncher, in a
// session of its own. That matters on a busy host with autogroup scheduling
// (kernel.sched_autogroup_enabled=1): a new session is a scheduling group of
// its own, and in one 6-against-6 trial here a TCG guest in one booted about
// a third slower than one left in this bench's session while other sessions
// compiled.
//
// Processes: vmlet is started by VmletProcess and each raw QEMU by the
// launcher; both are ended by the pid recorded at spawn. The QEMUs vmlet
// starts are stopped by vmlet (manifests deleted); only when the bench fails
// are the ones still alive, found by their command line naming this bench's
// temporary directory, SIGKILLed by pid. The temporary directory is removed.

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "drivers/host/linux_proc_fs.h"
#include "drivers/host/process_launcher.h"
#include "drivers/host/real_clock.h"
#include "drivers/qemu/qmp_client.h"
#include "tests/support/files.h"
#include "tests/support/manifest_builder.h"
#include "tests/support/test_guest.h"
#include "tests/support/vmlet_process.h"

namespace {

namespace fs = std::filesystem;
using namespace vmlet;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Steady = std::chrono::steady_clock;
using vmlet::testing::ReadFile;

constexpr char kQemu[] = "qemu-system-x86_64";  // found on PATH, as vmlet finds it
constexpr char kNamespace[] = "bench";
constexpr int kMemoryMb = 256;
constexpr int kCpus = 1;
constexpr char kCmdline[] = "console=ttyS0 panic=-1";  // vmlet's qemu default
constexpr milliseconds kTick{1};
constexpr seconds kBootTimeout{120};  // a TCG boot takes ~3 s; a loaded host is slower
constexpr seconds kStepTimeout{60};   // pause, resume, deletion

// Any failure ends the bench: main() catches it, cleans up and exits 1.
struct BenchFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};
[[noreturn]] void Fail(const std::string& what) { throw BenchFailure(what); }

double Ms(Steady::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }
double Round(double v, int digits = 3) {
  const double scale = std::pow(10.0, digits);
  return std::round(v * scale) / scale;
}

// Wakes its owner on any change in one directory (which may not exist yet,
// and then is looked for again at every tick), and at least every 1 ms.
class DirWatch {
 public:
  explicit DirWatch(std::string dir)
      : dir_(std::move(dir)), fd_(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
    if (fd_ < 0) Fail("inotify_init1 failed");
  }
  ~DirWatch() { ::close(fd_); }
  DirWatch(const DirWatch&) = delete;
  DirWatch& operator=(const DirWatch&) = delete;

  // Returns after a change in the directory or one tick, whichever is first.
  void Wait() {
    if (!watching_) {
      watching_ = ::inotify_add_watch(fd_, dir_.c_str(),
                                      IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE) >= 0;
    }
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(kTick.count())) > 0) {
      alignas(inotify_event) char events[4096];
      while (::read(fd_, events, sizeof events) > 0) {
      }
    }
  }

 private:
  std::string dir_;
  int fd_;
  bool watching_ = false;
};

// Follows a serial log (which may not exist yet) and notes when the first
// complete `VMRS_READY <ip>` line was read, as vmlet accepts it (docs/reconcile.md):
// the whole line, up to an optional '\r', and a valid IPv4 or IPv6 address.
class MarkerReader {
 public:
  explicit MarkerReader(std::string path) : path_(std::move(path)) {}
  ~MarkerReader() {
    if (fd_ >= 0) ::close(fd_);
  }
  MarkerReader(const MarkerReader&) = delete;
  MarkerReader& operator=(const MarkerReader&) = delete;

  // Reads what was appended since the last call.
  void Poll() {
    if (seen_) return;
    if (fd_ < 0 && (fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC)) < 0) return;
    char buf[4096];
    for (ssize_t n; (n = ::read(fd_, buf, sizeof buf)) > 0;) buffer_.append(buf, n);
    for (size_t end; !seen_ && (end = buffer_.find('\n')) != std::string::npos;) {
      std::string line = buffer_.substr(0, end);
      buffer_.erase(0, end + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (IsMarker(line)) seen_ = Steady::now();
    }
  }

  std::optional<Steady::time_point> seen() const { return seen_; }

 private:
  static bool IsMarker(const std::string& line) {
    constexpr std::string_view kPrefix = "VMRS_READY ";
    if (line.rfind(kPrefix, 0) != 0) return false;
    const std::string ip = line.substr(kPrefix.size());
    unsigned char addr[sizeof(in6_addr)];
    return ::inet_pton(AF_INET, ip.c_str(), addr) == 1 ||
           ::inet_pton(AF_INET6, ip.c_str(), addr) == 1;
  }

  std::string path_;
  int fd_ = -1;
  std::string buffer_;  // bytes read, not yet a complete line
  std::optional<Steady::time_point> seen_;
};

// A VM's status.json, read afresh only when it was replaced (vmlet renames a
// new file over it), so that reading it every 1 ms costs the host little more
// than a stat(): the guest's boot shares the CPUs with this bench.
class StatusFile {
 public:
  explicit StatusFile(std::string path) : path_(std::move(path)) {}

  // The status as last written; null while there is none.
  const json& Read() {
    struct stat now {};
    if (::stat(path_.c_str(), &now) != 0) return status_ = nullptr;
    const bool same = now.st_ino == last_.st_ino && now.st_size == last_.st_size &&
                      now.st_ctim.tv_sec == last_.st_ctim.tv_sec &&
                      now.st_ctim.tv_nsec == last_.st_ctim.tv_nsec;
    if (same && status_.is_object()) return status_;
    last_ = now;
    status_ = json::parse(ReadFile(path_), nullptr, false);
    if (!status_.is_object()) status_ = nullptr;  // read while being replaced: next tick
    return status_;
  }

  std::string Phase() {
    const json& s = Read();
    return s.is_object() ? s.value("phase", "") : "";
  }

 private:
  std::string path_;
  struct stat last_ {};
  json status_;
};

// Calls `done` at every wake of `watch` until it returns true; fails with
// `what` at the deadline.
void WaitUntil(DirWatch& watch, Steady::duration timeout, const std::string& what,
               const std::function<bool()>& done) {
  const auto deadline = Steady::now() + timeout;
  while (!done()) {
    if (Steady::now() >= deadline) Fail("timed out waiting for " + what);
    watch.Wait();
  }
}

// QMP `query-status` on a socket: "running", "paused", ... Connect only when
// no one else (vmlet) is using the monitor: QEMU serves one client at a time.
std::string QmpRunState(const std::string& socket) {
  const auto deadline = Steady::now() + seconds(10);
  const drivers::RealClock clock;
  api::StatusOr<drivers::QmpClientPtr> qmp = drivers::QmpClient::Connect(socket, clock, deadline);
  if (!qmp.ok()) return "error: " + qmp.status().ToString();
  api::StatusOr<json> status = (*qmp)->Execute("query-status", nullptr, deadline);
  if (!status.ok()) return "error: " + status.status().ToString();
  return status->value("status", "");
}

// User + system CPU time of process `pid` so far (10 ms resolution), or -1.
double ProcessCpuMs(pid_t pid) {
  const std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  const size_t paren = stat.rfind(')');  // the command name may hold spaces
  if (paren == std::string::npos) return -1;
  std::istringstream fields(stat.substr(paren + 1));
  std::string field;
  for (int i = 3; i < 14; ++i) fields >> field;  // fields 3..13
  double utime = 0, stime = 0;
  if (!(fields >> utime >> stime)) return -1;  // fields 14 and 15, in clock ticks
  return (utime + stime) * 1000.0 / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// User + system CPU time of this bench so far.
double OwnCpuMs() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  auto ms = [](const timeval& t) { return t.tv_sec * 1000.0 + t.tv_usec / 1000.0; };
  return ms(usage.ru_utime) + ms(usage.ru_stime);
}

using vmlet::testing::Guest;

struct BootSample {
  double manifest_to_ready_ms;
  double marker_to_status_ready_ms;
  double boot_reported_ms;  // lastBootDurationSeconds
};

// The vmlet daemon and the manifest directory it watches, all under `root`.
class Node {
 public:
  Node(std::string root, Guest guest) : root_(std::move(root)), guest_(std::move(guest)) {
    fs::create_directories(manifests());
  }

  std::string manifests() const { return root_ + "/manifests"; }
  std::string state() const { return root_ + "/state"; }
  std::string log() const { return root_ + "/vmlet.log"; }
  std::string VmDir(const std::string& name) const {
    return state() + "/vms/" + kNamespace + "/" + name;
  }
  std::string ManifestPath(const std::string& name) const {
    return manifests() + "/" + name + ".yaml";
  }
  bool running() const { return vmlet_.running(); }
  pid_t pid() const { return vmlet_.pid(); }

  void Start() {
    // Metrics on a free port: another vmlet on this host may hold the default.
    const std::string error = vmlet_.Start(
        VMLET_BINARY,
        {"run", "--manifests", manifests(), "--state-dir", state(), "--qemu-accel", "tcg",
         "--log-level", "info", "--metrics-addr", "127.0.0.1:0", "--api-addr", "off"},
        log());
    if (!error.empty()) Fail("cannot start vmlet: " + error);
  }

  // SIGTERM, then SIGKILL if it is still there after 30 s.
  void Stop() {
    if (!vmlet_.running()) return;
    vmlet_.Signal(SIGTERM);
    if (!vmlet_.WaitForExit(seconds(30))) {
      std::cerr << "vmlet_bench_qemu: vmlet ignored SIGTERM for 30 s; SIGKILL\n";
      vmlet_.KillAndReap();
    }
  }

  // Writes `name`'s manifest as editors do (a dot-named temp file, which vmlet
  // ignores, then rename) and returns when the rename was made: the start of
  // every timing.
  Steady::time_point WriteManifest(const std::string& name, const std::string& desired) {
    const std::string temp = manifests() + "/." + name + ".yaml.tmp";
    std::ofstream(temp, std::ios::binary | std::ios::trunc) << Manifest(name, desired);
    const Steady::time_point renamed = Steady::now();
    fs::rename(temp, ManifestPath(name));
    return renamed;
  }

  // Writes the manifest of a new VM `name` and waits until it is Ready.
  BootSample Boot(const std::string& name) {
    DirWatch watch(VmDir(name));
    MarkerReader marker(VmDir(name) + "/serial.log");
    StatusFile status(VmDir(name) + "/status.json");
    const Steady::time_point written = WriteManifest(name, "Running");
    WaitUntil(watch, kBootTimeout, name + " Ready", [&] {
      marker.Poll();  // first, so that a marker and Ready seen at one wake keep their order
      const std::string phase = status.Phase();
      if (phase == "Failed") Fail(name + " Failed: " + status.Read().dump());
      return phase == "Ready";
    });
    const auto ready = Steady::now();
    if (!marker.seen()) Fail(name + " is Ready but its serial.log holds no marker line");
    return {Ms(ready - written), Ms(ready - *marker.seen()),
            status.Read().value("lastBootDurationSeconds", -1.0) * 1000.0};
  }

  // Rewrites `name`'s manifest with `desired` and returns how long until its
  // status shows `phase`.
  double Change(const std::string& name, const std::string& desired, const std::string& phase) {
    DirWatch watch(VmDir(name));
    StatusFile status(VmDir(name) + "/status.json");
    const Steady::time_point written = WriteManifest(name, desired);
    WaitUntil(watch, kStepTimeout, name + " " + phase, [&] { return status.Phase() == phase; });
    return Ms(Steady::now() - written);
  }

  // Removes the manifest and waits until vmlet has stopped the VM and removed
  // its state directory.
  void Delete(const std::string& name) {
    fs::remove(ManifestPath(name));
    DirWatch watch(state() + "/vms/" + kNamespace);
    WaitUntil(watch, kStepTimeout, name + "'s state directory to go",
              [&] { return !fs::exists(VmDir(name)); });
  }

 private:
  std::string Manifest(const std::string& name, const std::string& desired) const {
    return testing::VmManifest(
        {kNamespace, name},
        "  desiredState: " + desired + "\n  driver: qemu\n  kernel: " + guest_.kernel +
            "\n  initramfs: " + guest_.initramfs + "\n  cpus: " + std::to_string(kCpus) +
            "\n  memoryMb: " + std::to_string(kMemoryMb) + "\n");
  }

  std::string root_;
  Guest guest_;
  testing::VmletProcess vmlet_;
};

// The command line vmlet's qemu driver builds for this guest
// (QemuCommandLine in drivers/qemu/qemu_driver.cc: TCG, no disks, no NICs).
std::vector<std::string> RawQemuArgv(const Guest& guest, const std::string& dir,
                                     const std::string& name) {
  std::vector<std::string> argv = {kQemu, "-name", std::string(kNamespace) + "/" + name};
  argv.insert(argv.end(),
              {"-accel", "tcg", "-m", std::to_string(kMemoryMb), "-smp", std::to_string(kCpus)});
  argv.insert(argv.end(), {"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"});
  argv.insert(argv.end(), {"-qmp", "unix:" + dir + "/qmp.sock,server=on,wait=off"});
  argv.insert(argv.end(), {"-serial", "file:" + dir + "/serial.log"});
  argv.insert(argv.end(), {"-kernel", guest.kernel, "-initrd", guest.initramfs});
  argv.insert(argv.end(), {"-append", kCmdline});
  return argv;
}

// A QEMU this bench spawned, known only by the pid Spawn() returned. The
// destructor SIGKILLs and reaps it unless it was reaped already.
class RawQemu {
 public:
  RawQemu(drivers::ProcessLauncher& launcher, pid_t pid) : launcher_(launcher), pid_(pid) {}
  ~RawQemu() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  RawQemu(const RawQemu&) = delete;
  RawQemu& operator=(const RawQemu&) = delete;

  // Reaps it once it has exited; false if it is still running at the deadline.
  bool WaitForExit(Steady::duration timeout) {
    const auto deadline = Steady::now() + timeout;
    while (!launcher_.Reap(pid_)) {
      if (Steady::now() >= deadline) return false;
      std::this_thread::sleep_for(milliseconds(5));
    }
    pid_ = -1;
    return true;
  }

 private:
  drivers::ProcessLauncher& launcher_;
  pid_t pid_;
};

// QEMU started the way vmlet starts it (the same PosixProcessLauncher, in a
// session of its own) with vmlet's command line; returns spawn -> the marker
// line read. Ends QEMU with QMP `quit`.
double RawBoot(drivers::ProcessLauncher& launcher, const Guest& guest, const std::string& dir,
               const std::string& name) {
  fs::create_directories(dir);
  const std::string serial = dir + "/serial.log";
  std::ofstream(serial).close();  // as vmlet does: the file exists before QEMU opens it
  DirWatch watch(dir);
  MarkerReader marker(serial);
  drivers::SpawnRequest request{RawQemuArgv(guest, dir, name), dir + "/vmm.log",
                                /*new_session=*/true};
  const auto spawned = Steady::now();
  api::StatusOr<pid_t> pid = launcher.Spawn(request);
  if (!pid.ok()) Fail(pid.status().ToString());
  RawQemu qemu(launcher, *pid);
  try {
    WaitUntil(watch, kBootTimeout, "the raw QEMU's marker", [&] {
      marker.Poll();
      return marker.seen().has_value();
    });
  } catch (const BenchFailure&) {
    std::cerr << "---- " << dir << "/vmm.log ----\n" << testing::TailOfFile(dir + "/vmm.log", 20);
    throw;
  }
  const double ms = Ms(*marker.seen() - spawned);

  const auto deadline = Steady::now() + seconds(10);
  const drivers::RealClock clock;
  api::StatusOr<drivers::QmpClientPtr> qmp =
      drivers::QmpClient::Connect(dir + "/qmp.sock", clock, deadline);
  if (qmp.ok()) (void)(*qmp)->Execute("quit", nullptr, deadline);
  if (!qemu.WaitForExit(seconds(10))) {
    std::cerr << "vmlet_bench_qemu: raw QEMU did not quit over QMP; SIGKILL\n";
  }
  std::error_code ignored;
  fs::remove_all(dir, ignored);
  return ms;
}

struct Summary {
  double median, p90, min, max;
};

Summary Summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  const double median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  const size_t p90_rank = static_cast<size_t>(std::ceil(0.9 * n));  // nearest rank
  return {median, v[std::max<size_t>(p90_rank, 1) - 1], v.front(), v.back()};
}

json ToJson(const std::vector<double>& samples) {
  const Summary s = Summarize(samples);
  json rounded = json::array();
  for (double x : samples) rounded.push_back(Round(x));
  return {{"median", Round(s.median)},
          {"p90", Round(s.p90)},
          {"min", Round(s.min)},
          {"max", Round(s.max)},
          {"samples", rounded}};
}

// For the figures whose goal is a bound: median, max and the samples.
json MedianAndMax(const std::vector<double>& samples) {
  json full = ToJson(samples);
  return {{"median", full["median"]}, {"max", full["max"]}, {"samples", full["samples"]}};
}

// Live QEMUs whose QMP socket lies under `dir`: the ones vmlet started for
// this bench, when it failed before vmlet stopped them.
std::vector<pid_t> QemuPidsUnder(const std::string& dir) {
  drivers::LinuxProcFs proc;
  std::vector<pid_t> found;
  api::StatusOr<std::vector<pid_t>> pids = proc.ListPids();
  if (!pids.ok()) return found;
  for (pid_t pid : *pids) {
    api::StatusOr<drivers::ProcessInfo> info = proc.ReadProcess(pid);
    if (!info.ok() || info->state == 'Z') continue;
    for (const std::string& arg : info->cmdline) {
      if (arg.rfind("unix:" + dir + "/", 0) == 0 && arg.find("/qmp.sock,") != std::string::npos) {
        found.push_back(pid);
        break;
      }
    }
  }
  return found;
}

struct Options {
  std::string out_path;
  int runs = 5;
};

Options ParseArgs(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--runs" && i + 1 < argc) {
      options.runs = std::atoi(argv[++i]);
    } else if (options.out_path.empty() && arg.rfind("--", 0) != 0) {
      options.out_path = arg;
    } else {
      options.out_path.clear();
      break;
    }
  }
  if (options.out_path.empty() || options.runs < 1) {
    std::cerr << "usage: vmlet_bench_qemu OUT.json [--runs N]   (N >= 1, default 5)\n";
    std::exit(2);
  }
  return options;
}

json RunBench(Node& node, const Guest& guest, const std::string& tmp, int runs) {
  const auto bench_start = Steady::now();
  auto phase = [&](const std::string& what) {
    std::cerr << "[" << Round(Ms(Steady::now() - bench_start) / 1000, 1) << " s] " << what << "\n";
  };

  drivers::PosixProcessLauncher launcher;
  RawBoot(launcher, guest, tmp + "/raw/warm-up", "warm-up");
  phase("warm-up boot done");
  node.Start();

  std::vector<double> through_vmlet, raw, marker_to_ready, reported, outside_boot;
  std::vector<double> vmlet_cpu_per_boot, own_cpu_vmlet_runs, own_cpu_raw_runs;
  for (int i = 0; i < runs; ++i) {
    const std::string name = "boot-" + std::to_string(i);
    const double vmlet_cpu = ProcessCpuMs(node.pid()), own_cpu = OwnCpuMs();
    const BootSample s = node.Boot(name);
    vmlet_cpu_per_boot.push_back(ProcessCpuMs(node.pid()) - vmlet_cpu);
    own_cpu_vmlet_runs.push_back(OwnCpuMs() - own_cpu);
    node.Delete(name);
    through_vmlet.push_back(s.manifest_to_ready_ms);
    marker_to_ready.push_back(s.marker_to_status_ready_ms);
    reported.push_back(s.boot_reported_ms);
    outside_boot.push_back(s.manifest_to_ready_ms - s.boot_reported_ms);
    const double own_cpu_raw = OwnCpuMs();
    raw.push_back(RawBoot(launcher, guest, tmp + "/raw/" + name, name));
    own_cpu_raw_runs.push_back(OwnCpuMs() - own_cpu_raw);
    phase("run " + std::to_string(i + 1) + ": vmlet " + std::to_string(s.manifest_to_ready_ms) +
          " ms (marker -> Ready " + std::to_string(s.marker_to_status_ready_ms) + " ms), raw " +
          std::to_string(raw.back()) + " ms");
  }

  const std::string vm = "pause-resume";
  node.Boot(vm);
  const std::string socket = node.VmDir(vm) + "/qmp.sock";
  std::vector<double> pause, resume;
  for (int i = 0; i < runs; ++i) {
    pause.push_back(node.Change(vm, "Paused", "Paused"));
    if (std::string s = QmpRunState(socket); s != "paused") Fail("QMP says " + s + ", not paused");
    resume.push_back(node.Change(vm, "Running", "Ready"));
    if (std::string s = QmpRunState(socket); s != "running") {
      Fail("QMP says " + s + ", not running");
    }
  }
  phase("pause/resume x" + std::to_string(runs) + " done");
  node.Delete(vm);

  json figures;
  figures["manifest_to_ready_ms"] = ToJson(through_vmlet);
  figures["raw_qemu_to_marker_ms"] = ToJson(raw);
  figures["ready_ratio_of_medians"] =
      Round(Summarize(through_vmlet).median / Summarize(raw).median, 4);
  figures["boot_duration_reported_median_ms"] = Round(Summarize(reported).median);
  figures["boot_duration_reported_ms"] = ToJson(reported);
  figures["manifest_to_ready_minus_reported_boot_ms"] = ToJson(outside_boot);
  figures["marker_to_status_ready_ms"] = MedianAndMax(marker_to_ready);
  figures["pause_ms"] = MedianAndMax(pause);
  figures["resume_ms"] = MedianAndMax(resume);
  // Where the CPU went on a host whose cores the TCG vCPU shares: vmlet's
  // (QEMU writes the serial file one byte per writev, and vmlet's marker
  // watcher wakes on them), and this bench's own in each kind of run.
  figures["cpu_ms_per_boot"] = {
      {"vmlet_median", Round(Summarize(vmlet_cpu_per_boot).median)},
      {"vmlet_samples", ToJson(vmlet_cpu_per_boot)["samples"]},
      {"bench_in_vmlet_runs_median", Round(Summarize(own_cpu_vmlet_runs).median)},
      {"bench_in_raw_runs_median", Round(Summarize(own_cpu_raw_runs).median)}};
  figures["bench_seconds"] = Round(Ms(Steady::now() - bench_start) / 1000, 1);
  return figures;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = ParseArgs(argc, argv);

  const Guest& guest = vmlet::testing::TestGuest();
  if (!guest.error.empty()) {
    std::cerr << "vmlet_bench_qemu: " << guest.error << "\n";
    return 1;
  }

  char tmp_pattern[] = "/tmp/vmlet-bench-qemu-XXXXXX";
  if (::mkdtemp(tmp_pattern) == nullptr) {
    std::cerr << "vmlet_bench_qemu: mkdtemp failed\n";
    return 1;
  }
  const std::string tmp = tmp_pattern;
  Node node(tmp + "/node", guest);

  json figures;
  int exit_code = 0;
  try {
    const std::optional<std::vector<std::string>> version =
        vmlet::testing::CommandOutputLines(std::string(kQemu) + " --version");
    if (!version || version->empty()) Fail(std::string(kQemu) + " --version failed");
    figures = RunBench(node, guest, tmp, options.runs);
    figures["host"] = {{"nproc", std::thread::hardware_concurrency()},
                       {"accelerator", "tcg"},
                       {"dev_kvm_present", fs::exists("/dev/kvm")},
                       {"qemu_version", (*version)[0]}};
  } catch (const std::exception& e) {
    std::cerr << "vmlet_bench_qemu: " << e.what() << "\n";
    if (node.running()) {
      std::cerr << "---- last lines of " << node.log() << " ----\n"
                << testing::TailOfFile(node.log(), 40);
    }
    exit_code = 1;
  }

  // Delete every VM through vmlet, then stop vmlet; whatever is left (only
  // after a failure) is killed by pid.
  if (node.running()) {
    std::error_code ignored;
    for (const auto& entry : fs::directory_iterator(node.manifests(), ignored)) {
      fs::remove(entry.path(), ignored);
    }
    const auto deadline = Steady::now() + seconds(90);
    while (!QemuPidsUnder(tmp).empty() && Steady::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(50));
    }
    node.Stop();
  }
  for (pid_t pid : QemuPidsUnder(tmp)) {
    std::cerr << "vmlet_bench_qemu: QEMU pid " << pid << " still running; SIGKILL\n";
    ::kill(pid, SIGKILL);
    exit_code = 1;
  }
  std::error_code ignored;
  fs::remove_all(tmp, ignored);
  if (exit_code != 0) return exit_code;

  figures["runs"] = options.runs;
  figures["guest"] = {{"memory_mb", kMemoryMb}, {"cpus", kCpus}, {"cmdline", kCmdline}};
  figures["goals"] = {{"ready_ratio_of_medians_max", 1.05},
                      {"marker_to_status_ready_ms_max", 20},
                      {"pause_ms_max", 50},
                      {"resume_ms_max", 50}};
  figures["notes"] =
      "Alternating runs (vmlet, raw, ...) after one unmeasured raw warm-up boot; one `vmlet run "
      "--qemu-accel tcg` for all. Through vmlet: manifest renamed in -> status.json phase Ready "
      "(stat'ed every 1 ms and on inotify events of the VM dir, parsed when replaced; includes "
      "the manifest watcher's 20 ms settle); each VM then deleted and its state dir gone before "
      "the next run. Raw: QEMU spawned as vmlet does (PosixProcessLauncher, own session) with "
      "vmlet's arguments -> complete VMRS_READY line in the serial file (same inotify + 1 ms "
      "wait), then QMP quit. marker_to_status_ready: marker line read from serial.log by this "
      "bench -> status Ready. pause/resume: manifest desiredState rewrite -> status "
      "Paused/Ready, then QMP query-status confirms paused/running. TCG boot times swing with "
      "host load: compare medians, not single runs.";

  const fs::path out(options.out_path);
  if (out.has_parent_path()) fs::create_directories(out.parent_path());
  std::ofstream(out) << figures.dump(2) << "\n";
  std::cout << figures.dump(2) << "\n";
  std::cerr << "wrote " << options.out_path << "\n";
  return 0;
}
