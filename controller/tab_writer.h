#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace vmlet::controller {

// Go's text/tabwriter as kubectl configures it: cells are tab-terminated,
// a column block is a run of consecutive lines that have a cell in that
// column, every cell of a block is padded to max(minwidth, widest + padding),
// the text after a line's last tab is printed as is. Widths count
// characters (UTF-8 code points), not bytes, as Go counts runes.
class TabWriter {
 public:
  TabWriter(size_t min_width, size_t padding) : min_width_(min_width), padding_(padding) {}

  // Adds text; every '\n' ends a line.
  void Write(std::string_view text);
  // The lines written since the last Flush(), aligned; an unterminated last
  // line counts as one.
  std::string Flush();

 private:
  void WriteLines(std::string& out, const std::vector<size_t>& widths, size_t from,
                  size_t to) const;
  void Format(std::string& out, std::vector<size_t>& widths, size_t line0, size_t line1) const;

  const size_t min_width_;
  const size_t padding_;
  std::string current_;
  std::vector<std::vector<std::string>> lines_;
};

}  // namespace vmlet::controller
