// test_batch_forward.cpp: Transformer::forward(Batch), the ragged-batch pass, is exact on the CPU.
//
// Several sequences of different lengths run (a) each alone through ch05's one-sequence cache, (b) together
// in one batch over a paged pool whose blocks are interleaved between the sequences, and (c) as a schedule
// of chunked prefills mixed with one-token decode rows, sequences joining late, over a pool with another
// block size. Every position's logits must be the same bits in all three: the GEMM and GEMV sum in the
// same order, and attention computes each query independently of the rest of the batch. Models: random
// ones (GQA, RoPE theta 100000, both RoPE layouts) and stories260K.
#include "infer/core/error.h"
#include "infer/formats/model_file.h"
#include "infer/model/backend.h"
#include "infer/model/batch.h"
#include "infer/model/kv_cache.h"
#include "infer/model/paged_kv_cache.h"
#include "infer/model/transformer.h"
#include "reference_model.h"
#include "golden_util.h"
#include "test_util.h"

#include <cstring>
#include <filesystem>
#include <random>

using namespace infer;
using namespace infer::test;

namespace {

using Logits = std::vector<std::vector<float>>;  // [position] -> vocab_size floats

std::vector<std::vector<int>> random_sequences(const std::vector<int>& lengths, int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> token(0, vocab - 1);
  std::vector<std::vector<int>> out;
  for (int n : lengths) {
    std::vector<int> s(static_cast<size_t>(n));
    for (int& t : s) t = token(rng);
    out.push_back(std::move(s));
  }
  return out;
}

// (a) one sequence alone, all its tokens in one pass through ch05's cache.
Logits run_alone(Transformer& model, const std::vector<int>& tokens) {
  const size_t vocab = size_t(model.config().vocab_size);
  KVCache cache(model.backend(), model.config(), int(tokens.size()));
  std::vector<float> last(vocab), all(tokens.size() * vocab);
  model.forward(tokens, 0, cache, last.data(), all.data());
  Logits out;
  for (size_t p = 0; p < tokens.size(); ++p) out.emplace_back(all.begin() + ptrdiff_t(p * vocab), all.begin() + ptrdiff_t((p + 1) * vocab));
  return out;
}

// Sequence s's blocks in a pool shared by `n_sequences`: logical block j is pool block j * n_sequences + s
// (interleaved, so no sequence's blocks are consecutive), in reverse order of j when `reverse`.
std::vector<int> interleaved_blocks(int s, int n_sequences, int n_blocks, bool reverse) {
  std::vector<int> blocks;
  for (int j = 0; j < n_blocks; ++j) blocks.push_back((reverse ? n_blocks - 1 - j : j) * n_sequences + s);
  return blocks;
}

// One step of a schedule: sequence `seq` runs its next `n` tokens.
struct Chunk {
  int seq, n;
};

// (b) and (c): runs `steps` (each a list of chunks, one batch per step) over a pool of `block_size`;
// returns every position's logits per sequence.
std::vector<Logits> run_schedule(Transformer& model, const std::vector<std::vector<int>>& sequences,
                                 const std::vector<std::vector<Chunk>>& steps, int block_size, bool reverse) {
  const int S = int(sequences.size());
  const size_t vocab = size_t(model.config().vocab_size);
  size_t longest = 0;
  for (const auto& s : sequences) longest = std::max(longest, s.size());
  const int max_blocks = int((longest + size_t(block_size) - 1) / size_t(block_size));
  PagedKVCache pool(model.backend(), model.config(), S * max_blocks, block_size);
  std::vector<int> done(static_cast<size_t>(S), 0);
  std::vector<Logits> out(static_cast<size_t>(S));
  for (const std::vector<Chunk>& step : steps) {
    Batch batch(block_size);
    std::vector<int> first_logit;
    for (const Chunk& c : step) {
      const auto& tokens = sequences[size_t(c.seq)];
      const int start = done[size_t(c.seq)];
      const int needed = (start + c.n + block_size - 1) / block_size;
      const std::vector<int> blocks = interleaved_blocks(c.seq, S, max_blocks, reverse);
      // Only the blocks that cover the context so far, as a block manager hands them out.
      first_logit.push_back(batch.add_sequence(std::span<const int>(tokens.data() + start, size_t(c.n)), start,
                                               std::span<const int>(blocks.data(), size_t(needed)), LogitsFor::all));
    }
    std::vector<float> logits(batch.logits_rows.size() * vocab);
    model.forward(batch, pool, logits.data());
    for (size_t i = 0; i < step.size(); ++i) {
      const Chunk& c = step[i];
      for (int t = 0; t < c.n; ++t) {
        const size_t row = size_t(first_logit[i] + t);
        out[size_t(c.seq)].emplace_back(logits.begin() + ptrdiff_t(row * vocab), logits.begin() + ptrdiff_t((row + 1) * vocab));
      }
      done[size_t(c.seq)] += c.n;
    }
  }
  return out;
}

// A schedule with chunked prefill and mixed decode rows: sequence s advances by chunk[s] tokens per step
// (1 = a decode-like row), starting at step start[s]; a step holds every sequence with tokens left.
std::vector<std::vector<Chunk>> chunked_schedule(const std::vector<std::vector<int>>& sequences,
                                                 const std::vector<int>& chunk, const std::vector<int>& start) {
  std::vector<std::vector<Chunk>> steps;
  std::vector<int> done(sequences.size(), 0);
  for (int step = 0;; ++step) {
    std::vector<Chunk> chunks;
    // Sequences in a rotating order, so a sequence's place in the batch changes from step to step.
    for (size_t k = 0; k < sequences.size(); ++k) {
      const size_t s = (k + size_t(step)) % sequences.size();
      const int left = int(sequences[s].size()) - done[s];
      if (step < start[s] || left == 0) continue;
      const int n = std::min(left, chunk[s]);
      chunks.push_back({int(s), n});
      done[s] += n;
    }
    bool finished = true;
    for (size_t s = 0; s < sequences.size(); ++s) finished = finished && done[s] == int(sequences[s].size());
    if (!chunks.empty()) steps.push_back(std::move(chunks));
    if (finished) break;
  }
  return steps;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void check_exact(const ModelFile& file, uint64_t seed) {
  const ModelConfig& config = file.config;
  auto backend = make_cpu_backend(2);
  Weights weights(file, WeightFormat::F32, *backend);
  const std::vector<int> lengths = {13, 5, 21, 2};
  const auto sequences = random_sequences(lengths, config.vocab_size, seed);
  Transformer model(weights, *backend, 13 + 5 + 21 + 2);

  std::vector<Logits> alone;
  for (const auto& s : sequences) alone.push_back(run_alone(model, s));

  // (b) all sequences in one batch, every token in one pass.
  std::vector<Chunk> everything;
  for (size_t s = 0; s < sequences.size(); ++s) everything.push_back({int(s), lengths[s]});
  const auto together = run_schedule(model, sequences, {everything}, 4, false);
  // (c) chunked prefill (3, 2 and 5 tokens per step) with a one-token row, sequences joining at steps 0-3,
  // block size 3, blocks in reverse order.
  const auto chunked = run_schedule(model, sequences, chunked_schedule(sequences, {3, 1, 5, 2}, {0, 2, 1, 3}), 3, true);

  for (size_t s = 0; s < sequences.size(); ++s) {
    CAPTURE(s);
    REQUIRE(together[s].size() == alone[s].size());
    REQUIRE(chunked[s].size() == alone[s].size());
    int differ_together = 0, differ_chunked = 0;
    for (size_t p = 0; p < alone[s].size(); ++p) {
      differ_together += !same_bits(together[s][p], alone[s][p]);
      differ_chunked += !same_bits(chunked[s][p], alone[s][p]);
    }
    CHECK_MESSAGE(differ_together == 0, differ_together << " positions' logits differ between alone and batched");
    CHECK_MESSAGE(differ_chunked == 0, differ_chunked << " positions' logits differ between alone and chunked/mixed");
  }
  // The alone run is itself exact against token-by-token decoding (the ch05 decode path, n = 1 per pass).
  const auto& first = sequences[2];
  KVCache cache(*backend, config, int(first.size()));
  std::vector<float> logits(size_t(config.vocab_size));
  int differ_decode = 0;
  for (size_t p = 0; p < first.size(); ++p) {
    model.forward(std::span<const int>(&first[p], 1), int(p), cache, logits.data());
    differ_decode += !same_bits(logits, alone[2][p]);
  }
  CHECK(differ_decode == 0);
}

}  // namespace

TEST_CASE("forward(Batch) is exact on the CPU: alone, batched and chunked give the same logits (random models)") {
  ModelConfig gqa = shape(48, 2, 6, 2, 8, 100, 61, RopeLayout::Interleaved, false);
  gqa.rope_theta = 100000.0f;
  ModelConfig half_split = shape(40, 2, 4, 2, 10, 77, 45, RopeLayout::HalfSplit, true);
  half_split.rope_theta = 100000.0f;
  ModelConfig mqa = shape(36, 2, 3, 1, 12, 70, 33, RopeLayout::HalfSplit, false);
  mqa.rope_theta = 100000.0f;
  uint64_t seed = 4000;
  for (const ModelConfig& config : {gqa, half_split, mqa}) {
    CAPTURE(config.dim);
    const RandomModel model = make_random_model(config, ++seed);
    check_exact(model.file, seed * 7);
  }
}

TEST_CASE("forward(Batch) is exact on the CPU on stories260K") {
  INFER_MODEL_FILE(path, test::kStories260K);
  check_exact(load_model_file(path.string()), 77);
}

TEST_CASE("forward(Batch) refuses a bad batch or a cache of another model before running") {
  const ModelConfig config = shape(32, 2, 4, 2, 8, 64, 40, RopeLayout::Interleaved, true);
  const RandomModel model = make_random_model(config, 5);
  auto backend = make_cpu_backend(1);
  Weights weights(model.file, WeightFormat::F32, *backend);
  Transformer transformer(weights, *backend, 8);
  PagedKVCache pool(*backend, config, 4, 4);
  std::vector<float> logits(size_t(config.vocab_size) * 8);
  const int tokens[] = {1, 2, 3};
  const int blocks[] = {2};

  Batch empty(4);
  CHECK_THROWS_AS(transformer.forward(empty, pool, logits.data()), Error);
  Batch outside(4);
  const int far_block[] = {9};  // the pool has blocks 0..3
  outside.add_sequence(tokens, 0, far_block, LogitsFor::last);
  CHECK_THROWS_AS(transformer.forward(outside, pool, logits.data()), Error);
  Batch too_many(4);
  const std::vector<int> nine(9, 1);
  const int three_blocks[] = {0, 1, 3};
  too_many.add_sequence(nine, 0, three_blocks, LogitsFor::last);  // 9 tokens, buffers for 8
  CHECK_THROWS_AS(transformer.forward(too_many, pool, logits.data()), Error);
  ModelConfig other = config;
  other.n_layers = 3;
  PagedKVCache other_pool(*backend, other, 4, 4);
  Batch good(4);
  good.add_sequence(tokens, 0, blocks, LogitsFor::last);
  CHECK_THROWS_AS(transformer.forward(good, other_pool, logits.data()), Error);
  CHECK_NOTHROW(transformer.forward(good, pool, logits.data()));
}
