// png_plot.h: a bar chart written as a PNG by a small self-written encoder (zlib from Debian for deflate and
// CRC-32; the PNG chunks, filter bytes and the chart's pixels are ours). No font library: the bar values are
// drawn with a 3x5 pixel digit font, the bar names go in report.md beside the plot.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace infer {

struct Bar {
  double value = 0.0;            // drawn on a log10 scale (the ladder spans orders of magnitude)
  uint32_t rgb = 0x3366CC;
};
struct BarGroup {
  std::vector<Bar> bars;         // one group per view, a gap between groups
};

// An 8-bit RGB image, row-major.
struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;      // (height, width, 3)
  Image(int w, int h);
  void fill_rect(int x0, int y0, int x1, int y1, uint32_t color);
  void draw_number(int x, int y, double value, uint32_t color, int scale);  // "123.4" in the digit font
};

// PNG bytes of an image: signature, IHDR (8-bit RGB), one IDAT (filter 0 per row, zlib), IEND.
std::vector<uint8_t> encode_png(const Image& image);
// Draws the groups as bars on a log scale with each bar's value above it and writes the PNG.
void write_bar_chart_png(const std::string& path, const std::vector<BarGroup>& groups);

}  // namespace infer
