// test_cuda_kv_int8.cpp: the int8 KV cache on the GPU (ch07): store_kv_int8 and paged attention v2_int8
// against the CPU's (kv_store_int8_cpu.cpp, attention_cpu.cpp's v4_int8 and v1_naive).
//  1. store: the GPU's quantizer does cpu::quantize_row_int8's IEEE operations (division, round to nearest
//     even, clamp), so the pool's int8 bytes and scales equal the CPU's exactly, for random rows, an all-zero
//     row and a row holding an Inf (zeros, NaN scale); untouched slots stay as they were.
//  2. attention: a ragged batch (prefill chunks and decode rows, shuffled blocks of 16, a partial last block,
//     GQA 9/3 x 64 and 8/2 x 128) over an int8 pool; v2_int8 against the CPU's v1_naive run over the readable
//     dequantization of the same pool, within the split-context kernel's rounding bound
//     (test_cuda_attention.cpp's reasoning) plus 4 ulps for the scale products.
#include "../tests/batch_view_util.h"
#include "cuda_check.h"
#include "cuda_kernels.h"
#include "cuda_test_util.h"
#include "infer/cpu/cpu_kernels.h"
#include "infer/model/batch.h"
#include "infer/model/paged_kv_cache.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>

using namespace infer;
using namespace infer::test;

namespace {

// The device copy of a host batch's int arrays, and the view the kernels read.
struct DeviceBatch {
  DeviceArray<int> positions, slots, query_start, context_lens, tables;
  BatchView view;
  DeviceBatch(Backend& backend, const Batch& b)
      : positions(to_backend(backend, b.positions)), slots(to_backend(backend, b.slot_mapping)),
        query_start(to_backend(backend, b.query_start)), context_lens(to_backend(backend, b.context_lens)),
        tables(to_backend(backend, b.block_tables)) {
    view.n_tokens = b.n_tokens();
    view.n_sequences = b.n_sequences();
    view.block_size = b.block_size;
    view.max_blocks = b.max_blocks;
    view.max_context = *std::max_element(b.context_lens.begin(), b.context_lens.end());
    view.positions = positions.data();
    view.slot_mapping = slots.data();
    view.query_start = query_start.data();
    view.context_lens = context_lens.data();
    view.block_tables = tables.data();
  }
};

using infer::test::view_of;  // the kernels' view of a host-side Batch (tests/batch_view_util.h)

}  // namespace

TEST_CASE("cuda store_kv_int8 == cpu store_kv_int8, byte for byte (random, zero and non-finite rows)") {
  BothBackends b;
  const int n_kv_heads = 3, head_dim = 64, kv_dim = n_kv_heads * head_dim, slots = 40, n = 17;
  std::vector<float> new_k = random_floats(size_t(n) * kv_dim, 5, -3.0f, 3.0f);
  std::vector<float> new_v = random_floats(size_t(n) * kv_dim, 6, -0.01f, 0.01f);
  std::fill_n(new_k.begin() + 2 * kv_dim, head_dim, 0.0f);                     // token 2, head 0: all zeros
  new_v[size_t(5) * kv_dim + head_dim + 7] = std::numeric_limits<float>::infinity();  // token 5, head 1: Inf
  std::vector<int> slot_mapping(static_cast<size_t>(n));
  std::iota(slot_mapping.begin(), slot_mapping.end(), 0);
  std::mt19937_64 rng(3);
  std::shuffle(slot_mapping.begin(), slot_mapping.end(), rng);
  for (int& s : slot_mapping) s = (s * 7) % slots;  // scattered, distinct (7 and 40 coprime)

  // CPU.
  std::vector<int8_t> k8(size_t(slots) * kv_dim, 5), v8(k8.size(), 5);
  std::vector<float> ks(size_t(slots) * n_kv_heads, -1.0f), vs(ks.size(), -1.0f);
  cpu::store_kv_int8(new_k.data(), new_v.data(), Int8KVLayer{k8.data(), v8.data(), ks.data(), vs.data()},
                     slot_mapping.data(), n, n_kv_heads, head_dim, slots);
  // GPU, from the same initial pool.
  std::vector<int8_t> init8(k8.size(), 5);
  std::vector<float> init_scale(ks.size(), -1.0f);
  auto k8_gpu = to_backend(*b.cuda, init8), v8_gpu = to_backend(*b.cuda, init8);
  auto ks_gpu = to_backend(*b.cuda, init_scale), vs_gpu = to_backend(*b.cuda, init_scale);
  auto new_k_gpu = to_backend(*b.cuda, new_k), new_v_gpu = to_backend(*b.cuda, new_v);
  auto slots_gpu = to_backend(*b.cuda, slot_mapping);
  b.cuda->store_kv_int8(new_k_gpu.data(), new_v_gpu.data(),
                        Int8KVLayer{k8_gpu.data(), v8_gpu.data(), ks_gpu.data(), vs_gpu.data()}, slots_gpu.data(), n,
                        n_kv_heads, head_dim, slots);
  b.cuda->synchronize();
  CHECK(from_backend(*b.cuda, k8_gpu) == k8);
  CHECK(from_backend(*b.cuda, v8_gpu) == v8);
  const std::vector<float> ks_got = from_backend(*b.cuda, ks_gpu), vs_got = from_backend(*b.cuda, vs_gpu);
  CHECK(std::memcmp(ks_got.data(), ks.data(), ks.size() * sizeof(float)) == 0);
  CHECK(std::isnan(vs[size_t(slot_mapping[5]) * n_kv_heads + 1]));
  for (size_t i = 0; i < vs.size(); ++i) {
    CAPTURE(i);
    CHECK((std::isnan(vs[i]) ? std::isnan(vs_got[i]) : vs_got[i] == vs[i]));
  }
}

