// test_kv_int8.cpp: the int8 KV cache (KVDType::int8, ch07): the row quantizer's error bound, the int8 store,
// the int8 paged attention (v4) against a readable reference (v1's three passes over the dequantized cache),
// its batch invariance, its distance from f32 attention (a bound derived from the quantizer's), and the pool's
// sizes. The engine end to end with an int8 cache is in test_engine.cpp.
//
// Pools are laid out as in test_paged_attention.cpp: blocks drawn at random from a pool whose other rows hold
// garbage, block sizes 1, 3, 5 and 16 (partial last blocks), GQA, MHA and MQA, contexts over 512-position chunks.
#include "batch_view_util.h"
#include "infer/core/error.h"
#include "infer/cpu/cpu_kernels.h"
#include "infer/model/backend.h"
#include "infer/model/batch.h"
#include "infer/model/kv_cache.h"
#include "test_util.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>

using namespace infer;
using infer::test::view_of;

namespace {

// The quantizer's bound per value, |x - q * scale| <= scale * kHalfStep: half a step, plus float rounding of
// x / scale (|x / scale| <= 127: at most 127 * 2^-24 of a step) and of q * scale (2^-24 relative, <= 127 * 2^-24
// of a step): 2^-16 of a step covers both.
constexpr double kHalfStep = 0.5 + 1.0 / 65536.0;

struct SequenceShape {
  int context;  // positions in the cache after the pass
  int n_new;    // new tokens of the pass (1 = a decode row)
};

struct Int8Case {
  int n_heads, n_kv_heads, head_dim, block_size;
  std::vector<SequenceShape> sequences;
};

const Int8Case kCases[] = {
    {4, 2, 8, 4, {{7, 7}, {13, 1}, {4, 1}}},                  // GQA 2:1, a prefill and two decode rows
    {6, 2, 10, 3, {{1, 1}, {20, 5}, {9, 1}, {3, 2}}},          // block size 3, head_dim 10, a one-token sequence
    {9, 3, 64, 16, {{40, 1}, {33, 33}, {17, 4}, {100, 1}}},    // SmolLM2's heads (9 / 3 x 64), block 16
    {4, 4, 16, 5, {{26, 1}, {11, 6}}},                         // plain multi-head attention, block 5
    {8, 1, 12, 1, {{9, 9}, {5, 1}}},                           // MQA, block size 1
    {9, 3, 64, 16, {{1300, 1}, {1030, 20}, {513, 2}}},         // contexts over several 512-position chunks
};

// A ragged batch over an int8 pool: every sequence's f32 K/V rows kept (the f32 truth) and stored through
// store_kv_int8 at their slots; the pool's other rows are int8 garbage with garbage scales.
struct Int8Setup {
  int kv_dim = 0, num_blocks = 0, num_slots = 0;
  Batch batch;
  std::vector<int8_t> k8, v8;
  std::vector<float> k_scale, v_scale;
  std::vector<float> k_f32, v_f32;  // the f32 pool (rows as computed, before quantization; garbage elsewhere)
  std::vector<float> q;
  Int8KVLayer pool() { return Int8KVLayer{k8.data(), v8.data(), k_scale.data(), v_scale.data()}; }
};

Int8Setup make_setup(const Int8Case& c, uint64_t seed) {
  Int8Setup s;
  s.kv_dim = c.n_kv_heads * c.head_dim;
  s.batch = Batch(c.block_size);
  int blocks_needed = 0;
  for (const SequenceShape& sq : c.sequences) blocks_needed += (sq.context + c.block_size - 1) / c.block_size;
  s.num_blocks = blocks_needed + 3;
  s.num_slots = s.num_blocks * c.block_size;
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> byte(-127, 127);
  s.k8.resize(size_t(s.num_slots) * s.kv_dim);
  s.v8.resize(s.k8.size());
  for (auto& x : s.k8) x = int8_t(byte(rng));
  for (auto& x : s.v8) x = int8_t(byte(rng));
  s.k_scale = test::random_floats(size_t(s.num_slots) * c.n_kv_heads, seed + 1, 0.1f, 1.0f);
  s.v_scale = test::random_floats(size_t(s.num_slots) * c.n_kv_heads, seed + 2, 0.1f, 1.0f);
  s.k_f32 = test::random_floats(size_t(s.num_slots) * s.kv_dim, seed + 3, -30.0f, 30.0f);
  s.v_f32 = test::random_floats(size_t(s.num_slots) * s.kv_dim, seed + 4, -30.0f, 30.0f);
  std::vector<int> free_blocks(size_t(s.num_blocks));
  std::iota(free_blocks.begin(), free_blocks.end(), 0);
  std::shuffle(free_blocks.begin(), free_blocks.end(), rng);
  size_t next_block = 0;
  uint64_t sequence_seed = seed + 10;
  for (const SequenceShape& sq : c.sequences) {
    const int n_blocks = (sq.context + c.block_size - 1) / c.block_size;
    std::vector<int> blocks(free_blocks.begin() + ptrdiff_t(next_block),
                            free_blocks.begin() + ptrdiff_t(next_block + size_t(n_blocks)));
    next_block += size_t(n_blocks);
    const auto k = test::random_floats(size_t(sq.context) * s.kv_dim, sequence_seed++);
    const auto v = test::random_floats(size_t(sq.context) * s.kv_dim, sequence_seed++);
    std::vector<int> slots;
    for (int p = 0; p < sq.context; ++p) {
      const int slot = blocks[size_t(p / c.block_size)] * c.block_size + p % c.block_size;
      slots.push_back(slot);
      std::copy_n(k.begin() + ptrdiff_t(p) * s.kv_dim, s.kv_dim, s.k_f32.begin() + ptrdiff_t(slot) * s.kv_dim);
      std::copy_n(v.begin() + ptrdiff_t(p) * s.kv_dim, s.kv_dim, s.v_f32.begin() + ptrdiff_t(slot) * s.kv_dim);
    }
    cpu::store_kv_int8(k.data(), v.data(), s.pool(), slots.data(), sq.context, c.n_kv_heads, c.head_dim, s.num_slots);
    const std::vector<int> tokens(size_t(sq.n_new), 0);
    s.batch.add_sequence(tokens, sq.context - sq.n_new, blocks, LogitsFor::last);
  }
  s.batch.validate(s.num_blocks);
  s.q = test::random_floats(size_t(s.batch.n_tokens()) * c.n_heads * c.head_dim, seed + 5, -2.0f, 2.0f);
  return s;
}


// The readable dequantization: x' = q * scale, every slot of the pool.
std::vector<float> dequantize_pool(const std::vector<int8_t>& values, const std::vector<float>& scales, int head_dim) {
  std::vector<float> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = float(values[i]) * scales[i / size_t(head_dim)];
  return out;
}

double max_abs_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, double(std::fabs(a[i] - b[i])));
  return worst;
}

}  // namespace

