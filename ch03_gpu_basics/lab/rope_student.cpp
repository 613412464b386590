// rope_student.cpp: ch03 lab, exercise 1: rotary position embedding (RoPE).
//
// Built only with -DLAB=ch03 (scripts/lab.sh ch03), where it replaces common/src/cpu/rope_cpu.cpp. The whole
// engine then uses your function: the forward pass applies it to every query and key of every layer.
// Run `scripts/lab.sh ch03` to grade it; read ch03_gpu_basics/lab/README.md first.
//
// ---- What RoPE does ------------------------------------------------------------------------------
// Attention compares a query with keys through dot products. RoPE makes that dot product depend on how
// far apart the two tokens are: it rotates pairs of dimensions of each query and key head by an angle
// proportional to the token's position. Rotating q by angle m*w and k by n*w changes their dot product
// only through the difference (m - n)*w, so attention "sees" relative positions.
//
// ---- The maths (implement exactly this) ----------------------------------------------------------
// x holds n tokens, each n_heads heads of head_dim floats:   x[(t * n_heads + h) * head_dim + d]
// Token t is at position  pos = start_pos + t   (start_pos > 0 when earlier tokens are already cached).
// A head has head_dim / 2 pairs. Pair i (0 <= i < head_dim/2) rotates by
//     angle = pos * theta^(-2i / head_dim)            e.g. theta = 10000: pair 0 turns 1 rad per position,
//                                                      the last pair turns almost not at all
// and a pair (a, b) becomes
//     a' = a * cos(angle) - b * sin(angle)
//     b' = a * sin(angle) + b * cos(angle)
// Every head of a token uses the same angles (they depend on pos and i only, never on h).
//
// ---- Which two dimensions form pair i: the two layouts ---------------------------------------------
//   RopeLayout::Interleaved (llama2.c, GGUF files):  dimensions (2i, 2i + 1)        neighbours
//   RopeLayout::HalfSplit   (Hugging Face "neox"):   dimensions (i, i + head_dim/2)  one in each half
// The tests check both. Both are correct: they differ only in how the checkpoint ordered the rows of Wq/Wk.
//
// ---- Practicalities --------------------------------------------------------------------------------
//  - Read a and b before writing either (a' needs the old b, b' needs the old a).
//  - float precision is enough; compute the frequency as 1.0f / std::pow(theta, float(2 * i) / head_dim)
//    to match llama2.c bit for bit in the end-to-end test (double is also accepted by the unit tests).
//  - `threads` is how many OpenMP threads you may use (`#pragma omp parallel for num_threads(threads)`);
//    a correct single-threaded loop passes every test.
//  - Precomputing cos/sin per (t, i) once, outside the head loop, saves n_heads - 1 of every n_heads calls.
#include "infer/cpu/cpu_kernels.h"

#include <cmath>

namespace infer::cpu {

// x: (n, n_heads, head_dim), rotated in place.
void rope(float* x, int n, int n_heads, int head_dim, int start_pos, float theta, RopeLayout layout, int threads) {
  // TODO(student): rotate every pair of every head of every token, as described above.
  // As written, x is returned unrotated: the lab tests fail until you implement it.
}

}  // namespace infer::cpu
