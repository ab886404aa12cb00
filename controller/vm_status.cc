#include "controller/vm_status.h"

#include <utility>

namespace vmlet::controller {

void SetCondition(VmStatus& status, Condition c) {
  for (Condition& existing : status.conditions) {
    if (existing.type != c.type) continue;
    if (existing.status == c.status) c.last_transition_time = existing.last_transition_time;
    existing = std::move(c);
    return;
  }
  status.conditions.push_back(std::move(c));
}

const Condition* FindCondition(const VmStatus& status, std::string_view type) {
  for (const Condition& c : status.conditions) {
    if (c.type == type) return &c;
  }
  return nullptr;
}

}  // namespace vmlet::controller
