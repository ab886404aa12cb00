#include "drivers/host/disk_lock.h"

#include <algorithm>
#include <cctype>
#include <vector>

namespace vmlet::drivers {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::vector<std::string_view> Lines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return lines;
}

// "Is another process using the image [/srv/a.img]?" -> "/srv/a.img".
std::string ImageOf(std::string_view line) {
  const size_t open = line.find('[');
  const size_t close = line.rfind(']');
  if (open == std::string_view::npos || close == std::string_view::npos || close <= open + 1) {
    return "";
  }
  return std::string(line.substr(open + 1, close - open - 1));
}

}  // namespace

std::optional<std::string> FindDiskLockFailure(std::string_view vmm_output) {
  const std::vector<std::string_view> lines = Lines(vmm_output);
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string lower = Lower(lines[i]);
    const bool qemu = lower.find("failed to get ") != std::string::npos &&
                      lower.find(" lock") != std::string::npos;
    // Cloud Hypervisor's wording varies between versions; it names a disk
    // or an image. Landlock (its sandbox) is not a disk lock.
    const bool names_disk =
        lower.find("disk") != std::string::npos || lower.find("image") != std::string::npos;
    const bool ch = names_disk && lower.find("landlock") == std::string::npos &&
                    (lower.find("already locked") != std::string::npos ||
                     lower.find("lock error") != std::string::npos ||
                     lower.find("failed to lock") != std::string::npos ||
                     lower.find("disklock") != std::string::npos);
    if (!qemu && !ch) continue;
    std::string detail(lines[i]);
    std::string image;
    if (i + 1 < lines.size() &&
        lines[i + 1].find("Is another process using the image") != std::string_view::npos) {
      image = ImageOf(lines[i + 1]);
    }
    if (!image.empty()) {
      return "disk image " + image + " is locked by another process (" + detail + ")";
    }
    return "a disk image is locked by another process (" + detail + ")";
  }
  return std::nullopt;
}

}  // namespace vmlet::drivers
