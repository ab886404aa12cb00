#include "controller/cli.h"

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "api/validation.h"
#include "manifests/manifest_files.h"

namespace vmlet::controller {
namespace {

constexpr const char* kVersion = VMLET_VERSION;

int Validate(const std::vector<std::string>& paths, const manifests::ParseOptions& options,
             std::ostream& out, std::ostream& err) {
  manifests::LoadResult result = manifests::LoadManifests(paths, options);
  for (const manifests::ManifestVm& vm : result.vms) {
    out << "ok " << vm.spec.key() << " " << vm.location.ToString() << "\n";
  }
  for (const manifests::ManifestError& e : result.errors) err << e.ToString() << "\n";
  out << result.vms.size() << " valid VirtualMachine" << (result.vms.size() == 1 ? "" : "s") << ", "
      << result.errors.size() << " error" << (result.errors.size() == 1 ? "" : "s") << "\n";
  return result.errors.empty() ? 0 : 1;
}

}  // namespace

int RunCli(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CLI::App app{"vmlet: keeps the VMs on this host equal to the manifests in a directory"};
  app.require_subcommand(1);
  bool show_version = false;
  app.add_flag("--version", show_version, "Print the version and exit");

  CLI::App* version = app.add_subcommand("version", "Print the version");

  CLI::App* validate = app.add_subcommand(
      "validate", "Check manifests offline, exactly as `vmlet run` would read them");
  std::vector<std::string> paths;
  manifests::ParseOptions options;
  validate->add_option("paths", paths, "Manifest files or directories (searched recursively)")
      ->required();
  validate->add_option("--image-root", options.image_roots,
                       "Every path field must resolve inside one of these directories "
                       "(repeatable)");
  validate
      ->add_option("--default-driver", options.default_driver,
                   "The driver of manifests that name none")
      ->capture_default_str()
      ->check([](const std::string& driver) {
        return api::IsKnownDriver(driver) ? std::string()
                                          : "unknown driver (known: qemu, cloud-hypervisor, fake)";
      });

  // "--version" alone satisfies the parser without a subcommand.
  app.preparse_callback([&](size_t) {
    for (int i = 1; i < argc; ++i) {
      if (std::string_view(argv[i]) == "--version") app.require_subcommand(0);
    }
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e, out, err) == 0 ? 0 : 2;
  }
  if (show_version || version->parsed()) {
    out << "vmlet " << kVersion << "\n";
    return 0;
  }
  if (validate->parsed()) return Validate(paths, options, out, err);
  return 2;
}

}  // namespace vmlet::controller
