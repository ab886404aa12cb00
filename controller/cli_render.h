#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "controller/state_store.h"

namespace vmlet::controller {

// What `vmlet get` and `vmlet describe` print of the read API's answers
// (requests: api_client.h). Pure functions.

// A meta.k8s.io Table printed as kubectl prints it: upper-case headers, the
// priority-0 columns (every column with `wide`), NAMESPACE first (from each
// row's object metadata) with `with_namespace`, aligned as kubectl's
// tabwriter aligns them (3 spaces of padding, no padding after the last).
// Cells that are null print as nothing (the API writes "<none>" itself).
std::string RenderTable(const nlohmann::json& table, bool wide, bool with_namespace);
// `vmlet describe`: Name, Namespace, Labels, UID, Created, then Spec and
// Status as nested "Label:  value" lines (camelCase keys as kubectl's
// describe words them), a Conditions table and an Events table (Type,
// Reason, Age, From, Message; "<none>" when empty). `events` is an EventList.
std::string RenderDescribe(const nlohmann::json& vm, const nlohmann::json& events, WallTime now);

}  // namespace vmlet::controller
