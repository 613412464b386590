// draft.cpp: the drafts of speculative decoding (draft.h).
#include "infer/engine/draft.h"

#include "infer/core/error.h"

#include <algorithm>

namespace infer {

// ---- (a) (b) (c): a model decodes gamma tokens ------------------------------------------------------

ModelDraft::ModelDraft(std::string name, Transformer& model, int capacity, KVStorage storage, Prefill prefill)
    : name_(std::move(name)),
      prefill_(prefill),
      runner_(make_sequence_runner(model, capacity, storage)),
      logits_(size_t(model.config().vocab_size)) {}

void ModelDraft::begin(std::span<const int> prompt) {
  catch_up_source_ = nullptr;
  runner_->truncate(0);
  runner_->sync(prompt, /*keep_out=*/1, logits_.data());
}

void ModelDraft::begin(std::span<const int> prompt, const SequenceRunner& target) {
  Transformer& model = runner_->model();
  const int length = int(prompt.size()) - 1;
  const bool early_exit = &model.weights() == &target.model().weights() && model.layers_run() <= target.model().layers_run();
  const bool copy = early_exit || prefill_ == Prefill::target_prompt_kv;
  const bool holds_prompt = length >= 1 && target.length() >= length &&
                            std::equal(prompt.begin(), prompt.begin() + length, target.tokens().begin());
  if (!copy || !holds_prompt || !runner_->can_adopt(target, model.layers_run())) {
    begin(prompt);
    return;
  }
  runner_->adopt_prefix(target, length, model.layers_run());
  catch_up_source_ = early_exit ? &target : nullptr;  // exact copies only: a self-draft's own rows differ
}

void ModelDraft::propose(std::span<const int> sequence, int gamma, Sampler& sampler, DraftProposal& out) {
  out.clear();
  if (gamma <= 0) return;
  const size_t vocab = logits_.size();
  if (catch_up_source_ != nullptr) {
    // Far behind (plain steps while speculation was off): the target's K/V of the sequence, copied.
    const SequenceRunner& target = *catch_up_source_;
    const std::vector<int>& cached = runner_->tokens();
    const size_t common = size_t(std::mismatch(cached.begin(), cached.end(), sequence.begin(), sequence.end()).first - cached.begin());
    const int held = std::min(target.length(), int(sequence.size()) - 1);
    if (held - int(common) >= kCopyCatchUp && std::equal(sequence.begin(), sequence.begin() + held, target.tokens().begin()))
      runner_->adopt_prefix(target, held, runner_->model().layers_run());
  }
  // Catch up: keep the cached prefix still in the sequence (the rejected guesses of the last round go)
  // and run the rest in one pass (the target's correction or bonus token, plus the last guess when every
  // guess was accepted); its last row is the distribution of the first guess.
  if (runner_->sync(sequence, /*keep_out=*/0, logits_.data()) == 0) {
    // Everything was cached already (propose() twice on one sequence): rerun the last token for its logits.
    runner_->truncate(int(sequence.size()) - 1);
    runner_->extend(sequence.subspan(sequence.size() - 1), logits_.data(), /*all_rows=*/false);
  }
  ++passes_;
  history_.assign(sequence.begin(), sequence.end());
  for (int i = 0; i < gamma; ++i) {
    sampler.distribution(logits_, history_, dist_);
    const int token = sampler.draw(dist_);
    out.tokens.push_back(token);
    if (!dist_.greedy) {
      out.q.resize(out.tokens.size() * vocab);
      dist_.to_dense(std::span<float>(out.q).subspan(out.q.size() - vocab));
    }
    history_.push_back(token);
    if (i + 1 == gamma) break;  // the last guess is run at the next catch-up, if it is accepted
    runner_->extend(std::span<const int>(&history_.back(), 1), logits_.data(), /*all_rows=*/false);
    ++passes_;
  }
}

// ---- (d): prompt lookup ---------------------------------------------------------------------------

NgramDraft::NgramDraft(int max_ngram, int min_ngram) : max_ngram_(max_ngram), min_ngram_(min_ngram) {
  if (min_ngram < 1 || max_ngram < min_ngram)
    fail("prompt lookup: n-gram sizes must satisfy 1 <= min ({}) <= max ({})", min_ngram, max_ngram);
}

void NgramDraft::propose(std::span<const int> sequence, int gamma, Sampler& /*sampler*/, DraftProposal& out) {
  out.clear();
  const int length = int(sequence.size());
  if (gamma <= 0) return;
  // Longest n first: a longer match is more specific, so its continuation is more likely right.
  for (int n = std::min(max_ngram_, length - 1); n >= min_ngram_; --n) {
    const std::span<const int> suffix = sequence.subspan(size_t(length - n));
    // Most recent earlier occurrence first (start < length - n, so it is not the suffix itself).
    for (int start = length - n - 1; start >= 0; --start) {
      if (!std::equal(suffix.begin(), suffix.end(), sequence.begin() + start)) continue;
      const int follow = start + n;  // the token after the match, < length
      const int count = std::min(gamma, length - follow);
      out.tokens.assign(sequence.begin() + follow, sequence.begin() + follow + count);
      return;
    }
  }
}

// ---- compatibility --------------------------------------------------------------------------------

void check_draft_compatible(const ModelConfig& target, const ModelConfig& draft, const Tokenizer* target_tokenizer,
                            const Tokenizer* draft_tokenizer) {
  if (draft.vocab_size != target.vocab_size)
    fail("draft model: its vocabulary has {} tokens, the target's {}; a draft must share the target's vocabulary",
         draft.vocab_size, target.vocab_size);
  if (target_tokenizer == nullptr || draft_tokenizer == nullptr) return;
  if (draft_tokenizer->bos_id() != target_tokenizer->bos_id() || draft_tokenizer->eos_id() != target_tokenizer->eos_id())
    fail("draft model: special tokens differ (BOS {} / EOS {} in the draft, {} / {} in the target)",
         draft_tokenizer->bos_id(), draft_tokenizer->eos_id(), target_tokenizer->bos_id(), target_tokenizer->eos_id());
  for (int id = 0; id < target.vocab_size; ++id)
    if (draft_tokenizer->piece(id) != target_tokenizer->piece(id))
      fail("draft model: token {} is '{}' in the draft's vocabulary but '{}' in the target's", id,
           draft_tokenizer->piece(id), target_tokenizer->piece(id));
}

}  // namespace infer
