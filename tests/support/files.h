#pragma once

#include <cstddef>
#include <string>
#include <string_view>

// Files as tests make and read them. Every function that changes something
// returns whether it did, and also reports a failure as a non-fatal gtest
// failure naming the path, so that a test need not check each call.

namespace vmlet::testing {

// The whole file, or "" when it cannot be read.
std::string ReadFile(const std::string& path);

// Writes `content` to `path` (truncating it), making its parent directories.
bool WriteFile(const std::string& path, std::string_view content);

// Replaces `path` as editors and git do: `content` goes to a temporary
// dot-file in the same directory (a name vmlet's manifest directory ignores),
// which is then renamed over `path`; a reader sees the old or the new
// content, never a part. Makes the parent directories.
bool WriteFileAtomically(const std::string& path, std::string_view content);

// mkdir `path`, mode 0755 (its parent must exist; it must not).
bool MakeDir(const std::string& path);

// A symbolic link `link` to `target`.
bool Symlink(const std::string& target, const std::string& link);

// Points `link` at `target` atomically, as git-sync and the kubelet do: a
// new link under a temporary name, renamed over the old one.
bool SwapSymlink(const std::string& target, const std::string& link);

// The last `lines` lines of a text file ("" when it cannot be read), for
// diagnostics.
std::string TailOfFile(const std::string& path, size_t lines);

}  // namespace vmlet::testing
