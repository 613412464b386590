// test_cuda_ops.cpp: every CUDA op of the forward pass against the CPU op, on seeded random inputs,
// over shapes that are not multiples of the kernels' block sizes (256 threads, 128 for attention,
// 8 rows per GEMV block). Tolerances are bounds; each says where it comes from.
#include "cuda_test_util.h"
#include "infer/cpu/cpu_kernels.h"
#include "infer/model/batch.h"

#include <algorithm>
#include <numeric>
#include <random>

using namespace infer;
using namespace infer::test;

TEST_CASE("cuda backend: created by make_backend, named cuda") {
  auto backend = make_backend("cuda", 0);
  CHECK(backend->name() == "cuda");
  CHECK(cuda_unavailable_reason().empty());
}

TEST_CASE("cuda backend: allocate zero-fills, upload/download/copy round-trip exactly") {
  BothBackends b;
  DeviceArray<float> zeros(*b.cuda, 1000);
  CHECK(from_backend(*b.cuda, zeros) == std::vector<float>(1000, 0.0f));
  const std::vector<float> values = random_floats(1001, 7);
  DeviceArray<float> source = to_backend(*b.cuda, values);
  DeviceArray<float> destination(*b.cuda, values.size());
  b.cuda->copy(destination.data(), source.data(), values.size());
  CHECK(from_backend(*b.cuda, destination) == values);
}

TEST_CASE("cuda embed == cpu embed, exactly (f32, f16, bf16 tables)") {
  // fp16 and bf16 convert to fp32 exactly, so both backends must produce the same bits.
  BothBackends b;
  for (DType dtype : {DType::F32, DType::F16, DType::BF16}) {
    for (int dim : {1, 63, 257, 1000}) {
      constexpr int kVocab = 37;
      const std::vector<uint8_t> bytes = stored_bytes(dtype, kVocab, dim, 11 + dim, nullptr);
      DeviceArray<uint8_t> table_cuda = to_backend(*b.cuda, bytes);
      DeviceArray<uint8_t> table_cpu = to_backend(*b.cpu, bytes);
      const std::vector<int> tokens = {0, 36, 5, 5, 17, 1, 36};  // repeats and both ends of the vocabulary
      const int n = int(tokens.size());
      DeviceArray<float> out_cuda(*b.cuda, size_t(n) * dim), out_cpu(*b.cpu, size_t(n) * dim);
      b.cuda->embed(Matrix{dtype, kVocab, dim, table_cuda.data()}, tokens.data(), n, out_cuda.data());
      b.cpu->embed(Matrix{dtype, kVocab, dim, table_cpu.data()}, tokens.data(), n, out_cpu.data());
      check_equal(from_backend(*b.cuda, out_cuda), from_backend(*b.cpu, out_cpu),
                  fmt::format("embed {} dim {}", dtype_name(dtype), dim));
    }
  }
  SUBCASE("a token id outside the vocabulary is an infer::Error, not an out-of-bounds read") {
    DeviceArray<float> table(*b.cuda, 4 * 8), out(*b.cuda, 8);
    const int bad = 4;
    CHECK_THROWS_AS(b.cuda->embed(Matrix{DType::F32, 4, 8, table.data()}, &bad, 1, out.data()), Error);
  }
}

TEST_CASE("cuda rmsnorm == cpu rmsnorm within the fp32 summation bound") {
  BothBackends b;
  for (int n : {1, 3, 17}) {
    for (int dim : {1, 31, 64, 257, 1000, 4099}) {
      const std::vector<float> x = random_floats(size_t(n) * dim, 100 + dim + n);
      const std::vector<float> weight = random_floats(dim, 200 + dim, 0.5f, 1.5f);
      auto x_cuda = to_backend(*b.cuda, x), w_cuda = to_backend(*b.cuda, weight);
      DeviceArray<float> out_cuda(*b.cuda, x.size());
      b.cuda->rmsnorm(x_cuda.data(), w_cuda.data(), out_cuda.data(), n, dim, 1e-5f);
      std::vector<float> expected(x.size());
      b.cpu->rmsnorm(x.data(), weight.data(), expected.data(), n, dim, 1e-5f);
      // Each side sums dim squares in its own order (relative error <= dim * 2^-24 each), then the
      // division, sqrt and two products add a few roundings: 2 * (dim + 8) * 2^-24, relative.
      std::vector<double> tolerance(x.size());
      for (size_t i = 0; i < x.size(); ++i) tolerance[i] = 2.0 * (dim + 8) * kUlp24 * std::fabs(expected[i]);
      check_within(from_backend(*b.cuda, out_cuda), expected, tolerance, fmt::format("rmsnorm n {} dim {}", n, dim));
    }
  }
}

