#pragma once

#include <nlohmann/json.hpp>

#include "api/status.h"
#include "controller/vm_event.h"
#include "controller/vm_record.h"
#include "controller/vm_status.h"

namespace vmlet::controller {

// The JSON forms written to disk (camelCase keys; times as RFC 3339 UTC with
// milliseconds). Optional values (a record's times and vmm, a status's vmm and
// lastBootDurationSeconds) are omitted when none; FromJson reads an absent or
// null one as none. A record carries "version": 1.
//
// FromJson fails with InvalidArgument naming the field ("vmm.pid: must be an
// integer") when a known field has the wrong type or is out of range (a
// record's lastExitPhase is "" or a phase's name, api::PhaseName), when a
// required field is missing (a record's version, driver and specHash, and
// every field of its vmm, whose pid must be positive; a condition's type,
// status and lastTransitionTime; an event's time, type and reason), or when a
// record's version is not 1. Unknown fields are ignored (forward compatible).
nlohmann::json ToJson(const VmRecord& record);
nlohmann::json ToJson(const VmStatus& status);
nlohmann::json ToJson(const Event& event);
api::StatusOr<VmRecord> VmRecordFromJson(const nlohmann::json& j);
api::StatusOr<VmStatus> VmStatusFromJson(const nlohmann::json& j);
api::StatusOr<Event> EventFromJson(const nlohmann::json& j);

}  // namespace vmlet::controller
