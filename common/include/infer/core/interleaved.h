// interleaved.h: a block-quantized (or f32) matrix with 16 rows interleaved, the CPU's compute layout.
//
// GGUF stores a matrix row after row, each row a run of 32-weight blocks (dtype.h). A SIMD dot product
// over that layout puts one row's weights in a register; each block's integer sum then ends in 8 or 16
// lanes that must be scaled one by one (quant_kernels.h's 16-lane order: 3 float operations per block
// pair and token, as many as an f32 GEMM spends on the same 64 weights). Interleaving 16 rows turns
// that around: lane r of a register holds row r, so one 4-byte activation broadcast feeds 16 rows, a
// block's integer sum finishes inside its lane, and the float work is one convert, one multiply and
// one fma per block for 16 rows (interleaved_kernels.h).
//
// Rows are taken 16 at a time (a group; the last one padded with zero rows). Group g holds, for its
// nb = cols / 32 blocks (every block b of the 16 rows):
//   qs plane:  nb x kQsBytes bytes; block b's record is 4-byte columns: byte 64 * j + 4 * r + i is
//     Q8_0 (kQsBytes 512, j = 0..7): weight 4j + i of row r, as int8 (the file's byte);
//     Q4_0 / Q4_1 (kQsBytes 256, j = 0..3): weight 4j + i of row r in the low nibble and weight
//       16 + 4j + i in the high one (the file's byte 4j + i of that row's block: nibbles are not moved).
//   d plane:   nb x 16 f16 scales (row r's at 2 * r).
//   m plane:   Q4_1 only, nb x 16 f16 minimums.
// The group's size is rounded up to 64 bytes, so every qs record starts on a cache line. Total size:
// the file's bytes for the rows (plus padding), so a model takes the same memory either way.
//
// F32 (any column count) uses the same 16-row groups with nothing but the weights: group g is cols records of
// 64 bytes, record k = column k of rows 16g..16g+15 as 16 floats (a "panel"; blocks = cols, qs_bytes = 64).
// GEMM v4 (cpu/matmul_panels_cpu.cpp) loads a record into one register and broadcasts x[k] to it.
#pragma once

#include "infer/core/dtype.h"

#include <cstddef>
#include <cstdint>

namespace infer {

constexpr int kInterleaveRows = 16;

// F32 (any cols > 0), and Q8_0, Q4_0 and Q4_1 with cols a multiple of 32.
bool interleavable(DType type, int cols);

struct InterleavedShape {
  DType type = DType::Q8_0;
  int rows = 0;
  int cols = 0;
  int groups = 0;         // ceil(rows / 16)
  int blocks = 0;         // cols / 32
  size_t qs_bytes = 0;    // one block of 16 rows in the qs plane: 512 or 256
  size_t d_offset = 0;    // the d plane, from the group's start
  size_t m_offset = 0;    // the m plane (Q4_1)
  size_t group_bytes = 0; // one group, 64-byte multiple
  size_t total_bytes() const { return size_t(groups) * group_bytes; }
};
InterleavedShape interleaved_shape(DType type, int rows, int cols);  // throws infer::Error if not interleavable

// Rearranges `rows` rows of the file's blocks (src, row-major) into dst (interleaved_shape(...).total_bytes()).
void interleave_rows(DType type, const void* src, int rows, int cols, void* dst);
// Row `row` of an interleaved matrix, dequantized to float (the embedding lookup; the tests).
void dequantize_interleaved_row(const InterleavedShape& shape, const void* data, int row, float* dst);

}  // namespace infer
