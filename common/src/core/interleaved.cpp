// interleaved.cpp: the 16-row interleaved layout of interleaved.h (repacking at load, reading a row back).
#include "infer/core/interleaved.h"

#include "infer/core/error.h"

#include <cstring>

namespace infer {

bool interleavable(DType type, int cols) {
  if (type == DType::F32) return cols > 0;
  return (type == DType::Q8_0 || type == DType::Q4_0 || type == DType::Q4_1) && cols > 0 && cols % 32 == 0;
}

InterleavedShape interleaved_shape(DType type, int rows, int cols) {
  if (!interleavable(type, cols))
    fail("interleaved layout: {} with {} columns cannot be interleaved (F32, or Q8_0, Q4_0 or Q4_1 with columns a "
         "multiple of 32)",
         dtype_name(type), cols);
  InterleavedShape s;
  s.type = type;
  s.rows = rows;
  s.cols = cols;
  s.groups = (rows + kInterleaveRows - 1) / kInterleaveRows;
  if (type == DType::F32) {  // one 64-byte record (16 floats) per column, nothing else
    s.blocks = cols;
    s.qs_bytes = size_t(kInterleaveRows) * sizeof(float);
    s.d_offset = s.m_offset = s.group_bytes = size_t(cols) * s.qs_bytes;
    return s;
  }
  s.blocks = cols / 32;
  s.qs_bytes = type == DType::Q8_0 ? 512 : 256;
  s.d_offset = size_t(s.blocks) * s.qs_bytes;
  s.m_offset = s.d_offset + size_t(s.blocks) * 32;
  const size_t used = s.m_offset + (type == DType::Q4_1 ? size_t(s.blocks) * 32 : 0);
  s.group_bytes = (used + 63) / 64 * 64;
  return s;
}

void interleave_rows(DType type, const void* src, int rows, int cols, void* dst) {
  const InterleavedShape s = interleaved_shape(type, rows, cols);
  if (type == DType::F32) {
    auto* out = static_cast<float*>(dst);
    const auto* in = static_cast<const float*>(src);
    std::memset(out, 0, s.total_bytes());  // padding rows: zero weights
    for (int row = 0; row < rows; ++row) {
      float* group = out + size_t(row / kInterleaveRows) * cols * kInterleaveRows;
      for (int k = 0; k < cols; ++k) group[size_t(k) * kInterleaveRows + row % kInterleaveRows] = in[size_t(row) * cols + k];
    }
    return;
  }
  const size_t block_bytes = dtype_block_bytes(type);
  const size_t row_bytes = dtype_row_bytes(type, cols);
  auto* out = static_cast<uint8_t*>(dst);
  std::memset(out, 0, s.total_bytes());  // padding rows: zero weights, zero scales
  for (int g = 0; g < s.groups; ++g) {
    uint8_t* group = out + size_t(g) * s.group_bytes;
    for (int r = 0; r < kInterleaveRows && g * kInterleaveRows + r < rows; ++r) {
      const auto* row = static_cast<const uint8_t*>(src) + size_t(g * kInterleaveRows + r) * row_bytes;
      for (int b = 0; b < s.blocks; ++b) {
        const uint8_t* block = row + size_t(b) * block_bytes;
        uint8_t* qs = group + size_t(b) * s.qs_bytes;
        std::memcpy(group + s.d_offset + size_t(b) * 32 + 2 * r, block, 2);
        if (type == DType::Q4_1) std::memcpy(group + s.m_offset + size_t(b) * 32 + 2 * r, block + 2, 2);
        const uint8_t* weights = block + (type == DType::Q4_1 ? 4 : 2);
        const int columns = type == DType::Q8_0 ? 8 : 4;  // 4-byte columns per block
        for (int j = 0; j < columns; ++j) std::memcpy(qs + 64 * j + 4 * r, weights + 4 * j, 4);
      }
    }
  }
}

void dequantize_interleaved_row(const InterleavedShape& s, const void* data, int row, float* dst) {
  if (row < 0 || row >= s.rows) fail("interleaved layout: row {} of {}", row, s.rows);
  const auto* group = static_cast<const uint8_t*>(data) + size_t(row / kInterleaveRows) * s.group_bytes;
  const int r = row % kInterleaveRows;
  if (s.type == DType::F32) {
    const auto* panel = reinterpret_cast<const float*>(group);
    for (int k = 0; k < s.cols; ++k) dst[k] = panel[size_t(k) * kInterleaveRows + r];
    return;
  }
  // Each block is put back as the file stored it and dequantized by dequantize_row: the same floats
  // as the row-major matrix gives.
  uint8_t block[34];
  const int columns = s.type == DType::Q8_0 ? 8 : 4;
  const size_t weights = s.type == DType::Q4_1 ? 4 : 2;
  for (int b = 0; b < s.blocks; ++b) {
    std::memcpy(block, group + s.d_offset + size_t(b) * 32 + 2 * r, 2);
    if (s.type == DType::Q4_1) std::memcpy(block + 2, group + s.m_offset + size_t(b) * 32 + 2 * r, 2);
    const uint8_t* qs = group + size_t(b) * s.qs_bytes;
    for (int j = 0; j < columns; ++j) std::memcpy(block + weights + 4 * j, qs + 64 * j + 4 * r, 4);
    dequantize_row(s.type, block, dst + size_t(b) * 32, 32);
  }
}

}  // namespace infer
