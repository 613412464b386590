// kv_store_student.cpp: ch05 lab, exercise 1: store a pass's keys and values in the KV cache.
//
// Built only with -DLAB=ch05 (scripts/lab.sh ch05), where it replaces common/src/cpu/kv_store_cpu.cpp. The
// whole engine then uses your function: the CPU backend's store_kv op, which Transformer::forward calls in
// every layer of every pass, right after computing (and rotating) the pass's keys and values; attention then
// reads the cache. Run `scripts/lab.sh ch05` to grade it; read ch05_kv_cache/lab/README.md first.
//
// ---- What the cache holds ------------------------------------------------------------------------
// For each layer, K and V are tables of rows ("slots"), each row kv_dim floats (kv_dim = n_kv_heads * head_dim):
//     k_pool[slot * kv_dim + j]        key element j stored in slot `slot`        (the same for v_pool)
// with num_slots rows in all. A forward pass over n tokens produced
//     new_k[t * kv_dim + j], new_v[t * kv_dim + j]      t = 0 .. n-1
// and says where each token's row goes: slot_mapping[t]. In this chapter the cache belongs to one sequence
// and slot = position, so a pass over positions start_pos .. start_pos + n - 1 has slot_mapping =
// {start_pos, start_pos + 1, ...}: an append. (In ch06 many sequences share one pool of blocks, and the
// slots of a sequence are wherever its blocks are: the same function serves both.)
//
// ---- What to implement -----------------------------------------------------------------------------
// 1. Check every slot first, and throw an infer::Error for one outside [0, num_slots). Use
//        fail("KV store: ... {} ...", value);        (infer/core/error.h: fmt-style message, throws infer::Error)
//    and say what was wrong in the message. Nothing may be written when you throw: check all slots before
//    copying any row.
// 2. Copy token t's K row (kv_dim floats) to row slot_mapping[t] of k_pool, and its V row to the same row of
//    v_pool. Write nothing else: every other row must keep its contents.
//
// Hint: std::memcpy (or std::copy_n) per row. These are host pointers: the CPU backend's memory is RAM
// (the CUDA backend has its own kernel for this, common/src/cuda/).
#include "infer/core/error.h"
#include "infer/cpu/cpu_kernels.h"

#include <cstring>

namespace infer::cpu {

void store_kv(const float* new_k, const float* new_v, float* k_pool, float* v_pool, const int* slot_mapping, int n,
              int kv_dim, int num_slots) {
  // TODO(student): check the slots, then copy each token's K and V row to its slot, as described above.
  // As written, nothing is stored: the lab tests fail until you implement it.
}

}  // namespace infer::cpu
