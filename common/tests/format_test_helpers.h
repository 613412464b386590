// format_test_helpers.h: helpers shared by the dtype, loader and fuzz tests.
#pragma once

#include "infer/core/dtype.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace infer::test {

// The whole file. A file that cannot be opened, or holds fewer than min_size bytes (an empty one by
// default), fails the test with a message naming it, so no caller reads past a short buffer.
inline std::vector<uint8_t> read_bytes(const std::filesystem::path& path, size_t min_size = 1) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path.string());
  std::vector<uint8_t> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  REQUIRE_MESSAGE(bytes.size() >= min_size,
                  path.string() << " holds " << bytes.size() << " bytes, fewer than the " << min_size << " expected");
  return bytes;
}

// Writes `size` bytes to `path`. An existing file is overwritten in place and then cut to `size`, not
// truncated to zero first: on ext4 a truncate-to-zero followed by a write makes close() wait for the data to
// reach the disk, which turned the loaders' truncation sweeps (tens of thousands of variants) into minutes
// of I/O waiting on a loaded machine.
inline void write_bytes(const std::filesystem::path& path, const uint8_t* data, size_t size) {
  std::error_code ec;
  const bool exists = std::filesystem::is_regular_file(path, ec);
  {
    std::ofstream out(path, exists ? std::ios::binary | std::ios::in | std::ios::out : std::ios::binary | std::ios::out);
    out.write(reinterpret_cast<const char*>(data), std::streamsize(size));
    REQUIRE_MESSAGE(out.good(), "cannot write " << path.string());
  }
  std::filesystem::resize_file(path, size);
}
inline void write_bytes(const std::filesystem::path& path, const std::vector<uint8_t>& bytes) {
  write_bytes(path, bytes.data(), bytes.size());
}

// Largest |x - dequantize(quantize(x))| allowed for one value x of `block` (one block of the type:
// 32 values for block formats, 1 value otherwise). Each bound is derived from the format's step:
//   f16:  half an ulp: 2^-11 |x|, plus 2^-25 for the subnormal range (absolute step 2^-24)
//   bf16: half an ulp with 8 significant bits: 2^-8 |x|
//   q8_0: q = round(x / d) is within d/2 of x / d; dequantizing with the fp16-rounded scale d16
//         adds |q| |d - d16| <= 127 |d - d16|
//   q4_0: one full step |d| (the side opposite the extreme value clamps at +7, so it can lose a
//         step), plus 8 |d - d16| for the fp16 scale
//   q4_1: d/2 for the rounding, plus 15 |d - d16| + |m - m16| for the fp16 scale and offset
// A relative 1e-6 slack covers float rounding in x * (1/d) and in d * q + m.
inline float quantization_bound(DType type, const float* block, float x) {
  auto f16_round = [](float v) { return fp16_to_fp32(fp32_to_fp16(v)); };
  float max_abs = 0.0f, extreme = 0.0f, lo = block[0], hi = block[0];
  const int n = dtype_block_size(type);
  for (int j = 0; j < n; ++j) {
    if (std::fabs(block[j]) > max_abs) {
      max_abs = std::fabs(block[j]);
      extreme = block[j];
    }
    lo = std::min(lo, block[j]);
    hi = std::max(hi, block[j]);
  }
  const float slack = 1e-6f * std::max(max_abs, 1e-30f);
  switch (type) {
    case DType::F32: return 0.0f;
    case DType::F16: return std::ldexp(std::fabs(x), -11) + std::ldexp(1.0f, -25);
    case DType::BF16: return std::ldexp(std::fabs(x), -8);
    case DType::Q8_0: {
      const float d = max_abs / 127.0f;
      return 0.5f * d + 127.0f * std::fabs(d - f16_round(d)) + slack;
    }
    case DType::Q4_0: {
      const float d = extreme / -8.0f;
      return std::fabs(d) + 8.0f * std::fabs(d - f16_round(d)) + slack;
    }
    case DType::Q4_1: {
      const float d = (hi - lo) / 15.0f;
      return 0.5f * d + 15.0f * std::fabs(d - f16_round(d)) + std::fabs(lo - f16_round(lo)) + slack;
    }
    case DType::Q5_0: {  // as Q4_0 with 32 levels: the far extreme may clamp by one step
      const float d = extreme / -16.0f;
      return std::fabs(d) + 16.0f * std::fabs(d - f16_round(d)) + slack;
    }
    case DType::Q5_1: {
      const float d = (hi - lo) / 31.0f;
      return 0.5f * d + 31.0f * std::fabs(d - f16_round(d)) + std::fabs(lo - f16_round(lo)) + slack;
    }
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K: break;  // not quantized by this engine
  }
  return 0.0f;
}

// Checks that `stored` (n values of `type`) dequantizes to within quantization_bound of `source`.
// Rows are `cols` long; blocks never straddle rows.
inline void check_dequantized(DType type, const void* stored, const std::vector<float>& source, const std::string& what) {
  std::vector<float> restored(source.size());
  dequantize_row(type, stored, restored.data(), int64_t(source.size()));
  const int block = dtype_block_size(type);
  size_t failures = 0;
  for (size_t i = 0; i < source.size(); ++i) {
    const float bound = quantization_bound(type, source.data() + (i / block) * block, source[i]);
    if (!(std::fabs(source[i] - restored[i]) <= bound)) {
      if (failures++ < 3) {
        FAIL_CHECK(what << " (" << dtype_name(type) << ") element " << i << ": " << source[i] << " -> " << restored[i]
                        << " exceeds bound " << bound);
      }
    }
  }
  CHECK_MESSAGE(failures == 0, what << ": " << failures << " elements out of bound");
}

}  // namespace infer::test
