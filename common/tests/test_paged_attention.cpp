// test_paged_attention.cpp: paged attention (over a block pool, ragged batches) against the contiguous
// attention it generalises, the positions RoPE and the KV store by slot mapping (CPU).
//
// Each case is a ragged batch: sequences with their own context length and number of new tokens (prefill
// chunks and one-token decode rows mixed), blocks drawn at random from a pool whose other rows hold
// garbage, block sizes 1, 3, 5 and 16 (so last blocks are partial), GQA, MHA and MQA. For every sequence
// the contiguous reference (attention_v1_naive) runs on its K/V laid out contiguously.
#include "batch_view_util.h"
#include "infer/core/error.h"
#include "infer/cpu/cpu_kernels.h"
#include "infer/model/backend.h"
#include "infer/model/batch.h"
#include "test_util.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

using namespace infer;
using infer::test::view_of;

namespace {

struct SequenceShape {
  int context;  // positions in the cache after the pass
  int n_new;    // new tokens of the pass (1 = a decode row)
};

struct PagedCase {
  int n_heads, n_kv_heads, head_dim, block_size;
  std::vector<SequenceShape> sequences;
};

// A batch laid out in a pool, with each sequence's K/V also kept contiguous for the reference.
struct PagedSetup {
  int kv_dim = 0, num_blocks = 0;
  Batch batch;
  std::vector<float> k_pool, v_pool, q;                  // pool (num_blocks * block_size, kv_dim); q (T, n_heads, head_dim)
  std::vector<std::vector<float>> k_contiguous, v_contiguous;  // per sequence (context, kv_dim)
  std::vector<int> positions_host;
};

PagedSetup make_setup(const PagedCase& c, uint64_t seed) {
  PagedSetup s;
  s.kv_dim = c.n_kv_heads * c.head_dim;
  s.batch = Batch(c.block_size);
  int blocks_needed = 0;
  for (const SequenceShape& sq : c.sequences) blocks_needed += (sq.context + c.block_size - 1) / c.block_size;
  s.num_blocks = blocks_needed + 3;  // spare blocks that belong to no one
  const size_t pool_floats = size_t(s.num_blocks) * c.block_size * s.kv_dim;
  // Garbage everywhere (large values: a read outside the sequence's rows changes the result visibly).
  s.k_pool = test::random_floats(pool_floats, seed, -30.0f, 30.0f);
  s.v_pool = test::random_floats(pool_floats, seed + 1, -30.0f, 30.0f);
  std::vector<int> free_blocks(size_t(s.num_blocks));
  std::iota(free_blocks.begin(), free_blocks.end(), 0);
  std::mt19937_64 rng(seed + 2);
  std::shuffle(free_blocks.begin(), free_blocks.end(), rng);
  size_t next_block = 0;
  uint64_t sequence_seed = seed + 10;
  for (const SequenceShape& sq : c.sequences) {
    const int n_blocks = (sq.context + c.block_size - 1) / c.block_size;
    std::vector<int> blocks(free_blocks.begin() + ptrdiff_t(next_block), free_blocks.begin() + ptrdiff_t(next_block + n_blocks));
    next_block += size_t(n_blocks);
    auto k = test::random_floats(size_t(sq.context) * s.kv_dim, sequence_seed++);
    auto v = test::random_floats(size_t(sq.context) * s.kv_dim, sequence_seed++);
    for (int p = 0; p < sq.context; ++p) {
      const size_t slot = size_t(blocks[size_t(p / c.block_size)]) * c.block_size + size_t(p % c.block_size);
      std::copy_n(k.begin() + ptrdiff_t(p) * s.kv_dim, s.kv_dim, s.k_pool.begin() + ptrdiff_t(slot * s.kv_dim));
      std::copy_n(v.begin() + ptrdiff_t(p) * s.kv_dim, s.kv_dim, s.v_pool.begin() + ptrdiff_t(slot * s.kv_dim));
    }
    s.k_contiguous.push_back(std::move(k));
    s.v_contiguous.push_back(std::move(v));
    const std::vector<int> tokens(size_t(sq.n_new), 0);
    s.batch.add_sequence(tokens, sq.context - sq.n_new, blocks, LogitsFor::last);
  }
  s.batch.validate(s.num_blocks);
  s.q = test::random_floats(size_t(s.batch.n_tokens()) * c.n_heads * c.head_dim, seed + 3, -2.0f, 2.0f);
  return s;
}


const PagedCase kCases[] = {
    {4, 2, 8, 4, {{7, 7}, {13, 1}, {4, 1}}},                      // GQA 2:1, a prefill and two decode rows
    {6, 2, 10, 3, {{1, 1}, {20, 5}, {9, 1}, {3, 2}}},              // block size 3, head_dim 10, a one-token sequence
    {9, 3, 64, 16, {{40, 1}, {33, 33}, {17, 4}, {100, 1}}},        // SmolLM2's heads (9 / 3 x 64), block 16
    {4, 4, 16, 5, {{26, 1}, {11, 6}}},                             // plain multi-head attention, block 5
    {8, 1, 12, 1, {{9, 9}, {5, 1}}},                               // MQA, block size 1 (every position its own block)
    {2, 1, 32, 16, {{300, 1}, {260, 40}, {16, 16}, {17, 1}}},      // long contexts, a block boundary exactly
    {9, 3, 64, 16, {{1300, 1}, {1030, 20}, {513, 2}}},             // contexts over several 512-position chunks
    {9, 3, 64, 16, {{40, 1}, {17, 2}, {100, 1}, {5, 3}, {64, 4}}}, // a decode batch: short runs only (RoPE per run)
};

std::vector<float> contiguous_reference(const PagedCase& c, const PagedSetup& s, int threads) {
  std::vector<float> expected(s.q.size());
  const size_t token_floats = size_t(c.n_heads) * c.head_dim;
  for (int seq = 0; seq < s.batch.n_sequences(); ++seq) {
    const int q0 = s.batch.query_start[seq], n = s.batch.query_start[seq + 1] - q0;
    cpu::attention_v1_naive(s.q.data() + q0 * token_floats, s.k_contiguous[seq].data(), s.v_contiguous[seq].data(),
                            expected.data() + q0 * token_floats, n, s.batch.positions[q0], c.n_heads, c.n_kv_heads,
                            c.head_dim, threads);
  }
  return expected;
}

double max_abs_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, double(std::fabs(a[i] - b[i])));
  return worst;
}

}  // namespace

