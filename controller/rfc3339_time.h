#pragma once

#include <string>
#include <string_view>

#include "api/clock.h"
#include "api/status.h"

namespace vmlet::controller {

using WallTime = api::Clock::WallTime;

// The times of vmlet's state files: RFC 3339, UTC.

// "2026-11-28T03:04:05.123Z": UTC, milliseconds, the sub-millisecond part
// dropped (rounded down), so ParseTime(FormatTime(t)) is t to the millisecond.
std::string FormatTime(WallTime time);
// Parses RFC 3339 "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)" (1 to 9
// fraction digits; 'T' and 'Z' in either case). Anything else, including
// out-of-range fields (month 13, Feb 30, second 60) and times a WallTime (64-bit
// nanoseconds) cannot hold, before 1677-09-22 or after 2262-04-11T23:47:15Z,
// is InvalidArgument.
api::StatusOr<WallTime> ParseTime(std::string_view text);
// "20261128T030405Z": UTC, whole seconds, for file names.
std::string FormatCompactTime(WallTime time);

}  // namespace vmlet::controller