TEST_CASE("int8 KV: quantize_row_int8 keeps every value within half a step (scale / 2) of the original") {
  uint64_t seed = 40;
  for (int n : {1, 7, 10, 64, 128}) {
    for (float magnitude : {1e-3f, 1.0f, 30.0f, 1e4f}) {
      CAPTURE(n);
      CAPTURE(magnitude);
      const auto x = test::random_floats(size_t(n), ++seed, -magnitude, magnitude);
      std::vector<int8_t> q(static_cast<size_t>(n), int8_t(0));
      const float scale = cpu::quantize_row_int8(x.data(), n, q.data());
      float max_abs = 0.0f;
      for (float v : x) max_abs = std::max(max_abs, std::fabs(v));
      CHECK(scale == max_abs / 127.0f);
      int largest = 0;
      for (int i = 0; i < n; ++i) {
        CHECK(q[size_t(i)] >= -127);  // symmetric: -128 is never used
        largest = std::max(largest, std::abs(int(q[size_t(i)])));
        CHECK(std::fabs(double(x[size_t(i)]) - double(float(q[size_t(i)]) * scale)) <= double(scale) * kHalfStep);
      }
      CHECK(largest == 127);  // the largest value maps to +-127
    }
  }
  SUBCASE("an all-zero row: scale 0, values 0") {
    const std::vector<float> zeros(64, 0.0f);
    std::vector<int8_t> q(64, 5);
    CHECK(cpu::quantize_row_int8(zeros.data(), 64, q.data()) == 0.0f);
    CHECK(std::all_of(q.begin(), q.end(), [](int8_t v) { return v == 0; }));
  }
  SUBCASE("a non-finite row keeps its NaN in the scale (the attention output shows it)") {
    std::vector<float> x(16, 1.0f);
    x[3] = std::numeric_limits<float>::infinity();
    std::vector<int8_t> q(16, 5);
    CHECK(std::isnan(cpu::quantize_row_int8(x.data(), 16, q.data())));
    CHECK(std::all_of(q.begin(), q.end(), [](int8_t v) { return v == 0; }));
  }
}

