#include "tests/e2e/vmm_backend.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "drivers/host/real_clock.h"
#include "drivers/qemu/qmp_client.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/support/proc_status.h"

namespace vmlet::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::seconds;

constexpr char kPowerDownLine[] = "reboot: Power down";

class QemuBackend final : public VmmBackend {
 public:
  std::string Prepare(const std::string&) override { return ""; }
  // TCG always: no test may count on KVM because /dev/kvm exists (on some nested hosts QEMU's
  // KVM vCPU comes up, so the probe accepts it, and the guest then hangs in the firmware).
  std::vector<std::string> VmletFlags() const override { return {"--qemu-accel", "tcg"}; }
  // qemu is vmlet's default driver: the manifests do not name it.
  std::string ManifestSpecLines() const override { return ""; }
  // No NIC: the guest's init reports the loopback address.
  std::string ReadyIp() const override { return "127.0.0.1"; }

  std::vector<pid_t> VmmPids(const std::string& dir) const override {
    return PidsWithArgument([&](const std::string& arg) {
      return arg.rfind("unix:" + dir + "/", 0) == 0 && arg.find("/qmp.sock,") != std::string::npos;
    });
  }

  // QMP `query-status` on the VM's own socket.
  std::string RunState(const std::string& vm_dir) const override {
    const auto deadline = std::chrono::steady_clock::now() + seconds(10);
    const drivers::RealClock clock;
    api::StatusOr<drivers::QmpClientPtr> qmp =
        drivers::QmpClient::Connect(vm_dir + "/qmp.sock", clock, deadline);
    if (!qmp.ok()) return "error: " + qmp.status().ToString();
    api::StatusOr<json> status = (*qmp)->Execute("query-status", nullptr, deadline);
    if (!status.ok()) return "error: " + status.status().ToString();
    return status->value("status", "");
  }

  std::string ControlSocket(const std::string& vm_dir) const override {
    return vm_dir + "/qmp.sock";
  }

  std::string MissingConfinementEvidence(pid_t pid, const std::string&) const override {
    const std::string seccomp = ProcStatusField(pid, "Seccomp");
    return seccomp == "2" ? ""
                          : "Seccomp is \"" + seccomp + "\" in /proc/" + std::to_string(pid) +
                                "/status, not 2 (a filter)";
  }

  std::string MissingPowerOffEvidence(const std::string& vm_dir) const override {
    const std::string serial = ReadFile(vm_dir + "/serial.log");
    if (serial.find(kPowerDownLine) != std::string::npos) return "";
    return "no \"" + std::string(kPowerDownLine) + "\" in serial.log:\n" + serial;
  }
};

// The events Cloud Hypervisor writes with --event-monitor: pretty-printed
// JSON objects, each followed by an empty line. Returns "source event" per
// event, in order.
std::vector<std::string> ReadChEvents(const std::string& path) {
  std::istringstream lines(ReadFile(path));
  std::vector<std::string> events;
  std::string chunk;
  auto flush = [&] {
    const json event = json::parse(chunk, nullptr, false);
    if (event.is_object()) {
      events.push_back(event.value("source", "?") + " " + event.value("event", "?"));
    }
    chunk.clear();
  };
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) {
      flush();
    } else {
      chunk += line + "\n";
    }
  }
  flush();
  return events;
}

class CloudHypervisorBackend final : public VmmBackend {
 public:
  // `openapi`: when not empty, the stand-in and this OpenAPI file are copied
  // into the test's directory and run from there (world-readable), so that
  // a VMM user may run them wherever the build tree is.
  CloudHypervisorBackend(std::string fake_binary, std::string openapi)
      : fake_binary_(std::move(fake_binary)), openapi_(std::move(openapi)) {}

