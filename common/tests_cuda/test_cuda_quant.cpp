// test_cuda_quant.cpp: matmuls and embeddings on Q8_0 / Q4_0 / Q4_1 blocks (gemv_quant.cu, gemm_quant.cu,
// embedding.cu) against the CPU reference, and whole quantized models on CUDA against the CPU.
//
// Reference: matmul_quant_reference (dequantize_row, then an fp32 dot in column order), i.e. dequantize +
// f32 dot. Bound, per output: both sides are fp32 sums of cols terms in some order, each within
// (cols + 3) u of the exact sum relative to S = sum_c t_c |x_c| (u = 2^-24, +3 for the block scale
// multiply, the Q4_1 min term and the final add), where t_c = |d q_c| for Q8_0/Q4_0 and |d n_c| + |m| for
// Q4_1 (v2 sums d * sum n x + m * sum x, whose terms are those). Two sides: 2 (cols + 3) u S; cuBLAS may
// truncate: 2^-23 for u, as test_cuda_matmul.cpp does. A wrong block, nibble or row is off by O(S).
// Shapes: rows not a multiple of 8 (GEMV rows per block) or 32 (GEMM tile), cols multiples of 32 with an
// odd number of blocks, more than one 64-block staging window, and a total size not a multiple of 16.
#include "cuda_check.h"
#include "cuda_kernels.h"
#include "cuda_test_util.h"
#include "infer/engine/generator.h"
#include "infer/formats/synthetic.h"
#include "infer/model/kv_cache.h"
#include "infer/model/transformer.h"
#include "infer/model/weights.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <span>

using namespace infer;
using namespace infer::test;

namespace {

constexpr DType kFormats[] = {DType::Q8_0, DType::Q4_0, DType::Q4_1};

struct QuantShape {
  int rows, cols;
};
// 1 x 32: one block; 7 x 96 odd blocks; 33 x 576 SmolLM2's dim (18 blocks: blocks at every even offset in a
// chunk); 100 x 2080 (65 blocks: a second staging window); 257 x 1536; 1030 x 4128 (129 blocks, 3 windows).
const QuantShape kShapes[] = {{1, 32}, {7, 96}, {33, 576}, {100, 2080}, {257, 1536}, {1030, 4128}};

// t_c of the file header for every weight of the matrix.
std::vector<double> term_magnitudes(DType dtype, const std::vector<uint8_t>& bytes, int rows, int cols) {
  std::vector<double> t(size_t(rows) * cols);
  const size_t block_bytes = dtype_block_bytes(dtype);
  for (size_t block = 0; block < t.size() / 32; ++block) {
    const uint8_t* p = bytes.data() + block * block_bytes;
    uint16_t d16, m16 = 0;
    std::memcpy(&d16, p, 2);
    if (dtype == DType::Q4_1) std::memcpy(&m16, p + 2, 2);
    const double d = fp16_to_fp32(d16), m = fp16_to_fp32(m16);
    for (int j = 0; j < 32; ++j) {
      double q;
      if (dtype == DType::Q8_0) {
        q = double(int8_t(p[2 + j]));
      } else {
        const uint8_t packed = p[(dtype == DType::Q4_1 ? 4 : 2) + (j & 15)];
        q = double(j < 16 ? (packed & 15) : (packed >> 4)) - (dtype == DType::Q4_0 ? 8.0 : 0.0);
      }
      t[block * 32 + size_t(j)] = std::fabs(d * q) + std::fabs(m);
    }
  }
  return t;
}

std::vector<double> quant_bounds(const std::vector<double>& t, const std::vector<float>& x, int n, int rows, int cols) {
  std::vector<double> bound(size_t(n) * rows);
  for (int tok = 0; tok < n; ++tok) {
    for (int r = 0; r < rows; ++r) {
      double s = 0.0;
      for (int c = 0; c < cols; ++c) s += t[size_t(r) * cols + c] * std::fabs(double(x[size_t(tok) * cols + c]));
      bound[size_t(tok) * rows + r] = 2.0 * (cols + 3) * kUlp23 * s;
    }
  }
  return bound;
}

struct QuantCase {
  std::vector<uint8_t> bytes;
  std::vector<float> x;
  std::vector<float> expected;  // matmul_quant_reference
  std::vector<double> bounds;
};

QuantCase make_case(DType dtype, const QuantShape& s, int n, uint64_t seed) {
  QuantCase c;
  c.bytes = stored_bytes(dtype, s.rows, s.cols, seed, nullptr);
  c.x = random_floats(size_t(n) * s.cols, seed + 1);
  c.expected.resize(size_t(n) * s.rows);
  cuda::matmul_quant_reference(Matrix{dtype, s.rows, s.cols, c.bytes.data()}, c.x.data(), c.expected.data(), n);
  c.bounds = quant_bounds(term_magnitudes(dtype, c.bytes, s.rows, s.cols), c.x, n, s.rows, s.cols);
  return c;
}

}  // namespace