TEST_CASE("cuda rope == cpu rope (both layouts, several positions and thetas)") {
  BothBackends b;
  struct Shape { int n, n_heads, head_dim, start_pos; float theta; };
  const Shape shapes[] = {{1, 1, 2, 0, 10000.0f}, {4, 3, 6, 5, 10000.0f}, {9, 8, 64, 0, 10000.0f},
                          {3, 9, 64, 1000, 10000.0f}, {2, 4, 128, 4000, 500000.0f}, {5, 2, 100, 17, 10000.0f}};
  for (const Shape& s : shapes) {
    for (RopeLayout layout : {RopeLayout::Interleaved, RopeLayout::HalfSplit}) {
      const size_t count = size_t(s.n) * s.n_heads * s.head_dim;
      const std::vector<float> x = random_floats(count, 300 + count);
      // One position per token, as a ragged batch has them: runs of consecutive positions with jumps
      // (every third token starts 50 further on).
      std::vector<int> positions(size_t(s.n));
      for (int t = 0; t < s.n; ++t) positions[size_t(t)] = s.start_pos + t + 50 * (t / 3);
      auto x_cuda = to_backend(*b.cuda, x);
      auto positions_cuda = to_backend(*b.cuda, positions);
      b.cuda->rope(x_cuda.data(), s.n, s.n_heads, s.head_dim, positions_cuda.data(), s.theta, layout);
      std::vector<float> expected = x;
      b.cpu->rope(expected.data(), s.n, s.n_heads, s.head_dim, positions.data(), s.theta, layout);
      // Both sides compute the same fp32 angle (the frequencies are computed on the host with the
      // CPU's expression); cosf/sinf differ by <= 2 ulp (CUDA) + 1 ulp (glibc), and the rotation's two
      // products and sum round once more each side: <= 16 * 2^-24 * max|x| over the head.
      std::vector<double> tolerance(count);
      for (size_t head = 0; head < count / s.head_dim; ++head) {
        float max_abs = 0.0f;
        for (int i = 0; i < s.head_dim; ++i) max_abs = std::max(max_abs, std::fabs(x[head * s.head_dim + i]));
        for (int i = 0; i < s.head_dim; ++i) tolerance[head * s.head_dim + i] = 16.0 * kUlp24 * max_abs;
      }
      check_within(from_backend(*b.cuda, x_cuda), expected, tolerance,
                   fmt::format("rope n {} heads {} head_dim {} start {} layout {}", s.n, s.n_heads, s.head_dim,
                               s.start_pos, int(layout)));
    }
  }
}

TEST_CASE("cuda attention == cpu attention (causal, GQA, long contexts)") {
  BothBackends b;
  struct Shape { int n, start_pos, n_heads, n_kv_heads, head_dim; };
  // 130 and 300 positions are not multiples of the 128-thread block; 13000 positions need more than
  // the default 48 KiB of shared memory, which exercises the opt-in path.
  const Shape shapes[] = {{1, 0, 1, 1, 1},    {1, 37, 8, 4, 64},   {7, 0, 6, 2, 48},
                          {5, 130, 9, 3, 64}, {3, 300, 4, 4, 129}, {1, 13000, 2, 1, 64}};
  for (const Shape& s : shapes) {
    const int positions = s.start_pos + s.n;
    const size_t q_count = size_t(s.n) * s.n_heads * s.head_dim;
    const size_t kv_count = size_t(positions) * s.n_kv_heads * s.head_dim;
    const std::vector<float> q = random_floats(q_count, 400 + positions);
    const std::vector<float> k = random_floats(kv_count, 500 + positions);
    const std::vector<float> v = random_floats(kv_count, 600 + positions);
    auto q_cuda = to_backend(*b.cuda, q), k_cuda = to_backend(*b.cuda, k), v_cuda = to_backend(*b.cuda, v);
    DeviceArray<float> out_cuda(*b.cuda, q_count);
    b.cuda->attention(q_cuda.data(), k_cuda.data(), v_cuda.data(), out_cuda.data(), s.n, s.start_pos, s.n_heads,
                      s.n_kv_heads, s.head_dim);
    std::vector<float> expected(q_count);
    b.cpu->attention(q.data(), k.data(), v.data(), expected.data(), s.n, s.start_pos, s.n_heads, s.n_kv_heads,
                     s.head_dim);
    // With |q|, |k|, |v| <= 1: a score is a head_dim-term dot product times 1/sqrt(head_dim), off by at
    // most delta = 2 (head_dim + 2) 2^-24 sqrt(head_dim) between the sides; exp turns that into a
    // relative error of the weights (twice: numerator and sum), expf adds 3 ulp, the sums over the
    // positions (weights and the weighted values, each <= 1) add 2 * positions * 2^-24 twice.
    const double delta = 2.0 * (s.head_dim + 2) * kUlp24 * std::sqrt(double(s.head_dim));
    const double bound = 2.0 * delta + (4.0 * positions + 16.0) * kUlp24;
    check_within(from_backend(*b.cuda, out_cuda), expected, std::vector<double>(q_count, bound),
                 fmt::format("attention n {} start {} heads {}/{} head_dim {}", s.n, s.start_pos, s.n_heads,
                             s.n_kv_heads, s.head_dim));
  }
}

