#include "controller/rfc3339_time.h"

#include <chrono>
#include <cstdint>
#include <cstdio>

namespace vmlet::controller {
namespace {

using api::Status;
using api::StatusOr;

struct CivilTime {
  int year;
  unsigned month, day, hour, minute, second, millis;
};

CivilTime ToCivil(WallTime time) {
  using namespace std::chrono;
  const auto ms = floor<milliseconds>(time);
  const auto day = floor<days>(ms);
  const year_month_day ymd(day);
  const hh_mm_ss hms(ms - day);
  return {static_cast<int>(ymd.year()),
          static_cast<unsigned>(ymd.month()),
          static_cast<unsigned>(ymd.day()),
          static_cast<unsigned>(hms.hours().count()),
          static_cast<unsigned>(hms.minutes().count()),
          static_cast<unsigned>(hms.seconds().count()),
          static_cast<unsigned>(hms.subseconds().count())};
}

// Reads exactly `width` decimal digits at `pos`.
bool ReadDigits(std::string_view text, size_t& pos, size_t width, int& out) {
  if (pos + width > text.size()) return false;
  int value = 0;
  for (size_t i = 0; i < width; ++i) {
    const char c = text[pos + i];
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  pos += width;
  out = value;
  return true;
}

bool Expect(std::string_view text, size_t& pos, char c) {
  if (pos >= text.size() || text[pos] != c) return false;
  ++pos;
  return true;
}

}  // namespace

// "20261128T030405Z", for file names.
std::string FormatCompactTime(WallTime time) {
  const CivilTime c = ToCivil(time);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d%02u%02uT%02u%02u%02uZ", c.year, c.month, c.day, c.hour,
                c.minute, c.second);
  return buf;
}

std::string FormatTime(WallTime time) {
  const CivilTime c = ToCivil(time);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02u-%02uT%02u:%02u:%02u.%03uZ", c.year, c.month, c.day,
                c.hour, c.minute, c.second, c.millis);
  return buf;
}

StatusOr<WallTime> ParseTime(std::string_view text) {
  using namespace std::chrono;
  auto bad = [&] {
    return Status::InvalidArgument("\"" + std::string(text) +
                                   "\" is not an RFC 3339 time (2026-11-28T03:04:05.123Z)");
  };
  size_t pos = 0;
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!ReadDigits(text, pos, 4, year) || !Expect(text, pos, '-') ||
      !ReadDigits(text, pos, 2, month) || !Expect(text, pos, '-') ||
      !ReadDigits(text, pos, 2, day)) {
    return bad();
  }
  if (pos >= text.size() || (text[pos] != 'T' && text[pos] != 't')) return bad();
  ++pos;
  if (!ReadDigits(text, pos, 2, hour) || !Expect(text, pos, ':') ||
      !ReadDigits(text, pos, 2, minute) || !Expect(text, pos, ':') ||
      !ReadDigits(text, pos, 2, second)) {
    return bad();
  }
  nanoseconds fraction{0};
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    int64_t nanos = 0;
    size_t digits = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      if (++digits > 9) return bad();
      nanos = nanos * 10 + (text[pos] - '0');
      ++pos;
    }
    if (digits == 0) return bad();
    for (size_t i = digits; i < 9; ++i) nanos *= 10;
    fraction = nanoseconds(nanos);
  }
  minutes offset{0};
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    const bool negative = text[pos] == '-';
    ++pos;
    int offset_hours = 0, offset_minutes = 0;
    if (!ReadDigits(text, pos, 2, offset_hours) || !Expect(text, pos, ':') ||
        !ReadDigits(text, pos, 2, offset_minutes) || offset_hours > 23 || offset_minutes > 59) {
      return bad();
    }
    offset = hours(offset_hours) + minutes(offset_minutes);
    if (negative) offset = -offset;
  } else {
    return bad();
  }
  if (pos != text.size()) return bad();

  const year_month_day ymd{std::chrono::year(year),
                           std::chrono::month(static_cast<unsigned>(month)),
                           std::chrono::day(static_cast<unsigned>(day))};
  if (!ymd.ok() || hour > 23 || minute > 59 || second > 59) return bad();
  // In whole seconds first: WallTime counts nanoseconds in 64 bits, which
  // spans only the years 1678 to 2261, and must not overflow.
  const sys_seconds utc = sys_days(ymd) + hours(hour) + minutes(minute) + seconds(second) - offset;
  constexpr seconds kEarliest = ceil<seconds>(WallTime::min().time_since_epoch()) + seconds(1);
  constexpr seconds kLatest = floor<seconds>(WallTime::max().time_since_epoch()) - seconds(1);
  if (utc.time_since_epoch() < kEarliest || utc.time_since_epoch() > kLatest) {
    return Status::InvalidArgument("\"" + std::string(text) + "\" is out of range");
  }
  return time_point_cast<WallTime::duration>(utc) + duration_cast<WallTime::duration>(fraction);
}

}  // namespace vmlet::controller
