#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

namespace vmlet::testing {

// What the end-to-end scenarios need to know about one driver and its VMM,
// so that each scenario is written once and runs for every driver: how vmlet
// is told to use it, how its VMM processes are found in /proc, how the
// hypervisor itself is asked whether the VM runs, and what proves that the
// guest powered itself off. Everything is checked from outside, the way an
// operator would; nothing here shares code with the driver under test.
//
// Not thread-safe; one test thread uses it.
class VmmBackend {
 public:
  virtual ~VmmBackend() = default;

  // Makes what the backend needs under `work_dir` (this test's own
  // temporary directory). Returns "" on success, else why not.
  virtual std::string Prepare(const std::string& work_dir) = 0;

  // Flags added to `vmlet run` (after Prepare()).
  virtual std::vector<std::string> VmletFlags() const = 0;

  // Lines appended to every manifest's spec (each "  key: value\n").
  virtual std::string ManifestSpecLines() const = 0;
  // The guest's kernel and initramfs as the manifests name them: the test
  // guest's (`kernel`, `initramfs`), unless the backend put copies of its own
  // elsewhere in Prepare().
  virtual std::string Kernel(const std::string& kernel) const { return kernel; }
  virtual std::string Initramfs(const std::string& initramfs) const { return initramfs; }

  // The address the guest reports in its ready marker.
  virtual std::string ReadyIp() const = 0;

  // Live (not zombie) VMM processes whose command line names `dir` (a VM's
  // directory, or a directory above VM directories) as the place of their
  // control socket.
  virtual std::vector<pid_t> VmmPids(const std::string& dir) const = 0;

  // The hypervisor's own answer on the VM's control socket: "running",
  // "paused", another state in the hypervisor's words, or "error: ...".
  virtual std::string RunState(const std::string& vm_dir) const = 0;

  // The VM's control socket in `vm_dir`: QMP's, or the VMM's API socket.
  virtual std::string ControlSocket(const std::string& vm_dir) const = 0;

  // "" when the VMM `pid` of `vm_dir` is confined the way vmlet asks for
  // beyond its user and capabilities: QEMU under its seccomp filter
  // (-sandbox on), Cloud Hypervisor with Landlock on and the VM's directory
  // as its only rule (vm.info); else what was seen.
  virtual std::string MissingConfinementEvidence(pid_t pid, const std::string& vm_dir) const = 0;

  // "" when the files of `vm_dir` show that the guest powered itself off
  // (the ACPI power button, not a kill); else what is missing, with the
  // evidence read.
  virtual std::string MissingPowerOffEvidence(const std::string& vm_dir) const = 0;
};

using VmmBackendPtr = std::unique_ptr<VmmBackend>;

// QEMU (the `qemu` driver) booting the test guest: VMMs are found by their
// `-qmp unix:<vm_dir>/qmp.sock,...` argument and asked with QMP
// `query-status`; a power-off shows as "reboot: Power down" in serial.log.
VmmBackendPtr MakeQemuBackend();
// The same, with `vmlet run --vmm-user USER`: QEMU runs as USER (an
// existing unprivileged user; the tests use `nobody`). Prepare() opens the
// test's directory to it (0711) and copies the test guest into
// `<work_dir>/images` (0644), since the guest's cache is under root's home.
VmmBackendPtr MakeQemuBackendAsUser(std::string user);

// fake-cloud-hypervisor at `fake_binary` (the `cloud-hypervisor` driver).
// Prepare() writes `<work_dir>/bin/fake-cloud-hypervisor`, a script that
// runs `fake_binary` with a guest boot time of 3 s (like the QEMU guest's,
// so that a VM is still booting for a while), and vmlet gets it as
// --cloud-hypervisor-bin; after its exec the VMM is `fake_binary` itself
// (same file name, so vmlet's /proc search recognises it). VMMs are found by
// their `--api-socket path=<vm_dir>/ch.sock` argument and asked with
// `GET /api/v1/vm.info` (libcurl on the Unix socket); a power-off shows as
// the guest's "reboot: Power down" in serial.log followed by CH's
// `vm shutdown` and `vmm shutdown` events in events.json.
VmmBackendPtr MakeCloudHypervisorBackend(std::string fake_binary);
// The same with `vmlet run --vmm-user USER`; the stand-in and its OpenAPI
// file (`openapi`) are copied into the test's directory, so USER can run
// them wherever the build tree is.
VmmBackendPtr MakeCloudHypervisorBackendAsUser(std::string fake_binary, std::string openapi,
                                               std::string user);

// The backend a parameterised e2e test names: "qemu", "cloud-hypervisor"
// (the stand-in this test binary was built with), or either with
// "-as-nobody" (`vmlet run --vmm-user nobody`).
VmmBackendPtr MakeVmmBackend(const std::string& name);

}  // namespace vmlet::testing
