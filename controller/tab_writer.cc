#include "controller/tab_writer.h"

#include <algorithm>

namespace vmlet::controller {
namespace {

// Characters, not bytes, as Go counts runes.
size_t Width(const std::string& cell) {
  return static_cast<size_t>(std::count_if(cell.begin(), cell.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

std::vector<std::string> Split(const std::string& line) {
  std::vector<std::string> cells;
  size_t start = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '\t') {
      cells.push_back(line.substr(start, i - start));
      start = i + 1;
    }
  }
  cells.push_back(line.substr(start));
  return cells;
}

}  // namespace

void TabWriter::Write(std::string_view text) {
  for (char c : text) {
    if (c == '\n') {
      lines_.push_back(Split(current_));
      current_.clear();
    } else {
      current_ += c;
    }
  }
}

std::string TabWriter::Flush() {
  if (!current_.empty()) {
    lines_.push_back(Split(current_));
    current_.clear();
  }
  std::string out;
  std::vector<size_t> widths;
  Format(out, widths, 0, lines_.size());
  lines_.clear();
  return out;
}

void TabWriter::WriteLines(std::string& out, const std::vector<size_t>& widths, size_t from,
                           size_t to) const {
  for (size_t i = from; i < to; ++i) {
    const std::vector<std::string>& cells = lines_[i];
    for (size_t j = 0; j < cells.size(); ++j) {
      out += cells[j];
      if (j + 1 < cells.size() && j < widths.size() && Width(cells[j]) < widths[j]) {
        out.append(widths[j] - Width(cells[j]), ' ');
      }
    }
    out += '\n';
  }
}

void TabWriter::Format(std::string& out, std::vector<size_t>& widths, size_t line0,
                       size_t line1) const {
  const size_t column = widths.size();
  for (size_t row = line0; row < line1; ++row) {
    if (column + 1 >= lines_[row].size()) continue;
    WriteLines(out, widths, line0, row);
    line0 = row;
    size_t width = min_width_;
    for (; row < line1; ++row) {
      if (column + 1 >= lines_[row].size()) break;
      width = std::max(width, Width(lines_[row][column]) + padding_);
    }
    widths.push_back(width);
    Format(out, widths, line0, row);
    widths.pop_back();
    line0 = row;
    // The line that ended the block has no cell here: the loop skips it.
  }
  WriteLines(out, widths, line0, line1);
}

}  // namespace vmlet::controller