TEST_CASE("int8 KV: store_kv_int8 writes each (token, kv head) row and scale at its slot, nothing else") {
  const int n_kv_heads = 3, head_dim = 8, kv_dim = n_kv_heads * head_dim, slots = 6, n = 2;
  std::vector<int8_t> k8(size_t(slots) * kv_dim, 9), v8(k8.size(), 9);
  std::vector<float> ks(size_t(slots) * n_kv_heads, -1.0f), vs(ks.size(), -1.0f);
  const Int8KVLayer pool{k8.data(), v8.data(), ks.data(), vs.data()};
  const auto new_k = test::random_floats(size_t(n) * kv_dim, 3), new_v = test::random_floats(size_t(n) * kv_dim, 4);
  const int slot_mapping[] = {4, 1};
  auto backend = make_cpu_backend(1);
  REQUIRE(backend->supports_int8_kv());
  backend->store_kv_int8(new_k.data(), new_v.data(), pool, slot_mapping, n, n_kv_heads, head_dim, slots);
  for (int slot = 0; slot < slots; ++slot) {
    const int t = slot == 4 ? 0 : slot == 1 ? 1 : -1;
    for (int g = 0; g < n_kv_heads; ++g) {
      const size_t row = size_t(slot) * kv_dim + size_t(g) * head_dim, scale = size_t(slot) * n_kv_heads + g;
      if (t < 0) {  // untouched
        CHECK(ks[scale] == -1.0f);
        CHECK(k8[row] == 9);
        continue;
      }
      std::vector<int8_t> expected(static_cast<size_t>(head_dim), int8_t(0));
      CHECK(ks[scale] == cpu::quantize_row_int8(new_k.data() + size_t(t) * kv_dim + size_t(g) * head_dim, head_dim, expected.data()));
      CHECK(std::equal(expected.begin(), expected.end(), k8.begin() + ptrdiff_t(row)));
      CHECK(vs[scale] == cpu::quantize_row_int8(new_v.data() + size_t(t) * kv_dim + size_t(g) * head_dim, head_dim, expected.data()));
      CHECK(std::equal(expected.begin(), expected.end(), v8.begin() + ptrdiff_t(row)));
    }
  }
  SUBCASE("a slot outside the pool is refused before anything is written") {
    const std::vector<int8_t> k_before = k8;
    const std::vector<float> ks_before = ks;
    const int bad[] = {0, 6};
    CHECK_THROWS_AS(backend->store_kv_int8(new_k.data(), new_v.data(), pool, bad, n, n_kv_heads, head_dim, slots), Error);
    CHECK(k8 == k_before);
    CHECK(ks == ks_before);
  }
}