  std::string Prepare(const std::string& work_dir) override {
    const fs::path bin = fs::path(work_dir) / "bin";
    std::error_code ec;
    fs::create_directories(bin / "real", ec);
    if (ec) return "cannot create " + bin.string() + ": " + ec.message();
    std::string binary = fake_binary_, extra;
    if (!openapi_.empty()) {
      binary = (bin / "real" / fs::path(fake_binary_).filename()).string();
      const std::string openapi = (bin / "real" / "openapi.yaml").string();
      fs::copy_file(fake_binary_, binary, fs::copy_options::overwrite_existing, ec);
      if (!ec) fs::copy_file(openapi_, openapi, fs::copy_options::overwrite_existing, ec);
      if (ec) return "cannot copy the stand-in: " + ec.message();
      for (const fs::path& p : {bin, bin / "real", fs::path(binary)}) {
        fs::permissions(p,
                        fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                            fs::perms::others_read | fs::perms::others_exec,
                        ec);
      }
      fs::permissions(openapi,
                      fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read, ec);
      if (ec) return "cannot open the stand-in to others: " + ec.message();
      extra = " --fake-openapi '" + openapi + "'";
    }
    wrapper_ = (bin / fs::path(fake_binary_).filename()).string();
    {
      std::ofstream out(wrapper_, std::ios::trunc);
      out << "#!/bin/sh\n"
             "exec '"
          << binary << "'" << extra << " --fake-boot-delay-ms " << kBootDelayMs << " \"$@\"\n";
      if (!out) return "cannot write " + wrapper_;
    }
    fs::permissions(wrapper_,
                    openapi_.empty()
                        ? fs::perms::owner_all
                        : fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec,
                    fs::perm_options::replace, ec);
    if (ec) return "cannot make " + wrapper_ + " executable: " + ec.message();
    return "";
  }

  std::vector<std::string> VmletFlags() const override {
    return {"--cloud-hypervisor-bin", wrapper_};
  }
  std::string ManifestSpecLines() const override { return "  driver: cloud-hypervisor\n"; }
  // fake-cloud-hypervisor's default --fake-ready-ip.
  std::string ReadyIp() const override { return "10.0.2.15"; }

  std::vector<pid_t> VmmPids(const std::string& dir) const override {
    return PidsWithArgument([&](const std::string& arg) {
      return arg.rfind("path=" + dir + "/", 0) == 0 && arg.ends_with("/ch.sock");
    });
  }

  // GET /api/v1/vm.info on the VM's API socket: its "state", as QMP words.
  std::string RunState(const std::string& vm_dir) const override {
    const HttpReply reply = HttpGet("http://localhost/api/v1/vm.info", vm_dir + "/ch.sock");
    if (!reply.error.empty()) return "error: " + reply.error;
    if (reply.status != 200) {
      return "error: HTTP " + std::to_string(reply.status) + ": " + reply.body;
    }
    const json info = json::parse(reply.body, nullptr, false);
    const std::string state = info.is_object() ? info.value("state", "") : "";
    if (state == "Running") return "running";
    if (state == "Paused") return "paused";
    return "cloud-hypervisor state \"" + state + "\"";
  }

  std::string ControlSocket(const std::string& vm_dir) const override {
    return vm_dir + "/ch.sock";
  }

  std::string MissingConfinementEvidence(pid_t, const std::string& vm_dir) const override {
    const HttpReply info = HttpGet("http://localhost/api/v1/vm.info", ControlSocket(vm_dir));
    const json config = json::parse(info.body, nullptr, false);
    if (!config.is_object() || !config.contains("config")) {
      return "no vm.info: " + info.error + info.body;
    }
    const json expected_rules = json::parse(R"([{"path": ")" + vm_dir + R"(", "access": "rw"}])");
    if (config["config"].value("landlock_enable", false) &&
        config["config"].value("landlock_rules", json()) == expected_rules) {
      return "";
    }
    return "vm.info has not Landlock on with " + expected_rules.dump() +
           " as its rules: " + info.body;
  }

  std::string MissingPowerOffEvidence(const std::string& vm_dir) const override {
    const std::string serial = ReadFile(vm_dir + "/serial.log");
    if (serial.find(kPowerDownLine) == std::string::npos) {
      return "no \"" + std::string(kPowerDownLine) + "\" in serial.log:\n" + serial;
    }
    // The guest's poweroff shuts the VM down after it booted, and the VMM
    // ends with it (CH without --no-shutdown).
    const std::vector<std::string> events = ReadChEvents(vm_dir + "/events.json");
    const auto booted = std::find(events.rbegin(), events.rend(), "vm booted");
    const bool shut_down_after_boot =
        booted != events.rend() && std::find(events.rbegin(), booted, "vm shutdown") != booted;
    if (shut_down_after_boot && events.back() == "vmm shutdown") return "";
    std::string seen;
    for (const std::string& event : events) seen += "\n  " + event;
    return "events.json has no vm shutdown after vm booted, or does not end with vmm "
           "shutdown:" +
           seen;
  }

