// kv_append_student.cpp: ch05 lab, exercise 1: append a pass's keys and values to the KV cache.
//
// Built only with -DLAB=ch05 (scripts/lab.sh ch05), where it replaces common/src/model/kv_cache_append.cpp. The
// whole engine then uses your function: Transformer::forward calls it in every layer of every pass, right
// after computing (and rotating) the pass's keys and values, and attention then reads the cache.
// Run `scripts/lab.sh ch05` to grade it; read ch05_kv_cache/lab/README.md first.
//
// ---- What the cache holds ------------------------------------------------------------------------
// For each layer, K and V are tables of max_seq rows, one row per position, each row kv_dim floats
// (kv_dim = n_kv_heads * head_dim, the members kv_dim_ and max_seq_ of KVCache):
//     k(layer)[p * kv_dim + j]        key element j of position p      (the same for v(layer))
// A forward pass over n tokens at positions start_pos .. start_pos + n - 1 produced
//     new_k[t * kv_dim + j], new_v[t * kv_dim + j]      t = 0 .. n-1  (token t is at position start_pos + t)
//
// ---- What to implement -----------------------------------------------------------------------------
// 1. Check the arguments first, and throw an infer::Error for anything outside the cache: a layer that is
//    not in [0, n_layers_), n < 0, start_pos < 0, or start_pos + n > max_seq_. Use
//        fail("KV cache: ... {} ...", value);        (infer/error.h: fmt-style message, throws infer::Error)
//    and say what was wrong in the message. Nothing may be written when you throw.
// 2. Copy the n new K rows to rows [start_pos, start_pos + n) of layer `layer`'s K table, the same for V.
//    Write nothing else: every other row, and every other layer, must keep its contents.
//
// ---- The one rule: copy with the backend ---------------------------------------------------------
// The cache and new_k/new_v live in the *backend's* memory. On the CPU that is ordinary RAM, but on the
// CUDA backend they are GPU pointers, which the CPU cannot read or write: std::memcpy or a loop would
// crash there. Copy with
//     backend_->copy(float* dst, const float* src, size_t count)      count = number of floats
// (a cudaMemcpy device-to-device on the GPU). The tests check that your append goes through it.
//
// Hint: the n rows are contiguous in both places, so one copy per tensor is enough.
#include "infer/core/error.h"
#include "infer/model/kv_cache.h"

namespace infer {

void KVCache::append(int layer, int start_pos, const float* new_k, const float* new_v, int n) {
  // TODO(student): check the arguments, then copy the n new rows of K and of V into the cache, as
  // described above. As written, nothing is stored: the lab tests fail until you implement it.
}

}  // namespace infer