TEST_CASE("int8 KV: paged attention v4 equals f32 attention over the dequantized cache, the same bits in any batch") {
  uint64_t seed = 7100;
  for (const Int8Case& c : kCases) {
    CAPTURE(c.block_size);
    CAPTURE(c.n_heads);
    CAPTURE(c.head_dim);
    Int8Setup s = make_setup(c, seed += 10);
    const BatchView view = view_of(s.batch);
    // The reference: v1's three passes (one query head at a time) over the readable dequantization.
    const std::vector<float> k_deq = dequantize_pool(s.k8, s.k_scale, c.head_dim);
    const std::vector<float> v_deq = dequantize_pool(s.v8, s.v_scale, c.head_dim);
    std::vector<float> reference(s.q.size(), NAN);
    cpu::paged_attention_v1_naive(s.q.data(), k_deq.data(), v_deq.data(), reference.data(), view, c.n_heads,
                                  c.n_kv_heads, c.head_dim, 2);

    // Each sequence alone, and each query alone, as its own batch over the same pool.
    const size_t token_floats = size_t(c.n_heads) * c.head_dim;
    std::vector<float> alone(s.q.size(), NAN), one_by_one(s.q.size(), NAN);
    for (int seq = 0; seq < s.batch.n_sequences(); ++seq) {
      const int q0 = s.batch.query_start[seq], n = s.batch.query_start[seq + 1] - q0;
      const std::span<const int> blocks = s.batch.block_table(seq);
      const std::vector<int> own_blocks(blocks.begin(), std::find(blocks.begin(), blocks.end(), -1));
      Batch single(c.block_size);
      single.add_sequence(std::vector<int>(size_t(n), 0), s.batch.positions[q0], own_blocks, LogitsFor::last);
      cpu::paged_attention_v4_int8(s.q.data() + q0 * token_floats, s.pool(), alone.data() + q0 * token_floats,
                                   view_of(single), c.n_heads, c.n_kv_heads, c.head_dim, 2);
      for (int t = q0; t < q0 + n; ++t) {
        Batch one(c.block_size);
        one.add_sequence(std::vector<int>{0}, s.batch.positions[t], own_blocks, LogitsFor::last);
        cpu::paged_attention_v4_int8(s.q.data() + t * token_floats, s.pool(), one_by_one.data() + t * token_floats,
                                     view_of(one), c.n_heads, c.n_kv_heads, c.head_dim, 1);
      }
    }
    CHECK(std::memcmp(alone.data(), one_by_one.data(), alone.size() * sizeof(float)) == 0);
    for (int threads : {1, 2, 3}) {
      CAPTURE(threads);
      std::vector<float> out(s.q.size(), NAN);
      cpu::paged_attention_v4_int8(s.q.data(), s.pool(), out.data(), view, c.n_heads, c.n_kv_heads, c.head_dim, threads);
      CHECK(std::memcmp(out.data(), alone.data(), out.size() * sizeof(float)) == 0);
      // Against the reference: the same maths, rounded differently (the K scale multiplies the score after
      // the int8 dot instead of every element before it, the V scale the weight instead of the row; v3's exp,
      // tiles and chunk merges). Outputs are convex combinations of dequantized V in [-1, 1]: a few ulps of 1,
      // as v3 against v1 (4e-6); a wrong row, scale, block or mask is off by 0.01 to 1.
      CHECK(max_abs_difference(out, reference) < 4e-6);
    }
  }
}

