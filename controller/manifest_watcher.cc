#include "controller/manifest_watcher.h"

#include <utility>

namespace vmlet::controller {

DirectoryManifestWatcher::DirectoryManifestWatcher(std::string root, manifests::ParseOptions parse,
                                                   manifests::DirectoryWatcher::Options options)
    : directory_(std::move(root), std::move(parse)), options_(options) {}

DirectoryManifestWatcher::~DirectoryManifestWatcher() { Stop(); }

api::Status DirectoryManifestWatcher::Start(Listener listener) {
  watcher_ =
      std::make_unique<manifests::DirectoryWatcher>(directory_, options_, std::move(listener));
  return watcher_->Start();
}

void DirectoryManifestWatcher::Stop() {
  if (watcher_) watcher_->Stop();
}

}  // namespace vmlet::controller
