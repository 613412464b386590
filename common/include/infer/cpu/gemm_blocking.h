// gemm_blocking.h: what the f32 GEMMs v3 (matmul_cpu.cpp) and v4 (matmul_panels_cpu.cpp) share: the rounding of
// one lane step, a per-thread buffer for the packed x, and the token blocks whose packed x stays in L2.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace infer::cpu {

// c + a * b for one lane of a dot product: a fused multiply-add (one rounding) where the target has
// FMA, else a multiply and an add (a call to the libm fma would be ~20x slower). Written out, not
// left to the compiler's contraction of `c += a * b`, so the GEMV, every GEMM and their intrinsics
// (which are FMAs) round identically.
inline float lane_fma(float a, float b, float c) {
#if defined(__FMA__) || defined(__AVX512F__)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

// A grow-only 64-byte-aligned buffer per calling thread for a GEMM's packed x: a fresh allocation of hundreds of
// KB on every matmul would be an mmap and page faults each time. (One buffer per thread, shared by the GEMMs:
// each packs and uses it within one call.)
inline float* packed_x_buffer(size_t floats) {
  thread_local std::vector<float> storage;
  constexpr size_t kSlack = 64 / sizeof(float);
  if (storage.size() < floats + kSlack) storage.resize(floats + kSlack);
  const auto address = reinterpret_cast<uintptr_t>(storage.data());
  return storage.data() + (((64 - address % 64) % 64) / sizeof(float));
}

// Tokens per block when n tokens go in tiles of tile_tokens (the last may be shorter), a tile's packed x taking
// tile_bytes: the fewest blocks that keep a block's packed x within budget_bytes, of equal numbers of whole tiles
// (n = 512 in 6-token tiles at 576 columns, 384 KiB: 4 blocks of 22 tiles, not 3 of 28 and a short one).
inline int token_block_tokens(int n, int tile_tokens, size_t tile_bytes, size_t budget_bytes) {
  const int max_block_tiles = int(std::max<size_t>(1, budget_bytes / std::max<size_t>(tile_bytes, 1)));
  const int token_tiles = (n + tile_tokens - 1) / tile_tokens;
  const int blocks = (token_tiles + max_block_tiles - 1) / max_block_tiles;
  return tile_tokens * ((token_tiles + blocks - 1) / std::max(blocks, 1));
}

}  // namespace infer::cpu
