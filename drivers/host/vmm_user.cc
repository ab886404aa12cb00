#include "drivers/host/vmm_user.h"

#include <grp.h>
#include <pwd.h>

#include <cstring>

namespace vmlet::drivers {

api::StatusOr<VmmCredentials> LookupVmmCredentials(const std::string& user) {
  std::vector<char> buffer(16384);
  passwd pw{};
  passwd* found = nullptr;
  const int rc = ::getpwnam_r(user.c_str(), &pw, buffer.data(), buffer.size(), &found);
  if (rc != 0) {
    return api::Status::Unavailable("looking up user " + user + ": " + std::strerror(rc));
  }
  if (found == nullptr) return api::Status::NotFound("no user " + user + " on this host");
  if (pw.pw_uid == 0) {
    return api::Status::InvalidArgument("user " + user +
                                        " is root (uid 0): VMMs must not run as root");
  }
  VmmCredentials creds{user, pw.pw_uid, pw.pw_gid, {}};
  int count = 64;
  std::vector<gid_t> groups(static_cast<size_t>(count));
  while (::getgrouplist(user.c_str(), pw.pw_gid, groups.data(), &count) < 0) {
    groups.resize(static_cast<size_t>(count));
  }
  groups.resize(static_cast<size_t>(count));
  creds.groups = std::move(groups);
  return creds;
}

std::vector<std::string> RunAsPrefix(const VmmCredentials& creds, const std::string& setpriv,
                                     bool with_groups) {
  std::string groups;
  for (gid_t g : creds.groups) groups += (groups.empty() ? "" : ",") + std::to_string(g);
  std::vector<std::string> argv = {setpriv, "--reuid=" + std::to_string(creds.uid),
                                   "--regid=" + std::to_string(creds.gid)};
  argv.push_back(groups.empty() || !with_groups ? "--clear-groups" : "--groups=" + groups);
  argv.insert(argv.end(), {"--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all",
                           "--no-new-privs", "--"});
  return argv;
}

}  // namespace vmlet::drivers
