// attention.cu: causal multi-head attention with grouped KV heads (GQA), over a contiguous cache.
//
// For query t (absolute position p_t = start_pos + t) and head h, with kv head g = h / group:
//   score[p] = q_t,h . k_p,g / sqrt(head_dim)        for p in [0, p_t]
//   out_t,h  = sum_p softmax(score)[p] * v_p,g
// Versions:
//   v1_block_per_query_head: one block per (token, head). The block copies q into shared memory,
//                            each thread scores a strided set of positions (a head_dim-long dot
//                            product), the softmax takes a block max and a block sum (exp of
//                            score - max, so it cannot overflow) and divides, then each thread owns output
//                            dimensions and sums over positions (coalesced reads of V rows).
//                            The scores live in shared memory: (p_t + 1) floats (q and the scores
//                            each padded to whole groups of 4 floats), so contexts longer
//                            than the device's shared memory per block are refused with a clear
//                            error. With GQA each query head reads its kv head's rows itself: every
//                            cached row is read `group` times per step. And a decode step (n == 1) is
//                            only n_heads blocks, each walking the whole context alone: at 5000
//                            positions 32 blocks keep a fraction of a 132-SM GPU busy.
//   v2_split_context:        split-K / "flash decoding". The context [0, p_t] is cut into splits of
//                            whole 64-position tiles; one block per (split, kv head, token) scores its
//                            tiles for all the query heads of the GQA group at once (up to 8 per
//                            block), so each K and V row is read once per kv head, and keeps an online
//                            softmax across its tiles: running max m and sum l per head, the weighted
//                            sum of V rescaled by exp(m_old - m_new) when the max grows. It writes
//                            (m, l, unnormalised out) per (token, head, split) to a workspace; a
//                            second kernel, v2_combine, merges the splits with the log-sum-exp rule
//                            out = sum_s exp(m_s - M) out_s / sum_s exp(m_s - M) l_s, M = max_s m_s.
//                            Many blocks per step (splits x kv heads) whatever the batch, and no
//                            score buffer the size of the context: any length runs. Needs
//                            head_dim <= 256 (two output dimensions per thread of 128).
//
//   paged v2 (ch06):         v2's kernel, templated on how a position's row is found: through the
//                            sequence's block table (slot = table[p / block_size] * block_size +
//                            p % block_size), each query at its own position (a ragged batch mixes
//                            prefill chunks and decode rows of many sequences). One kernel for both, so
//                            the paged pass computes what the contiguous one does.
//
//   paged v2_int8 (ch07):    the same kernel over an int8 pool (KVDType::int8): each K and V value is
//                            converted to fp32 as it is loaded (no fp32 copy of the cache), the position's
//                            K scale multiplies its score once (dot * k_scale / sqrt(head_dim)) and, after
//                            the tile's softmax sum, its V scale its weight once (out += w * v_scale *
//                            v_int8). Reads 2 * (head_dim + 4) bytes per position and kv head instead of
//                            2 * head_dim * 4. Ran first on an H200 (2026-11-30): its tests
//                            (tests_cuda/test_cuda_attention.cpp, test_cuda_kv_int8.cpp) pass there.
//
// Which one the backend runs (cuda_backend.cpp): v2 for decode (n == 1), where v1 leaves the GPU
// idle and reads K/V `group` times; v2 also when the context is too long for v1's shared memory.
// v1 otherwise, i.e. prefill: there n x n_heads blocks already fill the GPU, and v2 would need a
// workspace of n x n_heads x splits x head_dim partials (it runs the queries 16 at a time).
#include "cuda_check.h"
#include "cuda_device.cuh"
#include "cuda_kernels.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>

