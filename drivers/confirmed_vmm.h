#pragma once

#include <utility>

#include "drivers/vmm_handle.h"

namespace vmlet::drivers {

class VmmIdentity;

// A VMM whose identity VmmIdentity has just confirmed: the only way to ask a
// driver to act on a VMM. Drivers take `const ConfirmedVmm&`, so an
// unconfirmed process can never be signalled or called.
//
// REQUIRES: used only by the worker that holds the VM's key, and not after
// VmmIdentity::Forget(key) (which closes the pidfd).
class ConfirmedVmm {
 public:
  const VmmHandle& handle() const { return handle_; }
  // The pidfd VmmIdentity holds for the process (for pidfd_send_signal), or
  // -1 when the ProcFs has no real processes (the fake driver).
  int pidfd() const { return pidfd_; }

 private:
  friend class VmmIdentity;
  ConfirmedVmm(VmmHandle handle, int pidfd) : handle_(std::move(handle)), pidfd_(pidfd) {}

  VmmHandle handle_;
  int pidfd_;
};

}  // namespace vmlet::drivers
