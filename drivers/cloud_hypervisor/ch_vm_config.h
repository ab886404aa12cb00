#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "api/vm_spec.h"

namespace vmlet::drivers {

// The kernel command line when the spec has none: the serial console carries
// the ready marker; a panicking guest resets at once.
inline constexpr char kChDefaultCmdline[] = "console=ttyS0 panic=-1";

// The Cloud Hypervisor VmConfig (the OpenAPI schema's VmConfig, sent with
// vm.create) for `spec`, with every file CH creates under `vm_dir`. Pure.
//   payload   {kernel, initramfs (when set), cmdline (kChDefaultCmdline
//             when unset)}
//   cpus      {boot_vcpus: cpus, max_vcpus: cpus}
//   memory    {size: memoryMb in bytes, shared: true when there are shared
//             dirs (vhost-user virtio-fs needs it), else false}
//   disks     [{path: rootDisk, id: "root"}, {path: dataDisk, id: "data"},
//             {path: seedIso, readonly: true, id: "seed"}], those set, in
//             that order; omitted when none (CH detects raw or qcow2)
//   net       [{tap, mac (when set)}] per network; omitted when none
//   fs        [{tag, socket: <vm_dir>/virtiofs-<tag>.sock, num_queues: 1,
//             queue_size: 512}] per shared dir (each served by a virtiofsd
//             the caller starts); omitted when none
//   serial    {mode: File, file: spec.serial_log, or <vm_dir>/serial.log
//             when that is empty}
//   console   {mode: Off} (CH never writes to its own stdio)
//   vsock     {cid: VsockCid(vm_dir), socket: <vm_dir>/vsock.sock} when
//             spec.vsock
//   landlock_enable: true, landlock_rules: [{path: vm_dir, access: "rw"}]
//             with `landlock` (vmlet run --vmm-user): CH confines itself to
//             the files its config names (which it allows by itself) and the
//             VM's directory
nlohmann::json ChVmConfig(const api::VmSpec& spec, const std::string& vm_dir,
                          bool landlock = false);

}  // namespace vmlet::drivers
