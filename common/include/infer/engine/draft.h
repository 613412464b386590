// draft.h: the proposers of speculative decoding (ch08), four kinds behind one interface.
//
// A draft guesses the next gamma tokens cheaply; the target model then checks all of them in one pass
// (speculative.h). The output never depends on the draft (greedy: token for token the target's; sampling:
// exactly the target's distribution), only the speed does: how often its guesses are accepted, and what
// a guess costs next to a target pass.
//
//   ModelDraft      (a) another model with the same vocabulary (--draft-model PATH), or
//                   (b) the target's own weights in a cheaper format (self-draft: f16 / bf16 here; int8 /
//                       int4 once ch07's quantized weights land), or
//                   (c) early exit: the target's own Transformer run through its first k layers, then its
//                       final norm and classifier (shares every weight; only its k-layer cache is extra)
//   NgramDraft      (d) prompt lookup: the continuation of the longest recent n-gram that occurred before
//                       in the prompt or the output; no model at all, free to run, and right whenever the
//                       output copies its input (summaries, edits, code)
//
// A model draft runs its own sequence (SequenceRunner) and rolls it back lazily: at the next propose() it
// keeps the longest prefix of what it cached that is still in the sequence and runs the rest.
#pragma once

#include "infer/engine/sampler.h"
#include "infer/engine/sequence_runner.h"
#include "infer/tokenizer/tokenizer.h"

#include <memory>
#include <span>
#include <string>
#include <vector>

namespace infer {

// What a draft proposes after a sequence: tokens d_1..d_k (k <= gamma) and, for a draft that samples,
// the distribution q_i each d_i was drawn from (vocab_size floats per token, row i for d_(i+1)).
// Empty `q`: the draft is deterministic (n-gram, or greedy), q_i is the point mass on d_i.
struct DraftProposal {
  std::vector<int> tokens;
  std::vector<float> q;  // (tokens.size(), vocab_size) or empty
  void clear() {
    tokens.clear();
    q.clear();
  }
};

class Draft {
 public:
  virtual ~Draft() = default;
  // "draft model", "self-draft bf16", "early exit 8/30", "prompt lookup" ...
  virtual std::string name() const = 0;
  // Proposes up to `gamma` tokens continuing `sequence` (prompt + tokens accepted so far), into `out`.
  // `sampler` holds the sampling settings (temperature 0: argmax) and the draft's own RNG.
  virtual void propose(std::span<const int> sequence, int gamma, Sampler& sampler, DraftProposal& out) = 0;
  // A new sequence starts with `prompt`: forgets the last one and, for a model draft, prefills the prompt
  // but its last token (as the target does), so that the first proposal costs what every later one does.
  virtual void begin(std::span<const int> prompt) {}
  // The same, once `target` (the target's runner) holds the prompt but its last token: a draft that can
  // take what it needs from the target's cache (early exit: the K/V of its layers) copies it instead.
  virtual void begin(std::span<const int> prompt, const SequenceRunner& /*target*/) { begin(prompt); }
  // The sequence is over: gives back what it holds (a paged draft's blocks).
  virtual void finish() {}
  // Model passes run by the draft so far (proposals and catch-ups); 0 for the n-gram draft.
  virtual int passes() const { return 0; }
};

// (a), (b), (c): a model proposes by decoding gamma tokens one at a time with its own cache.
class ModelDraft : public Draft {
 public:
  // `model` must have the target's vocabulary (check_draft_compatible); `capacity` bounds the positions
  // its contiguous cache holds (prompt + new tokens + gamma); with paged `storage` its blocks come from the pool.
  // An early-exit draft is a ModelDraft over a Transformer with set_layer_limit(k) on the target's Weights.
  // How begin(prompt, target) fills the draft's cache with the prompt:
  //   own_prefill      its own pass over the prompt (exact for any draft), except an early-exit draft, which
  //                    copies its layers' K/V from the target's cache (the same rows its own pass would write)
  //   target_prompt_kv the target's K/V of the prompt, every layer the draft runs, copied instead of computed:
  //                    for a self-draft (the target's weights in a cheaper format) they differ from its own
  //                    only by that format's rounding. Only the guesses can change, never the output (the
  //                    target verifies every token), and the draft's prefill (for ch08's q8_0 self-draft
  //                    on a 118-token prompt, ~0.1 s against ~0.85 s of decoding) is gone.
  enum class Prefill { own_prefill, target_prompt_kv };
  ModelDraft(std::string name, Transformer& model, int capacity, KVStorage storage = {},
             Prefill prefill = Prefill::own_prefill);
  std::string name() const override { return name_; }
  void propose(std::span<const int> sequence, int gamma, Sampler& sampler, DraftProposal& out) override;
  void begin(std::span<const int> prompt) override;
  // An early-exit draft (this model runs the target's own Weights through its first k layers), or any draft
  // made with Prefill::target_prompt_kv, copies the prompt's K/V of its layers from the target's cache
  // (f32 caches of one kv_dim): no prefill of its own. Otherwise begin(prompt).
  // An early-exit draft also catches up that way until finish(): when a proposal finds it kCopyCatchUp or
  // more tokens behind the target's cache (speculation was off for a while: the fallback's plain steps),
  // it copies its layers' K/V of the sequence from the target (exact) instead of running them.
  void begin(std::span<const int> prompt, const SequenceRunner& target) override;
  void finish() override {
    runner_->truncate(0);
    catch_up_source_ = nullptr;
  }
  static constexpr int kCopyCatchUp = 4;
  int passes() const override { return passes_; }
  const SequenceRunner& runner() const { return *runner_; }

 private:
  std::string name_;
  Prefill prefill_;
  std::unique_ptr<SequenceRunner> runner_;
  const SequenceRunner* catch_up_source_ = nullptr;  // the target's runner, between begin() and finish()
  std::vector<float> logits_;    // (vocab_size)
  std::vector<int> history_;     // sequence + drafted tokens: the penalties' history
  TokenDistribution dist_;
  int passes_ = 0;
};

// (d): prompt lookup. Finds the longest suffix of the sequence (max_ngram down to min_ngram tokens) that
// occurred earlier, most recent occurrence first, and proposes the up to gamma tokens that followed it.
// Proposes nothing when no suffix recurs (the round is then a plain decode step).
class NgramDraft : public Draft {
 public:
  explicit NgramDraft(int max_ngram = 4, int min_ngram = 2);
  std::string name() const override { return "prompt lookup"; }
  void propose(std::span<const int> sequence, int gamma, Sampler& sampler, DraftProposal& out) override;

 private:
  int max_ngram_;
  int min_ngram_;
};

// Throws infer::Error unless a draft model can propose tokens for the target: the same vocabulary size,
// the same special ids and, when both tokenizers are given, the same piece for every id. The message
// names the first difference ("the draft's vocabulary has 512 tokens, the target's 49152").
void check_draft_compatible(const ModelConfig& target, const ModelConfig& draft, const Tokenizer* target_tokenizer,
                            const Tokenizer* draft_tokenizer);

}  // namespace infer