namespace infer::cuda {
namespace {

constexpr int kThreads = 128;
constexpr size_t kDefaultSharedBytes = 48 * 1024;  // above this a kernel must opt in

// v2's fixed sizes. kV2Tile positions are scored at once (shared memory: heads x tile floats);
// kV2MaxSplits bounds the workspace (and the combine's loop); 16 queries per launch when n > 1.
constexpr int kV2Threads = 128;
constexpr int kV2Warps = kV2Threads / 32;
constexpr int kV2Tile = 64;
constexpr int kV2HeadsPerBlock = 8;
constexpr int kV2MaxSplits = 128;
constexpr int kV2MaxHeadDim = 256;
constexpr int kV2DimsPerThread = kV2MaxHeadDim / kV2Threads;  // output dimensions each thread owns
constexpr int kV2QueryBatch = 16;

// ================================================================================================
// v1: one block per (token, query head)
// ================================================================================================
// v1's shared arrays are padded to whole groups of 4 floats: nvcc reads both 16 bytes at a time (LDS.128),
// also for the last 1-3 elements of a loop (the q . k dot's last dimensions, the weighted V sum's last
// positions), and uses only the lanes it needs. Unpadded, those reads ran into the scores other threads were
// writing or past the allocation (compute-sanitizer racecheck and memcheck on an H200, 2026-11-30).
__host__ __device__ constexpr int v1_round4(int count) { return (count + 3) & ~3; }
__host__ __device__ constexpr int v1_q_floats(int head_dim) { return v1_round4(head_dim); }

__global__ void attention_v1_block_per_query_head(const float* q, const float* k_cache, const float* v_cache,
                                                  float* out, int start_pos, int n_heads, int n_kv_heads,
                                                  int head_dim, float scale) {
  extern __shared__ float shared[];
  const int q_floats = v1_q_floats(head_dim);  // padded (see v1_round4)
  float* q_shared = shared;                  // (q_floats)
  float* scores = shared + q_floats;         // (last + 1), in an allocation padded to whole groups of 4

  const int h = blockIdx.x;                  // query head
  const int t = blockIdx.y;                  // query token in this pass
  const int last = start_pos + t;            // causal: positions [0, last]
  const int g = h / (n_heads / n_kv_heads);  // the kv head this query head reads
  const size_t kv_dim = size_t(n_kv_heads) * size_t(head_dim);
  const float* q_head = q + (size_t(t) * n_heads + h) * size_t(head_dim);

  for (int i = threadIdx.x; i < q_floats; i += blockDim.x) q_shared[i] = i < head_dim ? q_head[i] : 0.0f;
  __syncthreads();

  // ---- scores and their max ----------------------------------------------------------------
  float local_max = -FLT_MAX;
  for (int p = threadIdx.x; p <= last; p += blockDim.x) {
    const float* k_row = k_cache + size_t(p) * kv_dim + size_t(g) * head_dim;  // (head_dim)
    float dot = 0.0f;
    for (int i = 0; i < head_dim; ++i) dot += q_shared[i] * k_row[i];
    scores[p] = dot * scale;
    local_max = fmaxf(local_max, scores[p]);
  }
  const float max_score = block_max(local_max);  // also a barrier: every score is written

  // ---- softmax numerators and their sum -----------------------------------------------------
  float local_sum = 0.0f;
  for (int p = threadIdx.x; p <= last; p += blockDim.x) {
    scores[p] = expf(scores[p] - max_score);
    local_sum += scores[p];
  }
  const float sum = block_sum(local_sum);  // barrier again: every numerator is written
  for (int p = threadIdx.x; p <= last; p += blockDim.x) scores[p] /= sum;  // the softmax weights
  __syncthreads();

  // ---- weighted sum of the values: thread i owns output dimensions i, i + blockDim, ... ------
  const float* v_head = v_cache + size_t(g) * head_dim;  // row p at v_head + p * kv_dim
  float* out_head = out + (size_t(t) * n_heads + h) * size_t(head_dim);
  for (int i = threadIdx.x; i < head_dim; i += blockDim.x) {
    float acc = 0.0f;
    for (int p = 0; p <= last; ++p) acc += scores[p] * v_head[size_t(p) * kv_dim + i];
    out_head[i] = acc;
  }
}

// ================================================================================================
// v2: split the context over blocks, the query heads of a GQA group together, then combine
// ================================================================================================
// The workspace, for a launch of `batch` queries: (batch, n_heads, n_splits) entries of
//   partial_out (head_dim floats): sum_p exp(score_p - m) v_p over the split's positions
//   partial_max: m, the split's max score (-inf when the split lies beyond the query's last position)
//   partial_sum: l = sum_p exp(score_p - m)
struct Partials {
  float* out;  // (batch, n_heads, n_splits, head_dim)
  float* max;  // (batch, n_heads, n_splits)
  float* sum;  // (batch, n_heads, n_splits)
};

// grid: (n_splits, n_kv_heads * head_batches, batch); block: kV2Threads.
// Block (split, g | head batch, b) handles query token t = token_offset + b, the query heads
// [first_head, first_head + heads) of kv head g, and the positions [split * split_len, ...) up to
// the query's last position, kV2Tile at a time.
// Where a query's positions live. Contiguous: one sequence, query t at start_pos + t, position p in row p.
struct ContiguousRows {
  int start_pos;
  __device__ int last_position(int t) const { return start_pos + t; }
  __device__ const int* table(int) const { return nullptr; }
  __device__ size_t row(const int*, int p) const { return size_t(p); }
};
// Paged: query t at positions[t], in sequence s (query_start[s] <= t < query_start[s + 1]), position p of
// s in slot block_tables[s][p / block_size] * block_size + p % block_size.
struct PagedRows {
  const int* positions;
  const int* query_start;
  const int* block_tables;
  int n_sequences, max_blocks, block_size;
  __device__ int last_position(int t) const { return positions[t]; }
  __device__ const int* table(int t) const {
    int lo = 0, hi = n_sequences - 1;  // the last s with query_start[s] <= t
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (query_start[mid] <= t) lo = mid; else hi = mid - 1;
    }
    return block_tables + size_t(lo) * size_t(max_blocks);
  }
  __device__ size_t row(const int* table, int p) const {
    return size_t(table[p / block_size]) * size_t(block_size) + size_t(p % block_size);
  }
};

// T: float (the f32 cache), or int8_t (the int8 pool, whose per-(position, kv head) scales are k_scale and
// v_scale; unused, null, for float).
template <typename Rows, typename T>
__global__ void attention_v2_split_context(const float* q, const T* k_cache, const T* v_cache, const float* k_scale,
                                           const float* v_scale, Partials partials, int token_offset, Rows rows,
                                           int n_heads, int n_kv_heads, int head_dim, int split_len, int n_splits,
                                           float scale) {
  constexpr bool kInt8 = std::is_same_v<T, int8_t>;
  __shared__ float q_shared[kV2HeadsPerBlock][kV2MaxHeadDim];  // the group's queries
  __shared__ float weights[kV2HeadsPerBlock][kV2Tile];        // scores, then exp(score - running max)
  __shared__ float running_max[kV2HeadsPerBlock];
  __shared__ float running_sum[kV2HeadsPerBlock];
  __shared__ float tile_rescale[kV2HeadsPerBlock];             // exp(old max - new max) of this tile
  __shared__ float tile_v_scale[kV2Tile];                      // int8: the tile's V scales

  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int split = blockIdx.x;
  const int group = n_heads / n_kv_heads;
  const int head_batches = (group + kV2HeadsPerBlock - 1) / kV2HeadsPerBlock;
  const int g = blockIdx.y / head_batches;
  const int first_head = g * group + (blockIdx.y % head_batches) * kV2HeadsPerBlock;  // absolute query head
  const int heads = min(kV2HeadsPerBlock, g * group + group - first_head);
  const int b = blockIdx.z;                       // query within this launch
  const int t = token_offset + b;                 // query within the pass
  const int last = rows.last_position(t);         // causal: positions [0, last]
  const int* table = rows.table(t);               // the query's block table (paged), else unused
  const int begin = split * split_len;
  const int end = min(begin + split_len, last + 1);  // may be <= begin: an empty split
  const size_t kv_dim = size_t(n_kv_heads) * size_t(head_dim);
  const T* k_head = k_cache + size_t(g) * head_dim;  // row p at + p * kv_dim
  const T* v_head = v_cache + size_t(g) * head_dim;

  for (int i = threadIdx.x; i < kV2HeadsPerBlock * head_dim; i += blockDim.x) {
    const int j = i / head_dim, d = i % head_dim;
    q_shared[j][d] = j < heads ? q[(size_t(t) * n_heads + first_head + j) * head_dim + d] : 0.0f;
  }
  if (threadIdx.x < kV2HeadsPerBlock) {
    running_max[threadIdx.x] = -INFINITY;
    running_sum[threadIdx.x] = 0.0f;
  }
  // acc[k][j]: head j's unnormalised output in dimension threadIdx.x + k * kV2Threads.
  float acc[kV2DimsPerThread][kV2HeadsPerBlock] = {};
  __syncthreads();

  for (int tile = begin; tile < end; tile += kV2Tile) {
    const int count = min(kV2Tile, end - tile);

    // ---- scores: warp w scores positions w, w + 4, ...; the K row is read once for every head --
    for (int p = warp; p < count; p += kV2Warps) {
      const size_t slot = rows.row(table, tile + p);
      const T* k_row = k_head + slot * kv_dim;  // (head_dim), coalesced over lanes
      float score_scale = scale;
      if constexpr (kInt8) {
        score_scale = k_scale[slot * size_t(n_kv_heads) + g] * scale;
        if (lane == 0) tile_v_scale[p] = v_scale[slot * size_t(n_kv_heads) + g];
      }
      float dots[kV2HeadsPerBlock] = {};
      for (int d = lane; d < head_dim; d += 32) {
        const float k_value = float(k_row[d]);
#pragma unroll
        for (int j = 0; j < kV2HeadsPerBlock; ++j) dots[j] += q_shared[j][d] * k_value;
      }
#pragma unroll
      for (int j = 0; j < kV2HeadsPerBlock; ++j) {
        if (j >= heads) break;  // uniform across the warp: the shuffles stay full-warp
        const float dot = warp_sum(dots[j]);
        if (lane == 0) weights[j][p] = dot * score_scale;
      }
    }
    __syncthreads();

    // ---- online softmax: warp w updates heads w, w + 4, ... ----------------------------------
    for (int j = warp; j < heads; j += kV2Warps) {
      float tile_max = -INFINITY;
      for (int p = lane; p < count; p += 32) tile_max = fmaxf(tile_max, weights[j][p]);
      tile_max = warp_max(tile_max);
      const float new_max = fmaxf(running_max[j], tile_max);  // finite: the tile has >= 1 position
      float tile_sum = 0.0f;
      for (int p = lane; p < count; p += 32) {
        const float weight = expf(weights[j][p] - new_max);
        tile_sum += weight;
        if constexpr (kInt8)
          weights[j][p] = weight * tile_v_scale[p];  // the sum is taken; the weight now carries its V row's scale
        else
          weights[j][p] = weight;
      }
      tile_sum = warp_sum(tile_sum);
      if (lane == 0) {
        // The sum and the outputs so far refer to the old max: rescale them to the new one
        // (exp(-inf) = 0 on the first tile, where both are still zero).
        const float rescale = expf(running_max[j] - new_max);
        running_sum[j] = running_sum[j] * rescale + tile_sum;
        running_max[j] = new_max;
        tile_rescale[j] = rescale;
      }
    }
    __syncthreads();

    // ---- weighted V: thread i owns dimensions i, i + 128; the V row is read once for every head -
#pragma unroll
    for (int k = 0; k < kV2DimsPerThread; ++k) {
      const int d = threadIdx.x + k * kV2Threads;
      if (d >= head_dim) break;
#pragma unroll
      for (int j = 0; j < kV2HeadsPerBlock; ++j) acc[k][j] *= j < heads ? tile_rescale[j] : 0.0f;
      for (int p = 0; p < count; ++p) {
        const float v_value = float(v_head[rows.row(table, tile + p) * kv_dim + d]);  // coalesced over threads
#pragma unroll
        for (int j = 0; j < kV2HeadsPerBlock; ++j) acc[k][j] += weights[j][p] * v_value;
      }
    }
    __syncthreads();  // the next tile overwrites weights and tile_rescale
  }

  // ---- this split's partial results (an empty split leaves max -inf, sum 0, out 0) ------------
  for (int j = 0; j < heads; ++j) {
    const size_t entry = (size_t(b) * n_heads + first_head + j) * n_splits + split;
#pragma unroll
    for (int k = 0; k < kV2DimsPerThread; ++k) {
      const int d = threadIdx.x + k * kV2Threads;
      if (d < head_dim) partials.out[entry * head_dim + d] = acc[k][j];
    }
    if (threadIdx.x == 0) {
      partials.max[entry] = running_max[j];
      partials.sum[entry] = running_sum[j];
    }
  }
}

// grid: (n_heads, batch); block: kV2Threads. out_t,h = sum_s f_s out_s / sum_s f_s l_s with
// f_s = exp(m_s - M), M = max_s m_s: every split's numbers rescaled to the common max.
__global__ void attention_v2_combine(Partials partials, float* out, int token_offset, int n_heads, int head_dim,
                                     int n_splits) {
  __shared__ float factor[kV2MaxSplits];
  const int h = blockIdx.x;
  const int b = blockIdx.y;
  const size_t first_entry = (size_t(b) * n_heads + h) * n_splits;
  float global_max = -INFINITY;  // split 0 always holds position 0, so this ends finite
  for (int s = 0; s < n_splits; ++s) global_max = fmaxf(global_max, partials.max[first_entry + s]);
  for (int s = threadIdx.x; s < n_splits; s += blockDim.x)
    factor[s] = expf(partials.max[first_entry + s] - global_max);  // 0 for an empty split
  __syncthreads();
  float total = 0.0f;  // every thread sums the same terms in the same order: the same value
  for (int s = 0; s < n_splits; ++s) total += factor[s] * partials.sum[first_entry + s];
  float* out_head = out + (size_t(token_offset + b) * n_heads + h) * size_t(head_dim);
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float value = 0.0f;
    for (int s = 0; s < n_splits; ++s) value += factor[s] * partials.out[(first_entry + s) * head_dim + d];
    out_head[d] = value / total;
  }
}