TEST_CASE("cuda quant reference: matmul_quant_reference == dequantize + f32 dot and == the CPU's f32 matmul") {
  // The reference itself, on the host: against a double dot of the dequantized values, and against
  // cpu::matmul on the dequantized f32 matrix (the same values, another summation order).
  BothBackends b;
  for (DType dtype : kFormats) {
    const QuantShape s{33, 576};
    const QuantCase c = make_case(dtype, s, 3, 77);
    std::vector<float> w(size_t(s.rows) * s.cols);
    dequantize_row(dtype, c.bytes.data(), w.data(), int64_t(w.size()));
    std::vector<float> on_cpu(c.expected.size());
    b.cpu->matmul(Matrix{DType::F32, s.rows, s.cols, w.data()}, c.x.data(), on_cpu.data(), 3);
    check_within(on_cpu, c.expected, c.bounds, fmt::format("reference {} vs cpu f32", dtype_name(dtype)));
    // and the reference differs from a wrong-row result by far more than the bound
    std::vector<float> shifted(c.expected);
    std::rotate(shifted.begin(), shifted.begin() + 1, shifted.begin() + s.rows);
    double worst = 0.0;
    for (int r = 0; r < s.rows; ++r) worst = std::max(worst, std::fabs(double(shifted[r]) - c.expected[size_t(r)]) - c.bounds[size_t(r)]);
    CHECK(worst > 0.0);
  }
}