TEST_CASE("cuda store_kv == cpu store_kv, exactly (scattered slots)") {
  BothBackends b;
  const int kv_dim = 72, num_slots = 40, n = 9;
  const std::vector<int> slots = {3, 4, 5, 39, 0, 17, 16, 22, 8};
  const std::vector<float> new_k = random_floats(size_t(n) * kv_dim, 31), new_v = random_floats(size_t(n) * kv_dim, 32);
  std::vector<float> k_pool = random_floats(size_t(num_slots) * kv_dim, 33), v_pool = random_floats(k_pool.size(), 34);
  auto k_cuda = to_backend(*b.cuda, k_pool), v_cuda = to_backend(*b.cuda, v_pool);
  auto new_k_cuda = to_backend(*b.cuda, new_k), new_v_cuda = to_backend(*b.cuda, new_v);
  auto slots_cuda = to_backend(*b.cuda, slots);
  b.cuda->store_kv(new_k_cuda.data(), new_v_cuda.data(), k_cuda.data(), v_cuda.data(), slots_cuda.data(), n, kv_dim,
                   num_slots);
  b.cpu->store_kv(new_k.data(), new_v.data(), k_pool.data(), v_pool.data(), slots.data(), n, kv_dim, num_slots);
  CHECK(from_backend(*b.cuda, k_cuda) == k_pool);  // a copy: the same bits
  CHECK(from_backend(*b.cuda, v_cuda) == v_pool);
}

