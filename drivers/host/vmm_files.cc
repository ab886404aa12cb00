#include "drivers/host/vmm_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "drivers/unique_fd.h"

namespace vmlet::drivers {
namespace {

// How much of the end of a log ExitState() and a failed boot read.
constexpr std::streamoff kTailBytes = 64 * 1024;

// Moves `path` to `path`.1 (replacing an older one).
api::Status Rotate(const std::string& path) {
  if (::rename(path.c_str(), (path + ".1").c_str()) != 0 && errno != ENOENT) {
    return api::Status::Internal("cannot rotate " + path + ": " + std::strerror(errno));
  }
  return api::Status::Ok();
}

api::Status CreateEmpty(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640));
  if (!fd.valid()) {
    return api::Status::Internal("cannot create " + path + ": " + std::strerror(errno));
  }
  return api::Status::Ok();
}

}  // namespace

api::Status VmmFiles::PrepareForBoot(const std::vector<std::string>& more,
                                     const std::optional<VmmCredentials>& owner) const {
  const std::string serial = serial_log();
  std::vector<std::string> rotated = {serial, vmm_log()};
  rotated.insert(rotated.end(), more.begin(), more.end());
  for (const std::string& path : rotated) {
    if (api::Status s = Rotate(path); !s.ok()) return s;
  }
  if (api::Status s = CreateEmpty(serial); !s.ok()) return s;
  if (owner && ::chown(serial.c_str(), owner->uid, owner->gid) != 0) {
    return api::Status::Internal("cannot give " + serial + " to user " + owner->user + ": " +
                                 std::strerror(errno));
  }
  return api::Status::Ok();
}

std::string VmmFiles::SerialTail() const { return FileTail(serial_log()); }

std::string VmmFiles::VmmLogTail() const { return FileTail(vmm_log()); }

std::string FileTail(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size <= 0) return "";
  const std::streamoff from = std::max<std::streamoff>(0, size - kTailBytes);
  in.seekg(from);
  std::string data(static_cast<size_t>(size - from), '\0');
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  data.resize(static_cast<size_t>(in.gcount()));
  return data;
}

std::string LastLine(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
    text.remove_suffix(1);
  }
  const size_t nl = text.rfind('\n');
  std::string line(nl == std::string_view::npos ? text : text.substr(nl + 1));
  std::erase(line, '\r');
  return line;
}

std::string LineWith(std::string_view text, std::string_view needle) {
  const size_t at = text.rfind(needle);
  if (at == std::string_view::npos) return "";
  const size_t begin = text.rfind('\n', at);
  const size_t end = text.find('\n', at);
  std::string line(
      text.substr(begin == std::string_view::npos ? 0 : begin + 1,
                  end == std::string_view::npos ? std::string_view::npos : end - (begin + 1)));
  std::erase(line, '\r');
  return line;
}

api::Status RemoveFile(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return api::Status::Internal("cannot remove " + path + ": " + std::strerror(errno));
  }
  return api::Status::Ok();
}

}  // namespace vmlet::drivers
