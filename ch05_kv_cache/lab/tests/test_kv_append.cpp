// test_kv_append.cpp: ch05 lab, exercise 1: KVCache::append.
//
// Every float of a cache is first set to a distinct sentinel; after an append, rows [start_pos, start_pos + n)
// of the appended layer must hold the new K and V rows and every other float must still hold its sentinel.
// Shapes include GQA (several kv heads), head_dim not a multiple of 8, positions > 0 and the cache's last row.
// On a mismatch the test says where the rows went when it recognises the mistake, else the first wrong float.
#include "infer/core/error.h"
#include "infer/model/kv_cache.h"
#include "test_util.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>

using namespace infer;

namespace {

struct AppendCase {
  int n_layers, n_kv_heads, head_dim, max_seq;  // the cache
  int layer, start_pos, n;                      // the append
};

ModelConfig cache_config(const AppendCase& c) {
  ModelConfig config;
  config.n_layers = c.n_layers;
  config.n_kv_heads = c.n_kv_heads;
  config.n_heads = c.n_kv_heads;
  config.head_dim = c.head_dim;
  return config;
}

// A distinct value per float of the cache (never a value random_floats produces: those are in [-1, 1)).
float sentinel(bool is_v, int layer, size_t index) { return float(is_v ? -2000000 : 2000000) - float(layer) * 100000 - float(index); }

void fill_sentinels(KVCache& cache) {
  const size_t layer_floats = size_t(cache.max_seq()) * cache.kv_dim();
  for (int l = 0; l < cache.n_layers(); ++l)
    for (size_t i = 0; i < layer_floats; ++i) {
      cache.k(l)[i] = sentinel(false, l, i);
      cache.v(l)[i] = sentinel(true, l, i);
    }
}

// The rows that should be there after appending (new_k, new_v) at (layer, start_pos, n): new rows in
// place, sentinels elsewhere. `expected_*` indexed like the cache, [layer][position * kv_dim + j].
struct Expected {
  std::vector<std::vector<float>> k, v;
};
Expected expected_after(const KVCache& cache, const AppendCase& c, const std::vector<float>& new_k,
                        const std::vector<float>& new_v) {
  const size_t layer_floats = size_t(cache.max_seq()) * cache.kv_dim(), kv_dim = size_t(cache.kv_dim());
  Expected e;
  for (int l = 0; l < c.n_layers; ++l) {
    e.k.emplace_back(layer_floats);
    e.v.emplace_back(layer_floats);
    for (size_t i = 0; i < layer_floats; ++i) {
      e.k[l][i] = sentinel(false, l, i);
      e.v[l][i] = sentinel(true, l, i);
    }
  }
  std::copy(new_k.begin(), new_k.end(), e.k[c.layer].begin() + std::ptrdiff_t(c.start_pos * kv_dim));
  std::copy(new_v.begin(), new_v.end(), e.v[c.layer].begin() + std::ptrdiff_t(c.start_pos * kv_dim));
  return e;
}

bool rows_hold(const float* table, int first_row, const std::vector<float>& rows, int kv_dim) {
  return std::memcmp(table + size_t(first_row) * kv_dim, rows.data(), rows.size() * sizeof(float)) == 0;
}

// Empty when the cache holds exactly `e`; otherwise what went wrong, with a hint when recognised.
std::string diagnose(KVCache& cache, const AppendCase& c, const Expected& e, const std::vector<float>& new_k,
                     const std::vector<float>& new_v) {
  const int kv_dim = cache.kv_dim();
  const size_t layer_floats = size_t(cache.max_seq()) * kv_dim;
  std::ostringstream out;
  for (int l = 0; l < c.n_layers; ++l)
    for (int which = 0; which < 2; ++which) {
      const float* got = which == 0 ? cache.k(l) : cache.v(l);
      const std::vector<float>& want = which == 0 ? e.k[l] : e.v[l];
      for (size_t i = 0; i < layer_floats; ++i) {
        if (got[i] == want[i] || (std::isnan(got[i]) && std::isnan(want[i]))) continue;
        const int position = int(i / size_t(kv_dim)), j = int(i % size_t(kv_dim));
        const bool in_new_rows = l == c.layer && position >= c.start_pos && position < c.start_pos + c.n;
        out << "cache of " << c.n_layers << " layers x " << c.max_seq << " positions x (" << c.n_kv_heads
            << " kv heads x head_dim " << c.head_dim << " = kv_dim " << kv_dim << "); append(layer " << c.layer
            << ", start_pos " << c.start_pos << ", n " << c.n << ").\n  first wrong float: layer " << l << ", "
            << (which == 0 ? "K" : "V") << ", position " << position << ", kv head " << j / c.head_dim
            << ", element " << j % c.head_dim << ": got " << got[i] << ", expected "
            << (in_new_rows ? "the new row's value " : "its old value (untouched) ") << want[i] << ".";
        break;
      }
      if (!out.str().empty()) break;
    }
  if (out.str().empty()) return "";

  // Known mistakes, by where the new rows ended up.
  const float* k_layer = cache.k(c.layer);
  const float* v_layer = cache.v(c.layer);
  if (!rows_hold(k_layer, c.start_pos, new_k, kv_dim) && !rows_hold(v_layer, c.start_pos, new_v, kv_dim)) {
    bool anything_written = false;
    for (int l = 0; l < c.n_layers && !anything_written; ++l)
      for (size_t i = 0; i < layer_floats; ++i)
        if (cache.k(l)[i] != e.k[l][i] && cache.k(l)[i] != sentinel(false, l, i)) { anything_written = true; break; }
    if (rows_hold(k_layer, c.start_pos, new_v, kv_dim) && rows_hold(v_layer, c.start_pos, new_k, kv_dim))
      out << "\n  HINT: K and V are swapped: new_k goes to k(layer), new_v to v(layer).";
    else if (c.start_pos > 0 && rows_hold(k_layer, 0, new_k, kv_dim))
      out << "\n  HINT: the rows went to positions [0, n): they belong at [start_pos, start_pos + n), i.e. from "
             "k(layer) + start_pos * kv_dim.";
    else if (c.layer > 0 && rows_hold(cache.k(0), c.start_pos, new_k, kv_dim))
      out << "\n  HINT: the rows went to layer 0: write k(layer), v(layer).";
    else if (c.n > 1 && std::memcmp(k_layer + size_t(c.start_pos) * kv_dim, new_k.data(), size_t(kv_dim) * sizeof(float)) == 0)
      out << "\n  HINT: only the first row arrived: copy n * kv_dim floats (n rows), not kv_dim.";
    else if (c.n_kv_heads > 1 && std::memcmp(k_layer + size_t(c.start_pos) * kv_dim, new_k.data(), size_t(c.head_dim) * sizeof(float)) == 0)
      out << "\n  HINT: a row is kv_dim = n_kv_heads * head_dim floats (all kv heads), not head_dim.";
    else if (!anything_written)
      out << "\n  Nothing was written to the cache (is append still the stub?).";
  }
  return out.str();
}

// Runs one case on `backend`; returns false (after one failed check with the diagnosis) on a mismatch.
bool check_append(Backend& backend, const AppendCase& c, uint64_t seed) {
  KVCache cache(backend, cache_config(c), c.max_seq);
  fill_sentinels(cache);
  const auto new_k = test::random_floats(size_t(c.n) * cache.kv_dim(), seed);
  const auto new_v = test::random_floats(size_t(c.n) * cache.kv_dim(), seed + 1);
  const Expected e = expected_after(cache, c, new_k, new_v);
  cache.append(c.layer, c.start_pos, new_k.data(), new_v.data(), c.n);
  const std::string problem = diagnose(cache, c, e, new_k, new_v);
  if (!problem.empty()) FAIL_CHECK(problem);
  return problem.empty();
}

// A Backend whose memory is host memory and whose copy() counts its calls; every compute op is refused.
// It tells an append that copies through the backend (works on every backend) from one that uses
// memcpy or a loop (crashes on the CUDA backend, whose pointers are GPU memory).
class CountingBackend : public Backend {
 public:
  std::string name() const override { return "counting"; }
  void* allocate(size_t bytes) override {
    void* p = std::calloc(bytes == 0 ? 1 : bytes, 1);
    if (p == nullptr) fail("counting backend: out of memory");
    return p;
  }
  void release(void* pointer) override { std::free(pointer); }
  void upload(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copy(float* dst, const float* src, size_t count) override {
    ++copies;
    floats_copied += count;
    std::memcpy(dst, src, count * sizeof(float));
  }
  void embed(const Matrix&, const int*, int, float*) override { refuse(); }
  void rmsnorm(const float*, const float*, float*, int, int, float) override { refuse(); }
  void matmul(const Matrix&, const float*, float*, int) override { refuse(); }
  void rope(float*, int, int, int, int, float, RopeLayout) override { refuse(); }
  void attention(const float*, const float*, const float*, float*, int, int, int, int, int) override { refuse(); }
  void silu_mul(float*, const float*, size_t) override { refuse(); }
  void add(float*, const float*, size_t) override { refuse(); }

  int copies = 0;
  size_t floats_copied = 0;

 private:
  [[noreturn]] static void refuse() { fail("counting backend: KVCache::append should only copy"); }
};

}  // namespace

TEST_CASE("kv_append: writes rows start_pos .. start_pos + n - 1 of its layer and nothing else") {
  const AppendCase cases[] = {
      {2, 2, 8, 16, 0, 0, 5},     // a prefill from position 0
      {2, 2, 8, 16, 1, 9, 1},     // a decode step in the last layer
      {3, 3, 10, 20, 2, 7, 4},    // 3 kv heads, head_dim 10 (not a multiple of 8)
      {1, 1, 17, 9, 0, 8, 1},     // the cache's last row, head_dim 17
      {4, 2, 64, 40, 1, 13, 27},  // a chunk that fills the cache to its end
      {2, 5, 6, 12, 1, 3, 6},     // 5 kv heads of 6
  };
  auto backend = make_cpu_backend(1);
  uint64_t seed = 100;
  for (const AppendCase& c : cases) {
    CAPTURE(c.layer);
    CAPTURE(c.start_pos);
    CAPTURE(c.n);
    if (!check_append(*backend, c, seed += 2)) break;
  }
}

TEST_CASE("kv_append: a prefill then decode steps, layer by layer, leave every position's rows in place") {
  // The order Transformer::forward appends in: for each pass, layers 0 .. n_layers-1 at the pass's positions.
  const AppendCase shape{3, 2, 10, 12, 0, 0, 0};
  ModelConfig config = cache_config(shape);
  auto backend = make_cpu_backend(1);
  KVCache cache(*backend, config, shape.max_seq);
  const int kv_dim = cache.kv_dim();
  // Rows of position p in layer l: seeded by (l, p), so every row differs.
  auto row = [&](int l, int p, bool is_v) { return test::random_floats(size_t(kv_dim), uint64_t(1000 * l + 10 * p + is_v)); };
  const int prompt = 5, total = 10;  // prefill positions [0, 5), then 5 decode steps; rows [10, 12) stay empty
  for (int start = 0; start < total; start = start == 0 ? prompt : start + 1) {
    const int n = start == 0 ? prompt : 1;
    for (int l = 0; l < shape.n_layers; ++l) {
      std::vector<float> k, v;
      for (int p = start; p < start + n; ++p) {
        const auto kr = row(l, p, false), vr = row(l, p, true);
        k.insert(k.end(), kr.begin(), kr.end());
        v.insert(v.end(), vr.begin(), vr.end());
      }
      cache.append(l, start, k.data(), v.data(), n);
    }
  }
  int wrong = 0;
  for (int l = 0; l < shape.n_layers; ++l)
    for (int p = 0; p < shape.max_seq; ++p) {
      const auto k = p < total ? row(l, p, false) : std::vector<float>(size_t(kv_dim), 0.0f);  // a new cache is zeros
      const auto v = p < total ? row(l, p, true) : std::vector<float>(size_t(kv_dim), 0.0f);
      if (!rows_hold(cache.k(l), p, k, kv_dim) || !rows_hold(cache.v(l), p, v, kv_dim)) {
        if (++wrong <= 3)
          FAIL_CHECK("layer " << l << ", position " << p << ": the K or V row is not "
                     << (p < total ? "the one appended for that position" : "empty (nothing was appended there)"));
      }
    }
  CHECK(wrong == 0);
}

TEST_CASE("kv_append: copies through Backend::copy (on the CUDA backend the cache is GPU memory)") {
  CountingBackend backend;
  const AppendCase c{2, 3, 8, 10, 1, 4, 3};
  const bool correct = check_append(backend, c, 7);
  CHECK(correct);
  if (correct && backend.copies == 0)
    FAIL_CHECK("the rows arrived, but not through Backend::copy: you wrote the cache with memcpy or a loop. "
               "On the CUDA backend k(layer) and new_k are GPU pointers and this would crash; use "
               "backend_->copy(dst, src, count).");
  // K and V: 2 * n rows of kv_dim floats, each copied once.
  CHECK(backend.floats_copied == size_t(2 * c.n * c.n_kv_heads * c.head_dim));
}

TEST_CASE("kv_append: a layer or positions outside the cache are an infer::Error, and nothing is written") {
  const AppendCase c{2, 2, 4, 6, 0, 0, 0};
  auto backend = make_cpu_backend(1);
  KVCache cache(*backend, cache_config(c), c.max_seq);
  fill_sentinels(cache);
  const auto rows = test::random_floats(size_t(3) * cache.kv_dim(), 3);
  const float* k = rows.data();
  const float* v = rows.data();
  CHECK_THROWS_AS(cache.append(-1, 0, k, v, 1), Error);  // no layer -1
  CHECK_THROWS_AS(cache.append(2, 0, k, v, 1), Error);   // layers are 0 and 1
  CHECK_THROWS_AS(cache.append(0, -1, k, v, 1), Error);  // negative position
  CHECK_THROWS_AS(cache.append(1, 4, k, v, 3), Error);   // positions [4, 7): the cache has 6
  CHECK_THROWS_AS(cache.append(1, 6, k, v, 1), Error);   // position 6: one past the end
  CHECK_THROWS_AS(cache.append(0, 0, k, v, -1), Error);  // negative n
  // The refused appends wrote nothing.
  bool untouched = true;
  const size_t layer_floats = size_t(c.max_seq) * cache.kv_dim();
  for (int l = 0; l < c.n_layers; ++l)
    for (size_t i = 0; i < layer_floats; ++i)
      untouched = untouched && cache.k(l)[i] == sentinel(false, l, i) && cache.v(l)[i] == sentinel(true, l, i);
  CHECK_MESSAGE(untouched, "a refused append changed the cache: check the arguments before copying anything");
  // The last rows themselves are fine, and so is an empty append at the end.
  CHECK_NOTHROW(cache.append(1, 3, k, v, 3));
  CHECK_NOTHROW(cache.append(1, 6, k, v, 0));
}
