#pragma once

// The unprivileged user VMMs run as (vmlet run --vmm-user): vmlet keeps root
// for what needs it (TAP devices, namespaces, its records), the processes
// that run guest code do not (docs/operations.md, "Least privilege").

#include <sys/types.h>

#include <string>
#include <vector>

#include "api/status.h"

namespace vmlet::drivers {

struct VmmCredentials {
  std::string user;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups, as initgroups(3) would set them
};

// The user's uid, primary gid and groups from the system's user database.
// NotFound when there is no such user; InvalidArgument for root (uid 0),
// which would defeat the purpose.
api::StatusOr<VmmCredentials> LookupVmmCredentials(const std::string& user);

// The argv prefix that runs the rest of an argv as `creds`: setpriv(1) from
// util-linux, which takes the user's ids and groups, drops every capability
// (inheritable, ambient, bounding set) and sets no_new_privs, then execs
// the program: the VMM keeps its pid, and never holds root while it runs.
//   setpriv --reuid=UID --regid=GID --groups=G,... --inh-caps=-all
//     --ambient-caps=-all --bounding-set=-all --no-new-privs --
// `with_groups` false: no supplementary groups (--clear-groups).
std::vector<std::string> RunAsPrefix(const VmmCredentials& creds,
                                     const std::string& setpriv = "setpriv",
                                     bool with_groups = true);

}  // namespace vmlet::drivers
