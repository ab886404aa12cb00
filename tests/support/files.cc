#include "tests/support/files.h"

#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace vmlet::testing {

namespace fs = std::filesystem;

namespace {

// Reports the failed `call` on `path` with errno's reason; returns false.
bool Failed(const std::string& call, const std::string& path) {
  ADD_FAILURE() << call << " " << path << ": " << std::strerror(errno);
  return false;
}

}  // namespace

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

bool WriteFile(const std::string& path, std::string_view content) {
  std::error_code ec;
  const fs::path target(path);
  if (target.has_parent_path()) fs::create_directories(target.parent_path(), ec);
  std::ofstream out(target, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  if (!out) return Failed("write", path);
  return true;
}

bool WriteFileAtomically(const std::string& path, std::string_view content) {
  const fs::path target(path);
  const fs::path temp = target.parent_path() / ("." + target.filename().string() + ".tmp");
  if (!WriteFile(temp, content)) return false;
  if (::rename(temp.c_str(), target.c_str()) != 0) return Failed("rename over", path);
  return true;
}

bool MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0) return Failed("mkdir", path);
  return true;
}

bool Symlink(const std::string& target, const std::string& link) {
  if (::symlink(target.c_str(), link.c_str()) != 0) return Failed("symlink", link);
  return true;
}

bool SwapSymlink(const std::string& target, const std::string& link) {
  const std::string temp = link + "_tmp";
  if (!Symlink(target, temp)) return false;
  if (::rename(temp.c_str(), link.c_str()) != 0) return Failed("rename over", link);
  return true;
}

std::string TailOfFile(const std::string& path, size_t lines) {
  std::ifstream in(path);
  std::deque<std::string> tail;
  for (std::string line; std::getline(in, line);) {
    tail.push_back(std::move(line));
    if (tail.size() > lines) tail.pop_front();
  }
  std::string out;
  for (const std::string& line : tail) out += line + "\n";
  return out;
}

}  // namespace vmlet::testing