 private:
  // The simulated guest's boot time (the QEMU guest's is about 3 s).
  static constexpr int kBootDelayMs = 3000;

  const std::string fake_binary_;
  const std::string openapi_;
  std::string wrapper_;  // set by Prepare()
};

}  // namespace

VmmBackendPtr MakeQemuBackend() { return std::make_unique<QemuBackend>(); }

namespace {

class AsUserBackend final : public VmmBackend {
 public:
  AsUserBackend(VmmBackendPtr inner, std::string user)
      : inner_(std::move(inner)), user_(std::move(user)) {}

  std::string Prepare(const std::string& work_dir) override {
    images_ = work_dir + "/images";
    std::error_code ec;
    fs::create_directories(images_, ec);
    if (ec) return "cannot create " + images_ + ": " + ec.message();
    const fs::perms open = fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec;
    fs::permissions(work_dir, open, ec);
    if (!ec) fs::permissions(images_, open, ec);
    if (ec) return "cannot open " + work_dir + " to " + user_ + ": " + ec.message();
    for (const std::string& from : {TestGuest().kernel, TestGuest().initramfs}) {
      const std::string to = images_ + "/" + fs::path(from).filename().string();
      fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
      if (!ec) {
        fs::permissions(to,
                        fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                            fs::perms::others_read,
                        ec);
      }
      if (ec) return "cannot copy " + from + " to " + to + ": " + ec.message();
    }
    return inner_->Prepare(work_dir);
  }
  std::vector<std::string> VmletFlags() const override {
    std::vector<std::string> flags = inner_->VmletFlags();
    flags.insert(flags.end(), {"--vmm-user", user_});
    return flags;
  }
  std::string ManifestSpecLines() const override { return inner_->ManifestSpecLines(); }
  std::string Kernel(const std::string& kernel) const override {
    return images_ + "/" + fs::path(kernel).filename().string();
  }
  std::string Initramfs(const std::string& initramfs) const override {
    return images_ + "/" + fs::path(initramfs).filename().string();
  }
  std::string ReadyIp() const override { return inner_->ReadyIp(); }
  std::vector<pid_t> VmmPids(const std::string& dir) const override { return inner_->VmmPids(dir); }
  std::string RunState(const std::string& vm_dir) const override {
    return inner_->RunState(vm_dir);
  }
  std::string ControlSocket(const std::string& vm_dir) const override {
    return inner_->ControlSocket(vm_dir);
  }
  std::string MissingConfinementEvidence(pid_t pid, const std::string& vm_dir) const override {
    return inner_->MissingConfinementEvidence(pid, vm_dir);
  }
  std::string MissingPowerOffEvidence(const std::string& vm_dir) const override {
    return inner_->MissingPowerOffEvidence(vm_dir);
  }

 private:
  const VmmBackendPtr inner_;
  const std::string user_;
  std::string images_;
};

}  // namespace

VmmBackendPtr MakeQemuBackendAsUser(std::string user) {
  return std::make_unique<AsUserBackend>(MakeQemuBackend(), std::move(user));
}

VmmBackendPtr MakeCloudHypervisorBackendAsUser(std::string fake_binary, std::string openapi,
                                               std::string user) {
  return std::make_unique<AsUserBackend>(
      std::make_unique<CloudHypervisorBackend>(std::move(fake_binary), std::move(openapi)),
      std::move(user));
}

VmmBackendPtr MakeCloudHypervisorBackend(std::string fake_binary) {
  return std::make_unique<CloudHypervisorBackend>(std::move(fake_binary), "");
}

VmmBackendPtr MakeVmmBackend(const std::string& name) {
  if (name == "cloud-hypervisor") return MakeCloudHypervisorBackend(FAKE_CH_BINARY);
  if (name == "qemu-as-nobody") return MakeQemuBackendAsUser("nobody");
  if (name == "cloud-hypervisor-as-nobody") {
    return MakeCloudHypervisorBackendAsUser(FAKE_CH_BINARY, FAKE_CH_OPENAPI, "nobody");
  }
  return MakeQemuBackend();
}

}  // namespace vmlet::testing
