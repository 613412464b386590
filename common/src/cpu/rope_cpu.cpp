// rope_cpu.cpp: rotary position embedding.
//
// Pair i of a head (i in [0, head_dim/2)) is rotated by the angle pos * theta^(-2i/head_dim):
//   (a, b) -> (a cos - b sin, a sin + b cos)
// Which two dimensions form pair i depends on how the checkpoint ordered the Q/K rows:
//   Interleaved (llama2.c, GGUF): dimensions (2i, 2i+1)
//   HalfSplit   (HF, "neox"):     dimensions (i, i + head_dim/2)
// Both give the same attention scores once the rows are permuted to match (tested).
#include "infer/cpu/cpu_kernels.h"

#include <cmath>
#include <vector>

namespace infer::cpu {

void rope(float* x, int n, int n_heads, int head_dim, int start_pos, float theta, RopeLayout layout, int threads) {
  const int half = head_dim / 2;
  // The angles depend only on (position, pair), not on the head: compute them once per call.
  std::vector<float> cos_table(size_t(n) * half), sin_table(size_t(n) * half);
  for (int t = 0; t < n; ++t) {
    for (int i = 0; i < half; ++i) {
      // Written as llama2.c computes it (float powf, then cosf/sinf) so greedy tokens match it.
      const float frequency = 1.0f / std::pow(theta, float(2 * i) / float(head_dim));
      const float angle = float(start_pos + t) * frequency;
      cos_table[size_t(t) * half + i] = std::cos(angle);
      sin_table[size_t(t) * half + i] = std::sin(angle);
    }
  }
  // With the Interleaved layout pair i is (2i, 2i+1); with HalfSplit it is (i, i + half).
  const int first_stride = layout == RopeLayout::Interleaved ? 2 : 1;
  const int second_offset = layout == RopeLayout::Interleaved ? 1 : half;
#pragma omp parallel for collapse(2) num_threads(threads) if (n > 1)
  for (int t = 0; t < n; ++t) {
    for (int h = 0; h < n_heads; ++h) {
      float* head = x + (size_t(t) * n_heads + h) * head_dim;
      const float* cos_row = cos_table.data() + size_t(t) * half;
      const float* sin_row = sin_table.data() + size_t(t) * half;
      for (int i = 0; i < half; ++i) {
        float& a = head[i * first_stride];
        float& b = head[i * first_stride + second_offset];
        const float a0 = a, b0 = b;
        a = a0 * cos_row[i] - b0 * sin_row[i];
        b = a0 * sin_row[i] + b0 * cos_row[i];
      }
    }
  }
}

}  // namespace infer::cpu
