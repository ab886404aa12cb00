#include "manifests/spec_json.h"

#include <openssl/evp.h>

#include <array>

namespace vmlet::manifests {
namespace {

using nlohmann::json;

void PutOptional(json& j, const char* key, const std::optional<std::string>& value) {
  if (value) j[key] = *value;
}

// The fields that define the running VMM, shared by SpecToJson and BootHash.
json BootFields(const api::VmSpec& spec) {
  json j = json::object();
  j["driver"] = spec.driver;
  j["kernel"] = spec.kernel;
  PutOptional(j, "initramfs", spec.initramfs);
  PutOptional(j, "cmdline", spec.cmdline);
  PutOptional(j, "rootDisk", spec.root_disk);
  PutOptional(j, "dataDisk", spec.data_disk);
  PutOptional(j, "seedIso", spec.seed_iso);
  j["cpus"] = spec.cpus;
  j["memoryMb"] = spec.memory_mb;
  json nets = json::array();
  for (const auto& n : spec.networks) {
    json net = {{"tap", n.tap}};
    PutOptional(net, "mac", n.mac);
    nets.push_back(std::move(net));
  }
  j["networks"] = std::move(nets);
  json dirs = json::array();
  for (const auto& d : spec.shared_dirs) {
    dirs.push_back({{"hostPath", d.host_path}, {"tag", d.tag}, {"readOnly", d.read_only}});
  }
  j["sharedDirs"] = std::move(dirs);
  PutOptional(j, "netns", spec.netns);
  j["vsock"] = spec.vsock;
  PutOptional(j, "machineId", spec.machine_id);
  PutOptional(j, "efiVariableStore", spec.efi_variable_store);
  j["rosetta"] = spec.rosetta;
  return j;
}

}  // namespace

json SpecToJson(const api::VmSpec& spec) {
  json metadata = {{"name", spec.name}, {"namespace", spec.ns}};
  if (!spec.labels.empty()) metadata["labels"] = spec.labels;
  json s = BootFields(spec);
  s["desiredState"] = std::string(api::ToString(spec.desired_state));
  s["restartPolicy"] = std::string(api::ToString(spec.restart_policy));
  PutOptional(s, "nodeName", spec.node_name);
  s["readiness"] = {{"timeoutSeconds", spec.readiness_timeout.count()}};
  s["stopGracePeriodSeconds"] = spec.stop_grace_period.count();
  return {{"metadata", std::move(metadata)}, {"spec", std::move(s)}};
}

std::string BootHash(const api::VmSpec& spec) {
  // nlohmann's objects are sorted maps, so dump() is canonical.
  return Sha256Hex(BootFields(spec).dump()).substr(0, 16);
}

std::string Sha256Hex(std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest.data(), &length, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(size_t{length} * 2);
  for (unsigned int i = 0; i < length; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 0xf];
  }
  return out;
}

}  // namespace vmlet::manifests