// The split plan for a context of `positions`: whole tiles per split, at most kV2MaxSplits splits,
// none of them empty for the longest query.
struct SplitPlan {
  int n_splits;
  int split_len;  // positions per split, a multiple of kV2Tile
};
SplitPlan plan_splits(int positions) {
  const int tiles = (positions + kV2Tile - 1) / kV2Tile;
  const int tiles_per_split = (tiles + kV2MaxSplits - 1) / kV2MaxSplits;
  return {(tiles + tiles_per_split - 1) / tiles_per_split, tiles_per_split * kV2Tile};
}

void check_shape(const char* what, int n, int start_pos, int n_heads, int n_kv_heads, int head_dim) {
  if (n_heads <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads != 0 || head_dim <= 0 || start_pos < 0)
    throw_error(std::string(what) + ": bad shape (n_heads " + std::to_string(n_heads) + ", n_kv_heads " +
                std::to_string(n_kv_heads) + ", head_dim " + std::to_string(head_dim) + ", start_pos " +
                std::to_string(start_pos) + ")");
  if (n > 65535) throw_error(std::string(what) + ": at most 65535 tokens per pass (grid), got " + std::to_string(n));
}

// Dynamic shared memory v1 needs: q + the last query's scores.
size_t v1_shared_bytes(int positions, int head_dim) {
  return (size_t(v1_q_floats(head_dim)) + size_t(v1_round4(positions))) * sizeof(float);
}

}  // namespace