TEST_CASE("cuda gemv_quant v1/v2 == dequantize + f32 dot (n = 1), q8_0 q4_0 q4_1, odd shapes") {
  BothBackends b;
  for (DType dtype : kFormats) {
    for (const QuantShape& s : kShapes) {
      const QuantCase c = make_case(dtype, s, 1, 100 + s.rows);
      auto w = to_backend(*b.cuda, c.bytes);
      auto x = to_backend(*b.cuda, c.x);
      const Matrix matrix{dtype, s.rows, s.cols, w.data()};
      CHECK(cuda::gemv_quant_v2_supported(matrix, x.data()));  // cudaMalloc: 256-byte aligned
      for (auto version : {cuda::GemvQuantVersion::V1WarpPerRow, cuda::GemvQuantVersion::V2Staged16B}) {
        DeviceArray<float> y(*b.cuda, size_t(s.rows));
        b.cuda->synchronize();  // the backend zero-fills on its own stream; these launches use the default one
        cuda::gemv_quant(version, matrix, x.data(), y.data(), nullptr);
        CUDA_CHECK(cudaDeviceSynchronize());
        check_within(from_backend(*b.cuda, y), c.expected, c.bounds,
                     fmt::format("gemv_quant {} {} rows {} cols {}", cuda::gemv_quant_version_name(version),
                                 dtype_name(dtype), s.rows, s.cols));
      }
    }
  }
  SUBCASE("v2 refuses a W or x that is not 16-byte aligned; v1 takes them") {
    const QuantShape s{9, 64};
    const QuantCase c = make_case(DType::Q8_0, s, 1, 5);
    DeviceArray<uint8_t> w(*b.cuda, c.bytes.size() + 16);
    DeviceArray<float> x(*b.cuda, c.x.size() + 1), y(*b.cuda, size_t(s.rows));
    b.cuda->upload(w.data() + 2, c.bytes.data(), c.bytes.size());
    b.cuda->upload(x.data() + 1, c.x.data(), c.x.size() * sizeof(float));
    const Matrix shifted{DType::Q8_0, s.rows, s.cols, w.data() + 2};
    CHECK_FALSE(cuda::gemv_quant_v2_supported(shifted, x.data()));
    CHECK_FALSE(cuda::gemv_quant_v2_supported(Matrix{DType::Q8_0, s.rows, s.cols, w.data()}, x.data() + 1));
    CHECK_THROWS_AS(cuda::gemv_quant(cuda::GemvQuantVersion::V2Staged16B, shifted, x.data(), y.data(), nullptr), Error);
    cuda::gemv_quant(cuda::GemvQuantVersion::V1WarpPerRow, shifted, x.data() + 1, y.data(), nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    check_within(from_backend(*b.cuda, y), c.expected, c.bounds, "gemv_quant v1, unaligned W and x");
  }
}

TEST_CASE("cuda gemm_quant v1/v2 == dequantize + f32 dot for n = 1, 3, 17, 64, q8_0 q4_0 q4_1, odd shapes") {
  BothBackends b;
  cublasHandle_t handle = nullptr;
  REQUIRE(cublasCreate(&handle) == CUBLAS_STATUS_SUCCESS);  // default stream, default math (no TF32)
  for (DType dtype : kFormats) {
    for (const QuantShape& s : kShapes) {
      for (int n : {1, 3, 17, 64}) {
        const QuantCase c = make_case(dtype, s, n, 200 + s.cols + n);
        auto w = to_backend(*b.cuda, c.bytes);
        auto x = to_backend(*b.cuda, c.x);
        const Matrix matrix{dtype, s.rows, s.cols, w.data()};
        for (auto version : {cuda::GemmQuantVersion::V1SmemTiles, cuda::GemmQuantVersion::V2DequantCublas}) {
          const size_t workspace_bytes = cuda::gemm_quant_workspace_bytes(version, matrix);
          DeviceArray<uint8_t> workspace(*b.cuda, workspace_bytes);
          DeviceArray<float> y(*b.cuda, size_t(n) * s.rows);
          b.cuda->synchronize();
          cuda::gemm_quant(version, handle, matrix, x.data(), y.data(), n, workspace.data(), workspace_bytes, nullptr);
          CUDA_CHECK(cudaDeviceSynchronize());
          check_within(from_backend(*b.cuda, y), c.expected, c.bounds,
                       fmt::format("gemm_quant {} {} rows {} cols {} n {}", cuda::gemm_quant_version_name(version),
                                   dtype_name(dtype), s.rows, s.cols, n));
        }
      }
    }
  }
  SUBCASE("v2 tiles a matrix larger than its 32 MiB workspace") {
    // 8200 x 1024 fp32 = 33.6 MB > 32 MiB: two tiles (8192 rows, then 8).
    const QuantShape s{8200, 1024};
    const QuantCase c = make_case(DType::Q4_1, s, 5, 9);
    auto w = to_backend(*b.cuda, c.bytes);
    auto x = to_backend(*b.cuda, c.x);
    const Matrix matrix{DType::Q4_1, s.rows, s.cols, w.data()};
    const size_t workspace_bytes = cuda::gemm_quant_workspace_bytes(cuda::GemmQuantVersion::V2DequantCublas, matrix);
    CHECK(workspace_bytes == size_t(8192) * 1024 * 4);
    DeviceArray<uint8_t> workspace(*b.cuda, workspace_bytes);
    DeviceArray<float> y(*b.cuda, size_t(5) * s.rows);
    b.cuda->synchronize();
    CHECK_THROWS_AS(cuda::gemm_quant(cuda::GemmQuantVersion::V2DequantCublas, handle, matrix, x.data(), y.data(), 5,
                                     workspace.data(), workspace_bytes - 1, nullptr),
                    Error);
    cuda::gemm_quant(cuda::GemmQuantVersion::V2DequantCublas, handle, matrix, x.data(), y.data(), 5, workspace.data(),
                     workspace_bytes, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    check_within(from_backend(*b.cuda, y), c.expected, c.bounds, "gemm_quant v2, two tiles");
  }
  cublasDestroy(handle);
}

TEST_CASE("cuda matmul on q8_0 q4_0 q4_1 weights (GEMV, tiles, cuBLAS by n) == dequantize + f32 dot") {
  BothBackends b;
  for (DType dtype : kFormats) {
    for (const QuantShape& s : {QuantShape{7, 96}, QuantShape{257, 1536}}) {
      for (int n : {1, 3, 17, 31, 32, 64}) {  // 31 / 32: either side of the switch to cuBLAS
        const QuantCase c = make_case(dtype, s, n, 300 + n);
        auto w = to_backend(*b.cuda, c.bytes);
        auto x = to_backend(*b.cuda, c.x);
        DeviceArray<float> y(*b.cuda, size_t(n) * s.rows);
        b.cuda->matmul(Matrix{dtype, s.rows, s.cols, w.data()}, x.data(), y.data(), n);
        check_within(from_backend(*b.cuda, y), c.expected, c.bounds,
                     fmt::format("backend matmul {} rows {} cols {} n {}", dtype_name(dtype), s.rows, s.cols, n));
      }
    }
  }
  SUBCASE("block formats without a CUDA kernel are refused by name") {
    DeviceArray<uint8_t> storage(*b.cuda, dtype_row_bytes(DType::Q4_K, 256));
    DeviceArray<float> x(*b.cuda, 256), y(*b.cuda, 2);
    try {
      b.cuda->matmul(Matrix{DType::Q4_K, 1, 256, storage.data()}, x.data(), y.data(), 1);
      FAIL("a Q4_K matmul on CUDA should throw");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("q4_k") != std::string::npos);
    }
  }
}

TEST_CASE("cuda embed of q8_0 q4_0 q4_1 tables == cpu embed (dequantize_row)") {
  BothBackends b;
  for (DType dtype : kFormats) {
    const int vocab = 77, dim = 96;
    std::vector<float> values;
    const std::vector<uint8_t> bytes = stored_bytes(dtype, vocab, dim, 40, &values);
    auto table = to_backend(*b.cuda, bytes);
    const std::vector<int> tokens = {0, 76, 5, 5, 40};
    DeviceArray<float> out(*b.cuda, tokens.size() * dim);
    b.cuda->embed(Matrix{dtype, vocab, dim, table.data()}, tokens.data(), int(tokens.size()), out.data());
    std::vector<float> expected(tokens.size() * dim);
    b.cpu->embed(Matrix{dtype, vocab, dim, bytes.data()}, tokens.data(), int(tokens.size()), expected.data());
    // d * q is one rounding on both sides (equal bits); Q4_1's d * n + m may be one fma on one side only.
    const std::vector<double> t = term_magnitudes(dtype, bytes, vocab, dim);
    std::vector<double> bounds(expected.size());
    for (size_t i = 0; i < tokens.size(); ++i)
      for (int c = 0; c < dim; ++c) bounds[i * dim + c] = dtype == DType::Q4_1 ? kUlp23 * t[size_t(tokens[i]) * dim + c] : 0.0;
    check_within(from_backend(*b.cuda, out), expected, bounds, fmt::format("embed {}", dtype_name(dtype)));
  }
}

// ---- whole models ---------------------------------------------------------------------------------------------
namespace {

// Greedy decode, one pass per token (every matmul a GEMV), with every step's logits kept. With `forced`
// non-empty, those tokens are fed instead of the argmax (teacher forcing: both sides see the same tokens).
struct Decoded {
  std::vector<int> tokens;
  std::vector<float> logits;  // (steps, vocab)
};

Decoded decode_greedy(const ModelFile& file, WeightFormat format, Backend& backend, const std::vector<int>& prompt,
                      int steps, const std::vector<int>& forced = {}) {
  Weights weights(file, format, backend);
  Transformer transformer(weights, backend, 1);
  KVCache cache(backend, file.config, int(prompt.size()) + steps);
  const size_t vocab = size_t(file.config.vocab_size);
  std::vector<float> logits(vocab);
  Decoded out;
  int position = 0;
  for (int token : prompt) transformer.forward(std::span<const int>(&token, 1), position++, cache, logits.data());
  for (int step = 0; step < steps; ++step) {
    out.logits.insert(out.logits.end(), logits.begin(), logits.end());
    const int next = forced.empty() ? int(std::max_element(logits.begin(), logits.end()) - logits.begin())
                                    : forced[size_t(step)];
    out.tokens.push_back(next);
    transformer.forward(std::span<const int>(&next, 1), position++, cache, logits.data());
  }
  return out;
}

double max_abs(const std::vector<float>& v) {
  double m = 0.0;
  for (float f : v) m = std::max(m, double(std::fabs(f)));
  return m;
}

double max_abs_difference(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0.0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
  return m;
}

}  // namespace

TEST_CASE("cuda forward on a quantized synthetic stories260K-shaped model == cpu (q8_0, q4_0, q4_1 GGUF)") {
  // A synthetic model of stories260K's shape (dim 64, hidden 172, 5 layers, GQA 8/4, vocab 512, tied; seed 21)
  // written as a GGUF of each block format (w_down's rows of 172 are not whole blocks: they stay f32) and
  // loaded natively: on CUDA its matrices stay blocks (gemv_quant v2 for decode, gemm_quant v1 for the
  // 5-token prompt pass), the embedding too. 40 greedy steps after a 5-token prompt.
  //  - Against the CPU on the same file read as f32 (--weights f32: the very values of the blocks) the only
  //    difference is the order of fp32 sums: logits within 1e-4 of the largest (as the f32 tests of
  //    test_cuda_model.cpp) and the same greedy tokens. The CPU's smallest top-1/top-2 logit gap along those
  //    40 steps is 0.0064 (q8_0), 0.0079 (q4_0), 0.019 (q4_1), measured on the CPU: far above 1e-4 x ~4, so
  //    equal tokens is a sound requirement.
  //  - Against the CPU computing natively (int8 activations per block, quant_kernels.h), fed the same tokens:
  //    the logits differ by the activations' rounding. Measured on the CPU between its native and its
  //    f32-of-the-blocks logits on these tokens: at most 0.109 (q8_0), 0.153 (q4_0), 0.097 (q4_1) with logits
  //    up to ~4; bound used: 0.1 x the largest logit (~0.4). (Free-running greedy tokens of the two CPU paths
  //    part after a few steps on this random-weight model, whose top-2 gaps are small: not compared.)
  const ModelConfig config = synthetic_preset("stories260k");
  const std::vector<int> prompt = {1, 200, 17, 301, 45};
  constexpr int kSteps = 40;
  auto cuda = make_cuda_backend();
  auto cpu = make_cpu_backend(2);
  for (DType dtype : kFormats) {
    CAPTURE(dtype_name(dtype));
    const std::filesystem::path path =
        std::filesystem::path(INFER_BINARY_DIR) / fmt::format("cuda_quant_stories260k_{}.gguf", dtype_name(dtype));
    write_synthetic_gguf(path.string(), config, 21, dtype);
    const ModelFile file = load_model_file(path.string());
    const Decoded on_cuda = decode_greedy(file, WeightFormat::Native, *cuda, prompt, kSteps);
    const Decoded cpu_values = decode_greedy(file, WeightFormat::F32, *cpu, prompt, kSteps);
    const Decoded cpu_native = decode_greedy(file, WeightFormat::Native, *cpu, prompt, kSteps, cpu_values.tokens);
    const double largest = max_abs(cpu_values.logits);
    CHECK(on_cuda.tokens == cpu_values.tokens);
    const double vs_values = max_abs_difference(on_cuda.logits, cpu_values.logits);
    MESSAGE(dtype_name(dtype) << ": max |logit difference| cuda vs cpu f32-of-blocks " << vs_values
                              << " (largest logit " << largest << ")");
    CHECK(vs_values <= 1e-4 * largest);
    if (on_cuda.tokens == cpu_values.tokens) {  // else the trajectories differ and the next check means nothing
      const double vs_native = max_abs_difference(on_cuda.logits, cpu_native.logits);
      MESSAGE(dtype_name(dtype) << ": max |logit difference| cuda vs cpu native (int8 activations) " << vs_native);
      CHECK(vs_native <= 0.1 * largest);
    }
    // The prompt as one multi-token pass (gemm_quant v1 tiles) gives the logits of the token-by-token passes.
    {
      Weights weights(file, WeightFormat::Native, *cuda);
      Transformer transformer(weights, *cuda, int(prompt.size()));
      KVCache cache(*cuda, file.config, int(prompt.size()));
      std::vector<float> logits(size_t(file.config.vocab_size));
      transformer.forward(std::span<const int>(prompt), 0, cache, logits.data());
      const std::vector<float> first_step(cpu_values.logits.begin(), cpu_values.logits.begin() + file.config.vocab_size);
      CHECK(max_abs_difference(logits, first_step) <= 1e-4 * largest);
    }
    std::filesystem::remove(path);
  }
}

TEST_CASE("cuda prefill of 64 tokens on q8_0/q4_1 weights (gemm_quant v2: dequantized tiles + cuBLAS) == cpu f32") {
  // The prompt pass with n >= 32 takes the cuBLAS path; against the CPU's f32-of-the-blocks pass: the
  // logits of all 64 positions within 1e-4 of the largest.
  const ModelConfig config = synthetic_preset("stories260k");
  std::vector<int> prompt(64);
  for (int i = 0; i < 64; ++i) prompt[size_t(i)] = (37 * i + 1) % config.vocab_size;
  auto cuda = make_cuda_backend();
  auto cpu = make_cpu_backend(2);
  for (DType dtype : {DType::Q8_0, DType::Q4_1}) {
    CAPTURE(dtype_name(dtype));
    const std::filesystem::path path =
        std::filesystem::path(INFER_BINARY_DIR) / fmt::format("cuda_quant_prefill_{}.gguf", dtype_name(dtype));
    write_synthetic_gguf(path.string(), config, 5, dtype);
    const ModelFile file = load_model_file(path.string());
    auto all_logits = [&](WeightFormat format, Backend& backend) {
      Weights weights(file, format, backend);
      Transformer transformer(weights, backend, int(prompt.size()));
      KVCache cache(backend, file.config, int(prompt.size()));
      std::vector<float> last(size_t(file.config.vocab_size)), all(prompt.size() * size_t(file.config.vocab_size));
      transformer.forward(std::span<const int>(prompt), 0, cache, last.data(), all.data());
      return all;
    };
    const std::vector<float> on_cuda = all_logits(WeightFormat::Native, *cuda);
    const std::vector<float> on_cpu = all_logits(WeightFormat::F32, *cpu);
    const double difference = max_abs_difference(on_cuda, on_cpu), largest = max_abs(on_cpu);
    MESSAGE(dtype_name(dtype) << ": 64-token prefill, max |logit difference| " << difference << " (largest " << largest << ")");
    CHECK(difference <= 1e-4 * largest);
    std::filesystem::remove(path);
  }
}
