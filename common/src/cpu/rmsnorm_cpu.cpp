// rmsnorm_cpu.cpp: RMSNorm, out = x / sqrt(mean(x^2) + eps) * weight (no mean subtraction, no bias).
#include "infer/cpu/cpu_kernels.h"

#include <cmath>

namespace infer::cpu {

void rmsnorm_row(const float* x, const float* weight, float* out, int dim, float eps) {
  float sum_squares = 0.0f;
  for (int i = 0; i < dim; ++i) sum_squares += x[i] * x[i];
  const float scale = 1.0f / std::sqrt(sum_squares / float(dim) + eps);
  for (int i = 0; i < dim; ++i) out[i] = x[i] * scale * weight[i];
}

}  // namespace infer::cpu