// ---- v1 --------------------------------------------------------------------------------------------
bool attention_v1_fits(int positions, int head_dim) {
  int device = 0, optin = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  cudaFuncAttributes attributes{};
  CUDA_CHECK(cudaFuncGetAttributes(&attributes, attention_v1_block_per_query_head));
  return v1_shared_bytes(positions, head_dim) + attributes.sharedSizeBytes <= size_t(optin);
}

void attention_v1(const float* q, const float* k_cache, const float* v_cache, float* out, int n, int start_pos,
                  int n_heads, int n_kv_heads, int head_dim, cudaStream_t stream) {
  if (n <= 0) return;
  check_shape("cuda attention v1", n, start_pos, n_heads, n_kv_heads, head_dim);
  const int positions = start_pos + n;  // the last query sees them all
  const size_t shared_bytes = v1_shared_bytes(positions, head_dim);
  // The block reductions' static shared arrays (a few hundred bytes) count towards the same limit.
  constexpr size_t kStaticReserve = 1024;
  if (shared_bytes + kStaticReserve > kDefaultSharedBytes) {
    if (!attention_v1_fits(positions, head_dim))
      throw_error("cuda attention v1: " + std::to_string(positions) + " positions need " +
                  std::to_string(shared_bytes / 1024) +
                  " KiB of shared memory for the scores, more than the device allows per block (v2 has no such limit)");
    CUDA_CHECK(cudaFuncSetAttribute(attention_v1_block_per_query_head, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(shared_bytes)));
  }
  const float scale = 1.0f / std::sqrt(float(head_dim));
  const dim3 grid{unsigned(n_heads), unsigned(n)};  // (heads, tokens)
  attention_v1_block_per_query_head<<<grid, kThreads, shared_bytes, stream>>>(q, k_cache, v_cache, out, start_pos,
                                                                              n_heads, n_kv_heads, head_dim, scale);
  CUDA_CHECK_LAUNCH();
}

