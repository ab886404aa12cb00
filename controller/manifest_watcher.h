#pragma once

#include <functional>
#include <memory>
#include <string>

#include "api/status.h"
#include "manifests/directory_source.h"
#include "manifests/directory_watcher.h"

namespace vmlet::controller {

// Where the manager learns the desired state: the manifest directory's
// snapshots, the first full scan and then every change.
class ManifestWatcher {
 public:
  using Listener = std::function<void(const manifests::SourceUpdate&)>;

  virtual ~ManifestWatcher() = default;

  // Starts watching: `listener` gets every update, on the watcher's own
  // thread, one at a time, until Stop(). REQUIRES: not started.
  [[nodiscard]] virtual api::Status Start(Listener listener) = 0;
  // Stops watching; the listener is not called once it returns. Idempotent.
  virtual void Stop() = 0;
};

using ManifestWatcherPtr = std::unique_ptr<ManifestWatcher>;

// The manifest directory (manifests::ManifestDirectory) watched with
// manifests::DirectoryWatcher (inotify, settle delay, periodic rescans).
class DirectoryManifestWatcher final : public ManifestWatcher {
 public:
  // Opens nothing: Start() does.
  DirectoryManifestWatcher(std::string root, manifests::ParseOptions parse,
                           manifests::DirectoryWatcher::Options options);
  ~DirectoryManifestWatcher() override;

  api::Status Start(Listener listener) override;
  void Stop() override;

 private:
  manifests::ManifestDirectory directory_;
  const manifests::DirectoryWatcher::Options options_;
  std::unique_ptr<manifests::DirectoryWatcher> watcher_;  // set once started
};

}  // namespace vmlet::controller
