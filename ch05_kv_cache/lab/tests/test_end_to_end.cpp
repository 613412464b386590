// test_end_to_end.cpp: ch05 lab, both exercises inside the real engine.
//
// Transformer::forward stores each layer's K/V with your cpu::store_kv and attends with your
// cpu::attention, for the prefill of a prompt (n tokens at start_pos 0) and every decode step (1 token
// at start_pos = tokens so far). So:
//  - on random models (GQA, MQA, head_dim not a multiple of 8), the logits of a prefill followed by
//    decode steps must match a float64 forward pass written plainly (common/tests/reference_model.h),
//    and CachedGenerator must pick the same greedy tokens as NaiveGenerator (which recomputes the whole
//    sequence every step: one prefill-shaped pass per token);
//  - on the real stories260K (../shared/models/stories260K in CI, skipped naming the file when absent), CachedGenerator's
//    greedy story must reproduce llama2.c's byte for byte.
#include "infer/engine/generator.h"
#include "infer/tokenizer/tokenizer.h"
#include "golden_util.h"
#include "reference_model.h"
#include "test_util.h"

using namespace infer;

namespace {

GenerationOptions greedy(int max_new) {
  GenerationOptions options;
  options.max_new_tokens = max_new;
  options.sampler.temperature = 0.0f;
  return options;
}

}  // namespace

TEST_CASE("end_to_end: random models: prefill + decode-step logits match a float64 forward pass") {
  const std::vector<ModelConfig> shapes = {
      test::shape(48, 3, 6, 2, 8, 100, 61, RopeLayout::Interleaved, false),  // GQA 3:1
      test::shape(36, 2, 3, 1, 12, 70, 33, RopeLayout::HalfSplit, true),     // one kv head (MQA), head_dim 12
      test::shape(40, 2, 4, 2, 10, 77, 45, RopeLayout::HalfSplit, false),    // head_dim 10
  };
  const std::vector<int> sequence = {1, 7, 3, 30, 12, 0, 29, 5, 17, 2, 31, 8, 8, 20};
  const int prompt = 5, n = int(sequence.size());
  auto backend = make_cpu_backend(2);
  uint64_t seed = 300;
  for (const ModelConfig& config : shapes) {
    CAPTURE(config.n_heads);
    CAPTURE(config.n_kv_heads);
    CAPTURE(config.head_dim);
    test::RandomModel model = test::make_random_model(config, ++seed);
    const auto reference = test::reference_logits(model, sequence);  // every position's logits, in double
    Weights weights(model.file, WeightFormat::F32, *backend);
    Transformer transformer(weights, *backend, n);
    KVCache cache(*backend, config, n);
    std::vector<float> logits(size_t(config.vocab_size));
    // What CachedGenerator does: the prompt in one pass, then one token per pass at its position.
    // Tolerance: fp32 sums of a few hundred terms, 2-3 layers deep, are within ~1e-6 of the float64
    // reference relative to the largest logit (the engine measures <= 7e-7, test_forward.cpp); 1e-5 leaves
    // room for another summation order, while a wrong row, position or head moves logits by O(0.1).
    transformer.forward(std::span<const int>(sequence.data(), prompt), 0, cache, logits.data());
    double worst = test::max_relative_error(logits.data(), reference[prompt - 1]);
    int worst_position = prompt - 1;
    for (int position = prompt; position < n; ++position) {
      transformer.forward(std::span<const int>(&sequence[position], 1), position, cache, logits.data());
      const double error = test::max_relative_error(logits.data(), reference[position]);
      if (!(error <= worst)) worst = error, worst_position = position;  // (a NaN counts as the worst)
    }
    CHECK_MESSAGE(worst <= 1e-5, "largest logit error " << worst << " (relative to the largest logit) at position "
                                 << worst_position
                                 << (worst_position == prompt - 1 ? " (the prefill's last token)" : " (a decode step)")
                                 << ". Fix the kv_store and attention unit tests first.");
  }
}

