#include "drivers/cloud_hypervisor/ch_vm_config.h"

#include <cstdint>

#include "drivers/host/vsock_cid.h"

namespace vmlet::drivers {

using nlohmann::json;

json ChVmConfig(const api::VmSpec& spec, const std::string& vm_dir, bool landlock) {
  json payload = {{"kernel", spec.kernel}};
  if (spec.initramfs) payload["initramfs"] = *spec.initramfs;
  payload["cmdline"] = spec.cmdline.value_or(kChDefaultCmdline);

  json config = {
      {"payload", std::move(payload)},
      {"cpus", {{"boot_vcpus", spec.cpus}, {"max_vcpus", spec.cpus}}},
      {"memory",
       {{"size", static_cast<int64_t>(spec.memory_mb * 1024 * 1024)},
        {"shared", !spec.shared_dirs.empty()}}},
  };

  json disks = json::array();
  if (spec.root_disk) disks.push_back({{"path", *spec.root_disk}, {"id", "root"}});
  if (spec.data_disk) disks.push_back({{"path", *spec.data_disk}, {"id", "data"}});
  if (spec.seed_iso) {
    disks.push_back({{"path", *spec.seed_iso}, {"readonly", true}, {"id", "seed"}});
  }
  if (!disks.empty()) config["disks"] = std::move(disks);

  if (!spec.networks.empty()) {
    json net = json::array();
    for (const api::NetworkAttachment& attachment : spec.networks) {
      json device = {{"tap", attachment.tap}};
      if (attachment.mac) device["mac"] = *attachment.mac;
      net.push_back(std::move(device));
    }
    config["net"] = std::move(net);
  }

  if (!spec.shared_dirs.empty()) {
    json fs = json::array();
    for (const api::SharedDir& dir : spec.shared_dirs) {
      fs.push_back({{"tag", dir.tag},
                    {"socket", vm_dir + "/virtiofs-" + dir.tag + ".sock"},
                    {"num_queues", 1},
                    {"queue_size", 512}});
    }
    config["fs"] = std::move(fs);
  }

  config["serial"] = {{"mode", "File"},
                      {"file", spec.serial_log.empty() ? vm_dir + "/serial.log" : spec.serial_log}};
  config["console"] = {{"mode", "Off"}};
  if (spec.vsock) {
    // The same CID QEMU would give this VM directory, so a VM keeps its CID
    // whichever driver runs it.
    config["vsock"] = {{"cid", VsockCid(vm_dir)}, {"socket", vm_dir + "/vsock.sock"}};
  }
  if (landlock) {
    config["landlock_enable"] = true;
    config["landlock_rules"] = json::array({{{"path", vm_dir}, {"access", "rw"}}});
  }
  return config;
}

}  // namespace vmlet::drivers