TEST_CASE("cuda paged attention v2_int8 == cpu attention over the dequantized int8 pool (ragged batch)") {
  BothBackends b;
  struct Case {
    int n_heads, n_kv_heads, head_dim, block_size;
    std::vector<std::pair<int, int>> sequences;  // (context, new tokens)
  };
  const Case cases[] = {{9, 3, 64, 16, {{40, 1}, {33, 33}, {17, 4}, {1300, 1}}},
                        {8, 2, 128, 16, {{5, 5}, {700, 1}, {129, 20}}}};
  uint64_t seed = 300;
  for (const Case& c : cases) {
    CAPTURE(c.head_dim);
    const int kv_dim = c.n_kv_heads * c.head_dim;
    int blocks_needed = 0, longest = 0;
    for (const auto& [context, n_new] : c.sequences) {
      blocks_needed += (context + c.block_size - 1) / c.block_size;
      longest = std::max(longest, context);
    }
    const int num_blocks = blocks_needed + 2, slots = num_blocks * c.block_size;
    std::vector<int> free_blocks(static_cast<size_t>(num_blocks));
    std::iota(free_blocks.begin(), free_blocks.end(), 0);
    std::mt19937_64 rng(++seed);
    std::shuffle(free_blocks.begin(), free_blocks.end(), rng);
    // The pool: every slot's rows quantized by the CPU from random [-1, 1) rows (so |dequantized| <= 1).
    const std::vector<float> k = random_floats(size_t(slots) * kv_dim, ++seed), v = random_floats(size_t(slots) * kv_dim, ++seed);
    std::vector<int8_t> k8(k.size()), v8(v.size());
    std::vector<float> ks(size_t(slots) * c.n_kv_heads), vs(ks.size());
    std::vector<int> all(static_cast<size_t>(slots));
    std::iota(all.begin(), all.end(), 0);
    cpu::store_kv_int8(k.data(), v.data(), Int8KVLayer{k8.data(), v8.data(), ks.data(), vs.data()}, all.data(), slots,
                       c.n_kv_heads, c.head_dim, slots);
    Batch batch(c.block_size);
    size_t next = 0;
    for (const auto& [context, n_new] : c.sequences) {
      const int n_blocks = (context + c.block_size - 1) / c.block_size;
      const std::vector<int> blocks(free_blocks.begin() + ptrdiff_t(next), free_blocks.begin() + ptrdiff_t(next + size_t(n_blocks)));
      next += size_t(n_blocks);
      batch.add_sequence(std::vector<int>(size_t(n_new), 0), context - n_new, blocks, LogitsFor::last);
    }
    const std::vector<float> q = random_floats(size_t(batch.n_tokens()) * c.n_heads * c.head_dim, ++seed);

    // CPU reference: v1's three passes over the readable dequantization.
    std::vector<float> k_deq(k8.size()), v_deq(v8.size());
    for (size_t i = 0; i < k8.size(); ++i) {
      k_deq[i] = float(k8[i]) * ks[i / size_t(c.head_dim)];
      v_deq[i] = float(v8[i]) * vs[i / size_t(c.head_dim)];
    }
    std::vector<float> expected(q.size());
    cpu::paged_attention_v1_naive(q.data(), k_deq.data(), v_deq.data(), expected.data(), view_of(batch), c.n_heads,
                                  c.n_kv_heads, c.head_dim, 2);

    // GPU.
    auto q_gpu = to_backend(*b.cuda, q);
    auto k8_gpu = to_backend(*b.cuda, k8), v8_gpu = to_backend(*b.cuda, v8);
    auto ks_gpu = to_backend(*b.cuda, ks), vs_gpu = to_backend(*b.cuda, vs);
    DeviceArray<float> out_gpu(*b.cuda, q.size());
    const DeviceBatch device_batch(*b.cuda, batch);
    b.cuda->paged_attention_int8(q_gpu.data(), Int8KVLayer{k8_gpu.data(), v8_gpu.data(), ks_gpu.data(), vs_gpu.data()},
                                 out_gpu.data(), device_batch.view, c.n_heads, c.n_kv_heads, c.head_dim);
    b.cuda->synchronize();
    const std::vector<float> got = from_backend(*b.cuda, out_gpu);
    // test_cuda_attention.cpp's bound for |q|, |k|, |v| <= 1 over the longest context, plus 4 ulps: the K scale
    // multiplies the score after the dot (one rounding) and the V scale the weight (one), against the reference's
    // per-element products (one each), counted twice (numerator and sum) as there.
    const double delta = 2.0 * (c.head_dim + 2) * kUlp24 * std::sqrt(double(c.head_dim));
    const double rescales = longest / 64.0 + 2.0;
    const double bound = 2.0 * delta + (4.0 * longest + 6.0 * rescales + 16.0 + 4.0) * kUlp24;
    check_within(got, expected, std::vector<double>(q.size(), bound), "v2_int8 vs cpu v1 over the dequantized pool");
  }
}

TEST_CASE("cuda: an int8 KV cache is accepted (supports_int8_kv) and sized with int8 bytes") {
  auto cuda = make_cuda_backend();
  CHECK(cuda->supports_int8_kv());
  ModelConfig config;
  config.n_layers = 2;
  config.n_heads = 4;
  config.n_kv_heads = 2;
  config.head_dim = 8;
  config.dim = 32;
  PagedKVCache pool(*cuda, config, 3, 4, KVDType::int8);
  CHECK(pool.capacity_bytes() == 3u * 4u * PagedKVCache::bytes_per_position(config, KVDType::int8));
}