TEST_CASE("end_to_end: random models: CachedGenerator picks the naive decoder's greedy tokens") {
  // The naive decoder recomputes everything each step (start_pos 0, the whole sequence in one pass);
  // the cached one decodes one token at start_pos > 0 over your cache: equal tokens mean the two paths
  // agree. The first check anchors both on the float64 reference, so two equally wrong paths fail.
  const ModelConfig config = test::shape(48, 2, 6, 2, 8, 100, 61, RopeLayout::Interleaved, true);
  test::RandomModel model = test::make_random_model(config, 77);
  auto backend = make_cpu_backend(2);
  Weights weights(model.file, WeightFormat::F32, *backend);
  const std::vector<int> prompt = {1, 40, 2, 9};
  constexpr int kNew = 30;
  Transformer transformer(weights, *backend, int(prompt.size()) + kNew);

  const auto reference = test::reference_logits(model, prompt);
  KVCache cache(*backend, config, int(prompt.size()));
  std::vector<float> logits(size_t(config.vocab_size));
  transformer.forward(prompt, 0, cache, logits.data());
  const double prefill_error = test::max_relative_error(logits.data(), reference.back());
  CHECK_MESSAGE(prefill_error <= 1e-5, "the prompt's logits are off the float64 reference by " << prefill_error
                                       << " (relative; tolerance as in the test above)");

  const GenerationResult naive = NaiveGenerator(transformer).generate(prompt, greedy(kNew));
  const GenerationResult cached = CachedGenerator(transformer).generate(prompt, greedy(kNew));
  REQUIRE(naive.tokens.size() == size_t(kNew));
  size_t first_difference = 0;
  while (first_difference < cached.tokens.size() && cached.tokens[first_difference] == naive.tokens[first_difference])
    ++first_difference;
  CHECK_MESSAGE(cached.tokens == naive.tokens, "the cached decoder's token " << first_difference << " (position "
                << prompt.size() + first_difference << ") differs from the naive decoder's");
}

TEST_CASE("end_to_end: stories260K greedy text with the KV cache matches llama2.c's") {
  INFER_GOLDEN_FILES(test::kStories260K);
  // As llama2.c's `run stories260K.bin -z tok512.bin -t 0.0 -n 200`: start from BOS, 200 greedy steps,
  // stop on BOS, each token printed with the previous one as context.
  ModelFile file = load_model_file(model_path.string());
  auto tokenizer = load_llama2c_tokenizer(tokenizer_path.string(), file.config.vocab_size);
  auto backend = make_cpu_backend(1);  // one thread: this checks results, and a loaded machine slows OpenMP teams
  Weights weights(file, WeightFormat::F32, *backend);
  Transformer transformer(weights, *backend, 1);  // the cached decoder runs 1-token passes after a 1-token prompt
  CachedGenerator generator(transformer);
  GenerationOptions options = greedy(200);
  options.stop_tokens = {tokenizer->bos_id()};
  std::string text;
  int previous = tokenizer->bos_id();
  generator.generate({tokenizer->bos_id()}, options, [&](int token) {
    text += tokenizer->decode_token(previous, token);
    previous = token;
    return true;
  });

  const std::string expected = test::read_text(golden_path);
  if (text != expected) {
    size_t first = 0;
    while (first < text.size() && first < expected.size() && text[first] == expected[first]) ++first;
    FAIL_CHECK("the story differs from character " << first << " on.\n  expected: \"" << expected.substr(0, 120)
               << "...\"\n  got:      \"" << text.substr(0, 120) << "...\"\n"
               << "  (Every decode step appends one K/V row per layer and attends over all rows so far: a row in "
                  "the wrong place or a position left out changes the story within a few tokens.)");
  }
  const bool same_story = text == expected;  // (a bool: doctest would print both 464-byte texts again)
  CHECK(same_story);
}