// ---- v2 --------------------------------------------------------------------------------------------
bool attention_v2_supported(int head_dim) { return head_dim > 0 && head_dim <= kV2MaxHeadDim; }

size_t attention_v2_workspace_bytes(int n, int n_heads, int head_dim) {
  const size_t batch = size_t(std::clamp(n, 1, kV2QueryBatch));
  return batch * size_t(n_heads) * kV2MaxSplits * (size_t(head_dim) + 2) * sizeof(float);
}

void attention_v2(const float* q, const float* k_cache, const float* v_cache, float* out, int n, int start_pos,
                  int n_heads, int n_kv_heads, int head_dim, void* workspace, size_t workspace_bytes,
                  cudaStream_t stream) {
  if (n <= 0) return;
  check_shape("cuda attention v2", n, start_pos, n_heads, n_kv_heads, head_dim);
  if (!attention_v2_supported(head_dim))
    throw_error("cuda attention v2: head_dim " + std::to_string(head_dim) + " is above its limit of " +
                std::to_string(kV2MaxHeadDim));
  if (workspace_bytes < attention_v2_workspace_bytes(n, n_heads, head_dim))
    throw_error("cuda attention v2: the workspace is smaller than attention_v2_workspace_bytes()");
  // Every query of the pass uses one plan (the last one's): a shorter query's splits past its last
  // position are empty and combine with weight 0.
  const SplitPlan plan = plan_splits(start_pos + n);
  const float scale = 1.0f / std::sqrt(float(head_dim));
  const int group = n_heads / n_kv_heads;
  const int head_batches = (group + kV2HeadsPerBlock - 1) / kV2HeadsPerBlock;
  for (int token_offset = 0; token_offset < n; token_offset += kV2QueryBatch) {
    const int batch = std::min(kV2QueryBatch, n - token_offset);
    // Laid out for this launch's batch and split count (the workspace holds the largest of both).
    const size_t entries = size_t(batch) * n_heads * plan.n_splits;
    float* base = static_cast<float*>(workspace);
    const Partials partials{base, base + entries * head_dim, base + entries * head_dim + entries};
    const dim3 grid{unsigned(plan.n_splits), unsigned(n_kv_heads * head_batches), unsigned(batch)};
    attention_v2_split_context<<<grid, kV2Threads, 0, stream>>>(q, k_cache, v_cache, nullptr, nullptr, partials,
                                                                token_offset, ContiguousRows{start_pos}, n_heads,
                                                                n_kv_heads, head_dim, plan.split_len, plan.n_splits,
                                                                scale);
    CUDA_CHECK_LAUNCH();
    attention_v2_combine<<<dim3{unsigned(n_heads), unsigned(batch)}, kV2Threads, 0, stream>>>(
        partials, out, token_offset, n_heads, head_dim, plan.n_splits);
    CUDA_CHECK_LAUNCH();
  }
}

