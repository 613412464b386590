// transformer.h: the Llama forward pass, written once against Backend.
//
// For each layer:  h = x + Wo . attention(rope(Wq . norm(x)), rope(Wk . norm(x)), Wv . norm(x))
//                  x = h + W2 . (silu(W1 . norm(h)) * (W3 . norm(h)))
// then logits = Wcls . norm(x). One pass runs a ragged batch (batch.h): the new tokens of several
// sequences, each at its own positions, write their K/V into the paged pool at their slots and attend
// causally over their own sequence. ch05's single sequence over a KVCache is the one-sequence case of
// the same pass (the overload taking start_pos), not a second copy of the model code.
#pragma once

#include "infer/model/backend.h"
#include "infer/model/batch.h"
#include "infer/model/kv_cache.h"
#include "infer/model/paged_kv_cache.h"
#include "infer/model/weights.h"

#include <cstdint>
#include <span>
#include <vector>

namespace infer {

// What one forward pass moved, counted in code (for GB/s columns).
struct ForwardStats {
  uint64_t weight_bytes = 0;  // weight bytes read
  uint64_t kv_bytes = 0;      // K/V bytes read by attention plus bytes written
};

class Transformer {
 public:
  // `max_tokens` bounds n in one forward pass (sizes the activation buffers).
  Transformer(const Weights& weights, Backend& backend, int max_tokens);

  // THE forward pass: one pass over a ragged batch (batch.h) against a paged cache. Writes every new
  // token's K/V to its slot, attends causally per sequence over its block table, and writes the logits of
  // batch.logits_rows, in that order, to logits_out ((logits_rows.size(), vocab_size) floats, host memory).
  // On the CPU a sequence's logits are bit-identical whatever else is in the batch. Throws infer::Error if
  // batch.validate(cache.num_blocks()) fails, n_tokens() > max_tokens() or the cache is for another model.
  ForwardStats forward(const Batch& batch, PagedKVCache& cache, float* logits_out);

  // The one-sequence case (ch05): tokens [start_pos, start_pos + n) of the sequence that owns `cache`
  // (slot of position p = p). Writes the logits of the last token (vocab_size floats, host memory) to
  // logits_out; if all_logits is non-null, also the logits of every token, (n, vocab_size). Throws
  // infer::Error if n > max_tokens or the positions do not fit the cache.
  ForwardStats forward(std::span<const int> tokens, int start_pos, KVCache& cache, float* logits_out,
                       float* all_logits = nullptr);

  // Debug check (off by default: it reads every activation after every op, downloading it from a
  // device backend): when on, forward() scans the output of each op and throws infer::Error naming
  // the layer and the op at the first NaN/Inf, e.g. "layer 4, after ffn_down: 12 non-finite values".
  void set_check_finite(bool on) { check_finite_ = on; }
  bool check_finite() const { return check_finite_; }

  // Early exit (ch08's layer-skipping draft): every pass runs only the first `layers` layers, then the final
  // norm and the classifier as usual (0 = all layers, the default). A second Transformer over the same Weights
  // with a limit is a draft that shares every weight. The cache is still the full model's (only the first
  // `layers` layers of it are used). Throws infer::Error outside [0, n_layers].
  void set_layer_limit(int layers);
  int layers_run() const { return layer_limit_ > 0 ? layer_limit_ : weights_.config().n_layers; }

  const ModelConfig& config() const { return weights_.config(); }
  const Weights& weights() const { return weights_; }
  Backend& backend() { return backend_; }
  int max_tokens() const { return max_tokens_; }

 private:
  const Weights& weights_;
  Backend& backend_;
  int max_tokens_;
  bool check_finite_ = false;
  int layer_limit_ = 0;  // 0: every layer
  std::vector<float> check_host_;  // host copy of the activation being checked
  // Throws when `count` floats at `data` (backend memory) hold a NaN/Inf; `layer` < 0: outside the layers.
  void check_activation(const float* data, size_t count, int layer, const char* op);
  // Activations, (max_tokens, width) each, in backend memory.
  DeviceArray<float> x_, xb_, xb2_, q_, k_, v_, att_out_, gate_, up_, logits_;
  // The batch's int arrays in backend memory, uploaded once per pass (one upload):
  // positions (T) | slot_mapping (T) | query_start (S + 1) | context_lens (S) | block_tables (S, max_blocks).
  DeviceArray<int> batch_ints_;
  std::vector<int> batch_host_;  // the same, packed on the host before the upload
  // Packs and uploads `batch`; returns the kernels' view of it.
  BatchView upload_batch(const Batch& batch);
};

}  // namespace infer
