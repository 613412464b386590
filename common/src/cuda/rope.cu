// rope.cu: rotary position embedding, the same convention as rope_cpu.cpp.
//
// Pair i of a head (i in [0, head_dim/2)) at position pos is rotated by angle = pos * frequency_i,
// frequency_i = 1 / powf(theta, 2i / head_dim):   (a, b) -> (a cos - b sin, a sin + b cos)
//   Interleaved (llama2.c, GGUF): pair i is dimensions (2i, 2i+1)
//   HalfSplit   (HF, "neox"):     pair i is dimensions (i, i + head_dim/2)
// Versions:
//   v1_thread_per_pair: one thread per (token, head, pair) in a grid-stride loop. The frequencies are
//                       computed on the host with the CPU's exact expression (std::pow) and passed
//                       as a kernel argument, so the angle pos * frequency is bit-identical to the
//                       CPU's; only cosf/sinf (<= 2 ulp) can differ. Device powf would add its own
//                       ulps, multiplied by pos. Each token's position is read from `positions` (device
//                       ints, one per token: a ragged batch's tokens are each at their own position).
#include "cuda_check.h"
#include "cuda_device.cuh"
#include "cuda_kernels.h"

#include <cmath>
#include <string>

namespace infer::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxPairs = 256;  // head_dim <= 512; real models use 64-256

// Passed by value as a kernel argument (1 KiB, well under the 4 KiB argument limit).
struct RopeFrequencies {
  float value[kMaxPairs];  // (head_dim / 2)
};

__global__ void rope_v1_thread_per_pair(float* x, int n, int n_heads, int head_dim, const int* positions,
                                        RopeFrequencies frequencies, int first_stride, int second_offset) {
  const int half = head_dim / 2;
  const size_t count = size_t(n) * size_t(n_heads) * size_t(half);
  for (size_t index = size_t(blockIdx.x) * blockDim.x + threadIdx.x; index < count;
       index += size_t(gridDim.x) * blockDim.x) {
    const int i = int(index % size_t(half));                 // pair within the head
    const size_t head = index / size_t(half);                // (t, h) flattened: t * n_heads + h
    const int t = int(head / size_t(n_heads));
    float* head_x = x + head * size_t(head_dim);              // (head_dim)
    const float angle = float(positions[t]) * frequencies.value[i];
    const float c = cosf(angle), s = sinf(angle);
    float& a = head_x[i * first_stride];
    float& b = head_x[i * first_stride + second_offset];
    const float a0 = a, b0 = b;
    a = a0 * c - b0 * s;
    b = a0 * s + b0 * c;
  }
}

}  // namespace

void rope(float* x, int n, int n_heads, int head_dim, const int* positions, float theta, RopeLayout layout,
          cudaStream_t stream) {
  if (n <= 0 || n_heads <= 0) return;
  const int half = head_dim / 2;
  if (head_dim <= 0 || head_dim % 2 != 0 || half > kMaxPairs)
    throw_error("cuda rope: head_dim " + std::to_string(head_dim) + " must be even and at most " +
                std::to_string(2 * kMaxPairs));
  RopeFrequencies frequencies{};
  for (int i = 0; i < half; ++i) frequencies.value[i] = 1.0f / std::pow(theta, float(2 * i) / float(head_dim));
  const int first_stride = layout == RopeLayout::Interleaved ? 2 : 1;
  const int second_offset = layout == RopeLayout::Interleaved ? 1 : half;
  const size_t pairs = size_t(n) * size_t(n_heads) * size_t(half);
  rope_v1_thread_per_pair<<<grid_for(pairs, kThreads), kThreads, 0, stream>>>(x, n, n_heads, head_dim, positions,
                                                                              frequencies, first_stride, second_offset);
  CUDA_CHECK_LAUNCH();
}

}  // namespace infer::cuda
