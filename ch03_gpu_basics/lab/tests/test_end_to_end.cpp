// test_end_to_end.cpp: ch03 lab, both exercises inside the real engine on the real stories260K model
// (stories260K/ in the model folders of infer/core/model_search.h, ../shared/models in CI: a 260K-parameter
// Llama in llama2.c format; skipped, naming the file, when absent).
//
//  rope:  greedy decoding must reproduce llama2.c's text byte for byte. Every layer applies RoPE to every
//         query and key, so a wrong angle anywhere shows up as a different story.
//  top_p: the nucleus of the model's real next-token distributions, which are far more peaked than
//         random logits, must match the definition.
#include "golden_util.h"
#include "infer/engine/generator.h"
#include "infer/engine/sampling_filters.h"
#include "infer/tokenizer/tokenizer.h"
#include "lab_checks.h"

using namespace infer;

TEST_CASE("rope end to end: stories260K greedy text matches llama2.c's") {
  INFER_GOLDEN_FILES(test::kStories260K);
  // As llama2.c's `run stories260K.bin -z tok512.bin -t 0.0 -n 200`: start from BOS, 200 greedy steps,
  // stop on BOS, each token printed with the previous one as context (golden_util.h).
  auto backend = make_cpu_backend(1);  // one thread: this checks results, and a loaded machine slows OpenMP teams
  const std::string text = test::stories260k_greedy_text<NaiveGenerator>(model_path, tokenizer_path, *backend);

  const std::string expected = test::read_text(golden_path);
  if (text != expected) {
    size_t first = 0;
    while (first < text.size() && first < expected.size() && text[first] == expected[first]) ++first;
    FAIL_CHECK("the story differs from character " << first << " on.\n  expected: \"" << expected.substr(0, 120)
               << "...\"\n  got:      \"" << text.substr(0, 120) << "...\"\n"
               << "  (The first token is at position 0, where RoPE rotates nothing, so a wrong angle convention "
                  "typically keeps the first word and goes wrong soon after. Fix the rope unit tests first.)");
  }
  const bool same_story = text == expected;  // (a bool: doctest would print both 464-byte texts again)
  CHECK(same_story);
}

TEST_CASE("top_p end to end: the nucleus of stories260K's next-token distributions") {
  INFER_MODEL_FILE(model_path, test::kStories260K);
  INFER_MODEL_FILE(tokenizer_path, test::kTok512);
  ModelFile file = load_model_file(model_path.string());
  auto tokenizer = load_llama2c_tokenizer(tokenizer_path.string(), file.config.vocab_size);
  auto backend = make_cpu_backend(1);  // one thread: this checks results, and a loaded machine slows OpenMP teams
  Weights weights(file, WeightFormat::F32, *backend);
  const auto prompt = tokenizer->encode("Once upon a time, there was a little girl named Lily. She", true);
  const int vocab = file.config.vocab_size;
  Transformer transformer(weights, *backend, int(prompt.size()));
  KVCache cache(*backend, file.config, int(prompt.size()));
  std::vector<float> last(static_cast<size_t>(vocab)), all(prompt.size() * static_cast<size_t>(vocab));
  transformer.forward(prompt, 0, cache, last.data(), all.data());

  int checked = 0;
  for (size_t t = 0; t < prompt.size(); ++t) {
    const std::vector<float> logits(all.begin() + std::ptrdiff_t(t * vocab), all.begin() + std::ptrdiff_t((t + 1) * vocab));
    const auto candidates = lab::softmax_candidates(logits);
    for (float top_p : {0.5f, 0.9f, 0.95f}) {
      if (lab::distance_to_a_prefix_sum(candidates, top_p) < 1e-7) continue;  // a rounding tie (see lab_checks.h)
      const auto expected = lab::nucleus_reference(candidates, top_p);
      auto actual = candidates;
      const size_t keep = select_nucleus(actual, top_p);
      INFO("after prompt token " << t << ", top_p " << top_p << ": expected " << expected.size() << " of " << vocab
                                 << " tokens kept");
      REQUIRE(keep == expected.size());
      for (size_t i = 0; i < keep; ++i) CHECK(actual[i].second == expected[i]);
      ++checked;
    }
  }
  CHECK(checked >= int(prompt.size()) * 3 - 2);  // all but a rare rounding tie
}