TEST_CASE("paged attention v1 equals contiguous attention v1 bit for bit (same arithmetic through the table)") {
  uint64_t seed = 500;
  for (const PagedCase& c : kCases) {
    CAPTURE(c.block_size);
    CAPTURE(c.n_heads);
    const PagedSetup s = make_setup(c, seed += 10);
    const std::vector<float> expected = contiguous_reference(c, s, 2);
    std::vector<float> out(s.q.size(), NAN);
    cpu::paged_attention_v1_naive(s.q.data(), s.k_pool.data(), s.v_pool.data(), out.data(), view_of(s.batch),
                                  c.n_heads, c.n_kv_heads, c.head_dim, 2);
    CHECK(std::memcmp(out.data(), expected.data(), out.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("paged attention v2 equals contiguous v2 bit for bit and the v1 reference within fp32 rounding") {
  uint64_t seed = 900;
  for (const PagedCase& c : kCases) {
    CAPTURE(c.block_size);
    CAPTURE(c.n_heads);
    const PagedSetup s = make_setup(c, seed += 10);
    const std::vector<float> reference = contiguous_reference(c, s, 1);
    // The contiguous v2, sequence by sequence.
    std::vector<float> contiguous_v2(s.q.size());
    const size_t token_floats = size_t(c.n_heads) * c.head_dim;
    for (int seq = 0; seq < s.batch.n_sequences(); ++seq) {
      const int q0 = s.batch.query_start[seq], n = s.batch.query_start[seq + 1] - q0;
      cpu::attention_v2_grouped(s.q.data() + q0 * token_floats, s.k_contiguous[seq].data(),
                                s.v_contiguous[seq].data(), contiguous_v2.data() + q0 * token_floats, n,
                                s.batch.positions[q0], c.n_heads, c.n_kv_heads, c.head_dim, 1);
    }
    for (int threads : {1, 2, 3}) {
      CAPTURE(threads);
      std::vector<float> out(s.q.size(), NAN);
      cpu::paged_attention_v2_grouped(s.q.data(), s.k_pool.data(), s.v_pool.data(), out.data(), view_of(s.batch),
                                      c.n_heads, c.n_kv_heads, c.head_dim, threads);
      CHECK(std::memcmp(out.data(), contiguous_v2.data(), out.size() * sizeof(float)) == 0);
      // Outputs are convex combinations of V entries in [-1, 1): |out| <= 1. The online softmax rescales
      // and sums in another order than v1's three passes: a few ulps of 1 per output, over a few hundred
      // positions at most; 2e-6 is ~30 ulps, while a wrong row or block gives errors of order 0.1-1.
      CHECK(max_abs_difference(out, reference) < 2e-6);
    }
  }
}

TEST_CASE("attention v3 (tiles, chunks): paged equals contiguous bit for bit, whatever the batch and threads") {
  uint64_t seed = 2100;
  for (const PagedCase& c : kCases) {
    CAPTURE(c.block_size);
    CAPTURE(c.n_heads);
    const PagedSetup s = make_setup(c, seed += 10);
    const std::vector<float> reference = contiguous_reference(c, s, 2);
    const size_t token_floats = size_t(c.n_heads) * c.head_dim;
    // Each sequence alone in a contiguous cache, and each query alone (n = 1): few work items, so the
    // kernel splits long contexts over the threads.
    std::vector<float> alone(s.q.size()), one_by_one(s.q.size());
    for (int seq = 0; seq < s.batch.n_sequences(); ++seq) {
      const int q0 = s.batch.query_start[seq], n = s.batch.query_start[seq + 1] - q0;
      cpu::attention_v3_tiled(s.q.data() + q0 * token_floats, s.k_contiguous[seq].data(), s.v_contiguous[seq].data(),
                              alone.data() + q0 * token_floats, n, s.batch.positions[q0], c.n_heads, c.n_kv_heads,
                              c.head_dim, 2);
      for (int t = q0; t < q0 + n; ++t)
        cpu::attention_v3_tiled(s.q.data() + t * token_floats, s.k_contiguous[seq].data(), s.v_contiguous[seq].data(),
                                one_by_one.data() + t * token_floats, 1, s.batch.positions[t], c.n_heads, c.n_kv_heads,
                                c.head_dim, 1);
    }
    CHECK(std::memcmp(alone.data(), one_by_one.data(), alone.size() * sizeof(float)) == 0);
    for (int threads : {1, 2, 3}) {
      CAPTURE(threads);
      std::vector<float> out(s.q.size(), NAN);
      cpu::paged_attention_v3_tiled(s.q.data(), s.k_pool.data(), s.v_pool.data(), out.data(), view_of(s.batch),
                                    c.n_heads, c.n_kv_heads, c.head_dim, threads);
      CHECK(std::memcmp(out.data(), alone.data(), out.size() * sizeof(float)) == 0);
      // Against the three-pass reference: its own exp (within ~2 ulp of expf), tile-wise rescaling and a
      // log-sum-exp merge of 512-position chunks, all rounding differences of a few ulps of outputs bounded by
      // 1 (convex combinations of V in [-1, 1)); a wrong row, block, chunk or mask is off by 0.01 to 1.
      CHECK(max_abs_difference(out, reference) < 4e-6);
    }
  }
}

TEST_CASE("the CPU backend's paged_attention, store_kv and positions rope") {
  auto backend = make_cpu_backend(2);
  uint64_t seed = 1300;
  for (const PagedCase& c : kCases) {
    CAPTURE(c.block_size);
    PagedSetup s = make_setup(c, seed += 10);
    // paged_attention: every sequence's rows equal the contiguous op run on that sequence alone (whatever
    // path the backend takes), bit for bit.
    std::vector<float> expected(s.q.size()), out(s.q.size(), NAN);
    const size_t token_floats = size_t(c.n_heads) * c.head_dim;
    for (int seq = 0; seq < s.batch.n_sequences(); ++seq) {
      const int q0 = s.batch.query_start[seq], n = s.batch.query_start[seq + 1] - q0;
      backend->attention(s.q.data() + q0 * token_floats, s.k_contiguous[seq].data(), s.v_contiguous[seq].data(),
                         expected.data() + q0 * token_floats, n, s.batch.positions[q0], c.n_heads, c.n_kv_heads,
                         c.head_dim);
    }
    backend->paged_attention(s.q.data(), s.k_pool.data(), s.v_pool.data(), out.data(), view_of(s.batch), c.n_heads,
                             c.n_kv_heads, c.head_dim);
    CHECK(std::memcmp(out.data(), expected.data(), out.size() * sizeof(float)) == 0);

    // store_kv: token t's rows land at slot_mapping[t], nothing else moves.
    const int T = s.batch.n_tokens();
    const auto new_k = test::random_floats(size_t(T) * s.kv_dim, seed + 5), new_v = test::random_floats(size_t(T) * s.kv_dim, seed + 6);
    std::vector<float> k_expected = s.k_pool, v_expected = s.v_pool;
    for (int t = 0; t < T; ++t) {
      std::copy_n(new_k.begin() + ptrdiff_t(t) * s.kv_dim, s.kv_dim, k_expected.begin() + ptrdiff_t(s.batch.slot_mapping[t]) * s.kv_dim);
      std::copy_n(new_v.begin() + ptrdiff_t(t) * s.kv_dim, s.kv_dim, v_expected.begin() + ptrdiff_t(s.batch.slot_mapping[t]) * s.kv_dim);
    }
    backend->store_kv(new_k.data(), new_v.data(), s.k_pool.data(), s.v_pool.data(), s.batch.slot_mapping.data(), T,
                      s.kv_dim, s.num_blocks * c.block_size);
    CHECK(s.k_pool == k_expected);
    CHECK(s.v_pool == v_expected);

    // rope with one position per token: each token rotated exactly as the scalar-position kernel rotates it alone.
    for (RopeLayout layout : {RopeLayout::Interleaved, RopeLayout::HalfSplit}) {
      std::vector<float> x = s.q, one_by_one = s.q;
      backend->rope(x.data(), T, c.n_heads, c.head_dim, s.batch.positions.data(), 100000.0f, layout);
      for (int t = 0; t < T; ++t)
        cpu::rope(one_by_one.data() + t * token_floats, 1, c.n_heads, c.head_dim, s.batch.positions[t], 100000.0f,
                  layout, 1);
      CHECK(x == one_by_one);
    }
  }
}

TEST_CASE("store_kv refuses a slot outside the pool before writing") {
  auto backend = make_cpu_backend(1);
  std::vector<float> k(4 * 3, 1.0f), v(4 * 3, 2.0f), rows(2 * 3, 9.0f);
  const int slots[] = {1, 4};  // the pool has slots 0..3
  CHECK_THROWS_AS(backend->store_kv(rows.data(), rows.data(), k.data(), v.data(), slots, 2, 3, 4), Error);
  CHECK(std::all_of(k.begin(), k.end(), [](float x) { return x == 1.0f; }));
}
