// quant_bound.h: the error bound of an integer matmul on block-quantized weights (test_matmul_quant.cpp,
// test_matmul_interleaved.cpp). The weights are used exactly (dequantized), so the error is the activations'
// rounding, |x_i - d_b q_i| <= d_b / 2, times |w_i|, plus float rounding of the sums (1e-5 of sum |w x|).
#pragma once

#include "infer/core/dtype.h"
#include "infer/cpu/quant_kernels.h"

#include <cmath>
#include <cstdint>
#include <vector>

namespace infer::test {

// How many outputs of y (n, rows) = x (n, cols) . W^T fall outside the bound; W row-major in `type`.
inline int outside_activation_bound(DType type, const uint8_t* row_major, int rows, int cols, const float* x, int n,
                                    const float* y, cpu::ActivationBits bits) {
  cpu::QuantizedActivations q;
  cpu::quantize_activations(x, n, cols, q, bits);
  std::vector<float> row(static_cast<size_t>(cols));
  int outside = 0;
  for (int r = 0; r < rows; ++r) {
    dequantize_row(type, row_major + size_t(r) * dtype_row_bytes(type, cols), row.data(), cols);
    for (int t = 0; t < n; ++t) {
      double exact = 0.0, magnitude = 0.0, bound = 0.0;
      for (int i = 0; i < cols; ++i) {
        exact += double(row[size_t(i)]) * x[size_t(t) * cols + i];
        magnitude += std::fabs(double(row[size_t(i)]) * x[size_t(t) * cols + i]);
        bound += std::fabs(double(row[size_t(i)])) * 0.5 * q.d_row(t)[i / 32];
      }
      bound = bound * (1 + 1e-6) + 1e-5 * magnitude + 1e-6;
      if (std::fabs(double(y[size_t(t) * rows + r]) - exact) > bound) ++outside;
    }
  }
  return outside;
}

}  // namespace infer::test