namespace {

// paged v2 over any element type: T float (f32 pool, scales null) or int8_t (int8 pool with its scales).
template <typename T>
void paged_attention_v2_any(const float* q, const T* k_pool, const T* v_pool, const float* k_scale,
                            const float* v_scale, float* out, const BatchView& batch, int n_heads, int n_kv_heads,
                            int head_dim, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  const int n = batch.n_tokens;
  if (n <= 0) return;
  check_shape("cuda paged attention v2", n, 0, n_heads, n_kv_heads, head_dim);
  if (!attention_v2_supported(head_dim))
    throw_error("cuda paged attention v2: head_dim " + std::to_string(head_dim) + " is above its limit of " +
                std::to_string(kV2MaxHeadDim));
  if (batch.block_size <= 0 || batch.n_sequences <= 0 || batch.max_context <= 0)
    throw_error("cuda paged attention v2: an empty batch or a block size of " + std::to_string(batch.block_size));
  if (workspace_bytes < attention_v2_workspace_bytes(n, n_heads, head_dim))
    throw_error("cuda paged attention v2: the workspace is smaller than attention_v2_workspace_bytes()");
  // One plan for the pass, from its longest context: a shorter query's splits past its last position are
  // empty and combine with weight 0.
  const SplitPlan plan = plan_splits(batch.max_context);
  const float scale = 1.0f / std::sqrt(float(head_dim));
  const int group = n_heads / n_kv_heads;
  const int head_batches = (group + kV2HeadsPerBlock - 1) / kV2HeadsPerBlock;
  const PagedRows rows{batch.positions, batch.query_start, batch.block_tables, batch.n_sequences, batch.max_blocks,
                       batch.block_size};
  for (int token_offset = 0; token_offset < n; token_offset += kV2QueryBatch) {
    const int launch = std::min(kV2QueryBatch, n - token_offset);
    const size_t entries = size_t(launch) * n_heads * plan.n_splits;
    float* base = static_cast<float*>(workspace);
    const Partials partials{base, base + entries * head_dim, base + entries * head_dim + entries};
    const dim3 grid{unsigned(plan.n_splits), unsigned(n_kv_heads * head_batches), unsigned(launch)};
    attention_v2_split_context<<<grid, kV2Threads, 0, stream>>>(q, k_pool, v_pool, k_scale, v_scale, partials,
                                                                token_offset, rows, n_heads, n_kv_heads, head_dim,
                                                                plan.split_len, plan.n_splits, scale);
    CUDA_CHECK_LAUNCH();
    attention_v2_combine<<<dim3{unsigned(n_heads), unsigned(launch)}, kV2Threads, 0, stream>>>(
        partials, out, token_offset, n_heads, head_dim, plan.n_splits);
    CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

void paged_attention_v2(const float* q, const float* k_pool, const float* v_pool, float* out, const BatchView& batch,
                        int n_heads, int n_kv_heads, int head_dim, void* workspace, size_t workspace_bytes,
                        cudaStream_t stream) {
  paged_attention_v2_any<float>(q, k_pool, v_pool, nullptr, nullptr, out, batch, n_heads, n_kv_heads, head_dim,
                                workspace, workspace_bytes, stream);
}

void paged_attention_v2_int8(const float* q, const Int8KVLayer& pool, float* out, const BatchView& batch, int n_heads,
                             int n_kv_heads, int head_dim, void* workspace, size_t workspace_bytes,
                             cudaStream_t stream) {
  paged_attention_v2_any<int8_t>(q, pool.k, pool.v, pool.k_scale, pool.v_scale, out, batch, n_heads, n_kv_heads,
                                 head_dim, workspace, workspace_bytes, stream);
}

}  // namespace infer::cuda
