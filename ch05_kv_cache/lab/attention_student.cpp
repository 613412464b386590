// attention_student.cpp: ch05 lab, exercise 2: causal attention over the KV cache.
//
// Built only with -DLAB=ch05 (scripts/lab.sh ch05), where it replaces common/src/cpu/attention_dispatch_cpu.cpp.
// The CPU backend then runs your function as its attention op, in every layer: for the prefill of the
// prompt (n tokens at start_pos 0) and for every decode step (n = 1 at start_pos = the number of tokens
// already cached). Run `scripts/lab.sh ch05` to grade it; read ch05_kv_cache/lab/README.md first.
//
// ---- Shapes (all row-major float arrays) ---------------------------------------------------------------
//   q        (n, n_heads, head_dim)        the pass's queries, already rotated by RoPE
//   k_cache  (max_seq, n_kv_heads, head_dim)   cached keys; rows [0, start_pos + n) are filled (the pass's
//   v_cache  (max_seq, n_kv_heads, head_dim)   own rows included: store_kv ran just before)
//   out      (n, n_heads, head_dim)        write every element
// kv_dim = n_kv_heads * head_dim floats per cache row. Query t is token start_pos + t of the sequence.
//
// ---- The maths (implement exactly this) ----------------------------------------------------------
// For each query t and query head h:
//   g        = h / (n_heads / n_kv_heads)         the kv head it reads (grouped-query attention: each
//                                                   run of n_heads / n_kv_heads query heads shares one)
//   score[p] = (q[t, h, :] . k_cache[p, g, :]) / sqrt(head_dim)        for p = 0 .. start_pos + t
//   w        = softmax(score)                     causal: positions after start_pos + t are not seen
//   out[t, h, :] = sum_p w[p] * v_cache[p, g, :]
//
// ---- Practicalities --------------------------------------------------------------------------------
//  - Softmax: subtract the largest score before std::exp, or exp overflows to inf for scores above ~88
//    and the output becomes NaN (a test uses such scores).
//  - A score buffer of start_pos + t + 1 floats per (t, h) is fine (a std::vector reused across heads).
//  - `threads` is how many OpenMP threads you may use; a correct single-threaded loop passes every test.
//  - Speed is not graded. Once it passes, compare with common/src/cpu/attention_cpu.cpp: v1_naive is this
//    loop; v2_grouped reads each cached row once per kv head instead of once per query head, in one pass
//    with an online softmax.
#include "infer/cpu/cpu_kernels.h"

#include <cmath>
#include <vector>

namespace infer::cpu {

void attention(const float* q, const float* k_cache, const float* v_cache, float* out, int n, int start_pos,
               int n_heads, int n_kv_heads, int head_dim, int threads) {
  // TODO(student): compute out as described above. As written, out is left unwritten: the lab tests fail
  // until you implement it.
}

}  // namespace infer::cpu
