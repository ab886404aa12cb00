#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <system_error>

#include "api/status.h"

namespace vmlet::controller {

// The POSIX file operations the state store is made of, each returning a
// Status with the path and errno text: NotFound for ENOENT, PermissionDenied
// for EACCES/EPERM, Unavailable for the rest.

// The Status for errno `err` while doing `what` ("cannot open /x").
api::Status ErrnoStatus(int err, const std::string& what);
// The same for a std::filesystem error code.
api::Status ErrorCodeStatus(const std::error_code& ec, const std::string& what);

// The whole file; NotFound when it does not exist.
api::StatusOr<std::string> ReadFile(const std::string& path);
// Writes all of `data` to `fd` (retrying short writes and EINTR); `path`
// names it in errors.
api::Status WriteAll(int fd, std::string_view data, const std::string& path);
// fsyncs directory `dir`, so that entries created or renamed in it survive
// a crash of the host.
api::Status SyncDir(const std::string& dir);
// The directory part of `path` ("" for a bare name).
std::string ParentDir(const std::string& path);
// mkdir(path, mode) with exactly `mode` (the umask does not apply). Sets
// `created` when it made the directory; OK when a directory is already
// there; FailedPrecondition when something else is.
api::Status MakeDir(const std::string& path, mode_t mode, bool& created);
// chmod(path, mode) unless it has that mode already.
api::Status Chmod(const std::string& path, mode_t mode);
// Replaces <dir>/<name> with `content` atomically: a temporary file in the
// same directory (.<name>.tmp-<unique>, 0600), written, fsynced when `sync`,
// closed, renamed over the target, and the directory fsynced when `sync`. A
// crash leaves the old or the new file, never a torn one; a failure removes
// the temporary file. `unique` makes the temporary name unique within this
// process (the caller counts).
api::Status WriteFileAtomically(const std::string& dir, const std::string& name,
                                std::string_view content, bool sync,
                                const std::function<uint64_t()>& unique);

}  // namespace vmlet::controller