TEST_CASE("int8 KV: paged attention v4 stays within the quantizer's bound of f32 attention (v3 on the f32 rows)") {
  // Per (query, head): every score moves by at most ds = sum_d |q_d| * k_scale_p * kHalfStep / sqrt(head_dim)
  // (the K error per value is at most k_scale_p * kHalfStep), so the softmax weights move by at most 2 ds in
  // L1 (the softmax Jacobian maps an L-inf change d to sum_i p_i |d_i - p.d| <= 2 |d|_inf, at every point of
  // the path); each V value moves by at most v_scale_p * kHalfStep. So
  //   |out_int8 - out_f32| <= 2 ds * max|v'| + max_p v_scale_p * kHalfStep   (+ 1e-5 for float rounding).
  uint64_t seed = 8100;
  double worst_ratio = 0.0;
  for (const Int8Case& c : kCases) {
    CAPTURE(c.block_size);
    CAPTURE(c.n_heads);
    Int8Setup s = make_setup(c, seed += 10);
    const BatchView view = view_of(s.batch);
    std::vector<float> f32(s.q.size(), NAN), int8(s.q.size(), NAN);
    cpu::paged_attention_v3_tiled(s.q.data(), s.k_f32.data(), s.v_f32.data(), f32.data(), view, c.n_heads,
                                  c.n_kv_heads, c.head_dim, 2);
    cpu::paged_attention_v4_int8(s.q.data(), s.pool(), int8.data(), view, c.n_heads, c.n_kv_heads, c.head_dim, 2);
    const int group = c.n_heads / c.n_kv_heads;
    for (int t = 0; t < s.batch.n_tokens(); ++t) {
      const int seq = int(std::upper_bound(s.batch.query_start.begin(), s.batch.query_start.end(), t) -
                          s.batch.query_start.begin()) - 1;
      for (int h = 0; h < c.n_heads; ++h) {
        const int g = h / group;
        const float* q = s.q.data() + (size_t(t) * c.n_heads + h) * c.head_dim;
        double q_l1 = 0.0;
        for (int d = 0; d < c.head_dim; ++d) q_l1 += std::fabs(q[d]);
        double ds = 0.0, v_step = 0.0, v_max = 0.0;
        for (int p = 0; p <= s.batch.positions[t]; ++p) {
          const int block = s.batch.block_table(seq)[size_t(p / c.block_size)];
          const size_t slot = size_t(block) * c.block_size + size_t(p % c.block_size);
          const size_t scale = slot * c.n_kv_heads + g;
          ds = std::max(ds, q_l1 * s.k_scale[scale] * kHalfStep / std::sqrt(double(c.head_dim)));
          v_step = std::max(v_step, s.v_scale[scale] * kHalfStep);
          v_max = std::max(v_max, double(s.v_scale[scale]) * 127.0);
        }
        const double bound = 2.0 * ds * v_max + v_step + 1e-5;
        for (int d = 0; d < c.head_dim; ++d) {
          const size_t i = (size_t(t) * c.n_heads + h) * c.head_dim + d;
          const double error = std::fabs(double(int8[i]) - double(f32[i]));
          CHECK(error <= bound);
          worst_ratio = std::max(worst_ratio, error / bound);
        }
      }
    }
  }
  MESSAGE("int8 vs f32 attention: the largest error is " << worst_ratio << " of its bound");
}

TEST_CASE("int8 KV: the pool's bytes per position, and a cache of the wrong type is refused by name") {
  ModelConfig config;
  config.n_layers = 30;
  config.n_heads = 9;
  config.n_kv_heads = 3;
  config.head_dim = 64;
  config.dim = 576;
  // SmolLM2-135M: f32 2 * 30 * 192 * 4 = 46,080 bytes; int8 2 * 30 * (192 + 3 * 4) = 12,240 bytes.
  CHECK(PagedKVCache::bytes_per_position(config, KVDType::f32) == 46080);
  CHECK(PagedKVCache::bytes_per_position(config, KVDType::int8) == 12240);
  auto backend = make_cpu_backend(1);
  PagedKVCache pool(*backend, config, 5, 16, KVDType::int8);
  CHECK(pool.dtype() == KVDType::int8);
  CHECK(pool.bytes_per_block() == 16u * 12240u);
  CHECK(pool.capacity_bytes() == 5u * 16u * 12240u);
  CHECK(pool.row_bytes() == 192u + 12u);
  CHECK_THROWS_AS(pool.k(0), Error);  // the f32 view of an int8 pool
  KVCache contiguous(*backend, config, 100, KVDType::int8);
  CHECK(contiguous.bytes_for(100) == 100u * 12240u);
  KVCache f32(*backend, config, 10);
  CHECK_THROWS_AS(f32.int8_layer(0), Error);
  CHECK(parse_kv_dtype("int8") == KVDType::int8);
  CHECK_THROWS_AS(parse_kv_dtype("int4"), Error);
}
