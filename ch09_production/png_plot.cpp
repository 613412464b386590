// png_plot.cpp: PNG encoding (PNG spec: signature, chunks of length + type + data + CRC-32 over type and
// data; IHDR; IDAT holding the zlib stream of the filtered rows; IEND) and the ladder's bar chart.
#include "png_plot.h"

#include "infer/core/error.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <fstream>

namespace infer {

Image::Image(int w, int h) : width(w), height(h), rgb(size_t(w) * size_t(h) * 3, 255) {}

void Image::fill_rect(int x0, int y0, int x1, int y1, uint32_t color) {
  for (int y = std::max(0, y0); y < std::min(height, y1); ++y) {
    for (int x = std::max(0, x0); x < std::min(width, x1); ++x) {
      uint8_t* p = &rgb[(size_t(y) * size_t(width) + size_t(x)) * 3];
      p[0] = uint8_t(color >> 16), p[1] = uint8_t(color >> 8), p[2] = uint8_t(color);
    }
  }
}

namespace {

// 3x5 glyphs, one row per 3 bits (top row first): digits 0-9, then '.', then 'x'.
constexpr uint16_t kGlyphs[12] = {
    0b111'101'101'101'111, 0b010'110'010'010'111, 0b111'001'111'100'111, 0b111'001'111'001'111,
    0b101'101'111'001'001, 0b111'100'111'001'111, 0b111'100'111'101'111, 0b111'001'010'010'010,
    0b111'101'111'101'111, 0b111'101'111'001'111, 0b000'000'000'000'010, 0b000'101'010'101'000};

int glyph_index(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c == '.') return 10;
  return 11;
}

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(uint8_t(v >> shift));
}

void put_chunk(std::vector<uint8_t>& out, const char* type, const std::vector<uint8_t>& data) {
  put_u32(out, uint32_t(data.size()));
  const size_t type_at = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  // The CRC covers the type and the data, not the length.
  put_u32(out, uint32_t(crc32(0, out.data() + type_at, uInt(4 + data.size()))));
}

}  // namespace

void Image::draw_number(int x, int y, double value, uint32_t color, int scale) {
  const std::string text = value >= 100 ? fmt::format("{:.0f}", value) : fmt::format("{:.1f}", value);
  for (char c : text) {
    const uint16_t glyph = kGlyphs[glyph_index(c)];
    for (int row = 0; row < 5; ++row) {
      for (int col = 0; col < 3; ++col) {
        if (glyph & (1u << (14 - (row * 3 + col)))) {
          fill_rect(x + col * scale, y + row * scale, x + (col + 1) * scale, y + (row + 1) * scale, color);
        }
      }
    }
    x += 4 * scale;
  }
}

std::vector<uint8_t> encode_png(const Image& image) {
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  std::vector<uint8_t> header;
  put_u32(header, uint32_t(image.width));
  put_u32(header, uint32_t(image.height));
  header.insert(header.end(), {8, 2, 0, 0, 0});  // 8 bits, RGB, deflate, adaptive filtering, no interlace
  put_chunk(png, "IHDR", header);
  // Each row starts with its filter type (0: none).
  std::vector<uint8_t> raw;
  const size_t stride = size_t(image.width) * 3;
  for (int y = 0; y < image.height; ++y) {
    raw.push_back(0);
    raw.insert(raw.end(), image.rgb.begin() + long(size_t(y) * stride), image.rgb.begin() + long(size_t(y + 1) * stride));
  }
  uLongf compressed_size = compressBound(uLong(raw.size()));
  std::vector<uint8_t> compressed(compressed_size);
  if (compress2(compressed.data(), &compressed_size, raw.data(), uLong(raw.size()), 9) != Z_OK) fail("PNG: zlib compress failed");
  compressed.resize(compressed_size);
  put_chunk(png, "IDAT", compressed);
  put_chunk(png, "IEND", {});
  return png;
}

void write_bar_chart_png(const std::string& path, const std::vector<BarGroup>& groups) {
  constexpr int kBar = 60, kGap = 20, kGroupGap = 60, kMargin = 40, kHeight = 420, kScale = 3;
  int bars = 0;
  double max_value = 1.0, min_value = 1e300;
  for (const BarGroup& group : groups) {
    bars += int(group.bars.size());
    for (const Bar& bar : group.bars) {
      max_value = std::max(max_value, bar.value);
      if (bar.value > 0) min_value = std::min(min_value, bar.value);
    }
  }
  const int width = 2 * kMargin + bars * (kBar + kGap) + std::max(0, int(groups.size()) - 1) * kGroupGap;
  Image image(std::max(width, 200), kHeight);
  // Log scale from a decade below the smallest bar to the largest.
  const double lo = std::floor(std::log10(std::max(min_value, 1e-3))) - 0.3;
  const double hi = std::log10(max_value) + 0.15;
  const int base = kHeight - kMargin, top = kMargin;
  auto y_of = [&](double value) {
    const double t = (std::log10(std::max(value, 1e-9)) - lo) / (hi - lo);
    return base - int(std::clamp(t, 0.0, 1.0) * (base - top));
  };
  // Grid lines at every decade.
  for (double decade = std::ceil(lo); decade <= hi; decade += 1.0) {
    const int y = y_of(std::pow(10.0, decade));
    image.fill_rect(kMargin / 2, y, image.width - kMargin / 2, y + 1, 0xDDDDDD);
  }
  image.fill_rect(kMargin / 2, base, image.width - kMargin / 2, base + 2, 0x333333);
  int x = kMargin;
  for (const BarGroup& group : groups) {
    for (const Bar& bar : group.bars) {
      const int y = y_of(bar.value);
      image.fill_rect(x, y, x + kBar, base, bar.rgb);
      image.draw_number(x, y - 6 * kScale, bar.value, 0x222222, kScale);
      x += kBar + kGap;
    }
    x += kGroupGap;
  }
  const std::vector<uint8_t> png = encode_png(image);
  std::ofstream out(path, std::ios::binary);
  if (!out) fail("cannot write {}", path);
  out.write(reinterpret_cast<const char*>(png.data()), std::streamsize(png.size()));
}

}  // namespace infer