TEST_CASE("cuda paged_attention == cpu paged_attention (ragged batches, block sizes 1, 5, 16, GQA)") {
  BothBackends b;
  struct Sequence { int context, n_new; };
  struct PagedShape { int n_heads, n_kv_heads, head_dim, block_size; std::vector<Sequence> sequences; };
  const PagedShape shapes[] = {
      {9, 3, 64, 16, {{40, 1}, {33, 33}, {17, 4}, {1000, 1}}},  // SmolLM2's heads, prefill + decode rows
      {4, 4, 16, 5, {{26, 1}, {11, 6}}},                        // MHA, block 5 (partial last blocks)
      {8, 1, 128, 1, {{9, 9}, {300, 1}}},                       // MQA, one position per block
  };
  uint64_t seed = 900;
  for (const PagedShape& s : shapes) {
    const int kv_dim = s.n_kv_heads * s.head_dim;
    int blocks = 0, max_context = 0;
    for (const Sequence& q : s.sequences) {
      blocks += (q.context + s.block_size - 1) / s.block_size;
      max_context = std::max(max_context, q.context);
    }
    const int num_blocks = blocks + 2;
    // The pool's blocks handed out in a seeded random order.
    std::vector<int> order(static_cast<size_t>(num_blocks));
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(seed);
    std::shuffle(order.begin(), order.end(), rng);
    Batch batch(s.block_size);
    size_t next = 0;
    for (const Sequence& q : s.sequences) {
      const int n_blocks = (q.context + s.block_size - 1) / s.block_size;
      const std::vector<int> table(order.begin() + ptrdiff_t(next), order.begin() + ptrdiff_t(next + size_t(n_blocks)));
      next += size_t(n_blocks);
      batch.add_sequence(std::vector<int>(size_t(q.n_new), 0), q.context - q.n_new, table, LogitsFor::last);
    }
    batch.validate(num_blocks);
    const size_t pool_count = size_t(num_blocks) * s.block_size * kv_dim;
    const std::vector<float> k = random_floats(pool_count, ++seed), v = random_floats(pool_count, ++seed);
    const size_t q_count = size_t(batch.n_tokens()) * s.n_heads * s.head_dim;
    const std::vector<float> q = random_floats(q_count, ++seed);
    // The batch's arrays on each backend.
    std::vector<int> ints;
    for (const auto* part : {&batch.positions, &batch.slot_mapping, &batch.query_start, &batch.context_lens, &batch.block_tables})
      ints.insert(ints.end(), part->begin(), part->end());
    auto ints_cuda = to_backend(*b.cuda, ints);
    auto view_at = [&](const int* base) {
      BatchView view;
      view.n_tokens = batch.n_tokens();
      view.n_sequences = batch.n_sequences();
      view.block_size = batch.block_size;
      view.max_blocks = batch.max_blocks;
      view.max_context = max_context;
      view.positions = base;
      view.slot_mapping = base + batch.n_tokens();
      view.query_start = view.slot_mapping + batch.n_tokens();
      view.context_lens = view.query_start + batch.n_sequences() + 1;
      view.block_tables = view.context_lens + batch.n_sequences();
      return view;
    };
    auto q_cuda = to_backend(*b.cuda, q), k_cuda = to_backend(*b.cuda, k), v_cuda = to_backend(*b.cuda, v);
    DeviceArray<float> out_cuda(*b.cuda, q_count);
    b.cuda->paged_attention(q_cuda.data(), k_cuda.data(), v_cuda.data(), out_cuda.data(), view_at(ints_cuda.data()),
                            s.n_heads, s.n_kv_heads, s.head_dim);
    std::vector<float> expected(q_count);
    b.cpu->paged_attention(q.data(), k.data(), v.data(), expected.data(), view_at(ints.data()), s.n_heads,
                           s.n_kv_heads, s.head_dim);
    // The bound of the contiguous attention test above, for the longest context in the batch.
    const double delta = 2.0 * (s.head_dim + 2) * kUlp24 * std::sqrt(double(s.head_dim));
    const double bound = 2.0 * delta + (4.0 * max_context + 16.0) * kUlp24;
    check_within(from_backend(*b.cuda, out_cuda), expected, std::vector<double>(q_count, bound),
                 fmt::format("paged attention heads {}/{} head_dim {} block {}", s.n_heads, s.n_kv_heads, s.head_dim,
                             s.block_size));
  }
}

TEST_CASE("cuda silu_mul, add == cpu") {
  BothBackends b;
  for (size_t count : {size_t(1), size_t(255), size_t(257), size_t(100003)}) {
    const std::vector<float> gate = random_floats(count, 700 + count, -8.0f, 8.0f);
    const std::vector<float> up = random_floats(count, 800 + count);
    auto gate_cuda = to_backend(*b.cuda, gate), up_cuda = to_backend(*b.cuda, up);
    b.cuda->silu_mul(gate_cuda.data(), up_cuda.data(), count);
    std::vector<float> expected = gate;
    b.cpu->silu_mul(expected.data(), up.data(), count);
    // expf (2 ulp) vs exp (1 ulp), then 1 + e, the division and the product round once each side:
    // relative <= 10 * 2^-24.
    std::vector<double> tolerance(count);
    for (size_t i = 0; i < count; ++i) tolerance[i] = 10.0 * kUlp24 * std::fabs(expected[i]);
    check_within(from_backend(*b.cuda, gate_cuda), expected, tolerance, fmt::format("silu_mul {}", count));

    // add is one correctly rounded fp32 addition per element on both sides: exact agreement.
    auto x_cuda = to_backend(*b.cuda, up);
    b.cuda->add(x_cuda.data(), gate_cuda.data(), count);
    std::vector<float> sum = up;
    const std::vector<float> gate_result = from_backend(*b.cuda, gate_cuda);
    b.cpu->add(sum.data(), gate_result.data(), count);
    check_equal(from_backend(*b.cuda, x_cuda), sum, fmt::format("add {}", count));
  }
}
