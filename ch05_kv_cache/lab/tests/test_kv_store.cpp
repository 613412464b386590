// test_kv_store.cpp: ch05 lab, exercise 1: cpu::store_kv, the KV cache write.
//
// Every float of a pool is first set to a distinct sentinel; after a store, row slot_mapping[t] of K and V
// must hold token t's new rows and every other float must still hold its sentinel. Cases: ch05's appends
// (consecutive slots = positions, a prefill, a decode step, the cache's last row), GQA-sized rows, head_dim
// not a multiple of 8, and one scattered mapping (what ch06's paged pool sends). On a mismatch the test says
// where the rows went when it recognises the mistake, else the first wrong float.
#include "infer/core/error.h"
#include "infer/cpu/cpu_kernels.h"
#include "test_util.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

using namespace infer;

namespace {

struct StoreCase {
  int kv_dim, num_slots;   // the pool: num_slots rows of kv_dim floats (one layer)
  std::vector<int> slots;  // slot_mapping: where each new token's row goes
};

// ch05's append at start_pos: slots start_pos, start_pos + 1, ... (slot = position).
std::vector<int> append_slots(int start_pos, int n) {
  std::vector<int> slots(static_cast<size_t>(n));
  std::iota(slots.begin(), slots.end(), start_pos);
  return slots;
}

// A distinct value per float of the pool (never a value random_floats produces: those are in [-1, 1)).
float sentinel(bool is_v, size_t index) { return float(is_v ? -2000000 : 2000000) - float(index); }

struct Pool {
  std::vector<float> k, v;
  Pool(int kv_dim, int num_slots) : k(size_t(kv_dim) * num_slots), v(k.size()) {
    for (size_t i = 0; i < k.size(); ++i) {
      k[i] = sentinel(false, i);
      v[i] = sentinel(true, i);
    }
  }
};

bool row_holds(const std::vector<float>& table, int row, const float* want, int kv_dim) {
  return std::memcmp(table.data() + size_t(row) * kv_dim, want, size_t(kv_dim) * sizeof(float)) == 0;
}

// Empty when `pool` is `expected`; otherwise the first wrong float and, when recognised, the mistake.
std::string diagnose(const StoreCase& c, const Pool& pool, const Pool& expected, const std::vector<float>& new_k,
                     const std::vector<float>& new_v) {
  std::ostringstream out;
  for (int which = 0; which < 2 && out.str().empty(); ++which) {
    const std::vector<float>& got = which == 0 ? pool.k : pool.v;
    const std::vector<float>& want = which == 0 ? expected.k : expected.v;
    for (size_t i = 0; i < got.size(); ++i) {
      if (got[i] == want[i]) continue;
      const int row = int(i / size_t(c.kv_dim));
      out << "pool of " << c.num_slots << " slots x kv_dim " << c.kv_dim << ", " << c.slots.size()
          << " new tokens, slot_mapping starting {" << c.slots[0] << (c.slots.size() > 1 ? ", ...}" : "}")
          << ".\n  first wrong float: " << (which == 0 ? "K" : "V") << " slot " << row << ", element "
          << i % size_t(c.kv_dim) << ": got " << got[i] << ", expected " << want[i] << ".";
      break;
    }
  }
  if (out.str().empty()) return "";
  const int n = int(c.slots.size()), kv_dim = c.kv_dim;
  const int first = c.slots[0];
  bool anything_written = false;
  for (size_t i = 0; i < pool.k.size(); ++i)
    anything_written = anything_written || pool.k[i] != sentinel(false, i) || pool.v[i] != sentinel(true, i);
  if (row_holds(pool.k, first, new_v.data(), kv_dim) && row_holds(pool.v, first, new_k.data(), kv_dim))
    out << "\n  HINT: K and V are swapped: new_k goes to k_pool, new_v to v_pool.";
  else if (first > 0 && row_holds(pool.k, 0, new_k.data(), kv_dim))
    out << "\n  HINT: the first row went to slot 0: token t's row belongs at row slot_mapping[t], i.e. from "
           "k_pool + slot_mapping[t] * kv_dim.";
  else if (n > 1 && row_holds(pool.k, first, new_k.data(), kv_dim) &&
           !row_holds(pool.k, c.slots[1], new_k.data() + kv_dim, kv_dim))
    out << "\n  HINT: only the first token's row arrived: every token t = 0 .. n-1 has a row to store.";
  else if (kv_dim > 1 && std::memcmp(pool.k.data() + size_t(first) * kv_dim, new_k.data(), sizeof(float)) == 0 &&
           !row_holds(pool.k, first, new_k.data(), kv_dim))
    out << "\n  HINT: only part of a row arrived: a row is kv_dim = n_kv_heads * head_dim floats (all kv heads).";
  else if (!anything_written)
    out << "\n  Nothing was written to the pool (is store_kv still the stub?).";
  return out.str();
}

// Runs one case; returns false (after one failed check with the diagnosis) on a mismatch.
bool check_store(const StoreCase& c, uint64_t seed) {
  const int n = int(c.slots.size());
  Pool pool(c.kv_dim, c.num_slots), expected(c.kv_dim, c.num_slots);
  const auto new_k = test::random_floats(size_t(n) * c.kv_dim, seed);
  const auto new_v = test::random_floats(size_t(n) * c.kv_dim, seed + 1);
  for (int t = 0; t < n; ++t) {
    std::copy_n(new_k.begin() + ptrdiff_t(t) * c.kv_dim, c.kv_dim, expected.k.begin() + ptrdiff_t(c.slots[t]) * c.kv_dim);
    std::copy_n(new_v.begin() + ptrdiff_t(t) * c.kv_dim, c.kv_dim, expected.v.begin() + ptrdiff_t(c.slots[t]) * c.kv_dim);
  }
  cpu::store_kv(new_k.data(), new_v.data(), pool.k.data(), pool.v.data(), c.slots.data(), n, c.kv_dim, c.num_slots);
  const std::string problem = diagnose(c, pool, expected, new_k, new_v);
  if (!problem.empty()) FAIL_CHECK(problem);
  return problem.empty();
}

}  // namespace

TEST_CASE("kv_store: writes token t's rows to slot slot_mapping[t] and nothing else") {
  const StoreCase cases[] = {
      {16, 16, append_slots(0, 5)},       // a prefill from position 0 (2 kv heads x head_dim 8)
      {16, 16, append_slots(9, 1)},       // a decode step at position 9
      {30, 20, append_slots(7, 4)},       // 3 kv heads x head_dim 10 (not a multiple of 8)
      {17, 9, append_slots(8, 1)},        // the cache's last row, kv_dim 17
      {128, 40, append_slots(13, 27)},    // a chunk that fills the cache to its end
      {30, 12, append_slots(3, 6)},       // 5 kv heads x head_dim 6
      {12, 32, {17, 18, 4, 30, 31, 0}},   // scattered slots, as ch06's paged pool sends them
  };
  uint64_t seed = 100;
  for (const StoreCase& c : cases) {
    CAPTURE(c.kv_dim);
    CAPTURE(c.slots[0]);
    CAPTURE(c.slots.size());
    if (!check_store(c, seed += 2)) break;
  }
}

TEST_CASE("kv_store: a prefill then decode steps leave every position's rows in place") {
  // The order a ch05 generation stores in: the prompt's positions in one pass, then one position per step.
  const int kv_dim = 20, num_slots = 12, prompt = 5, total = 10;  // rows [10, 12) stay as they were (zeros)
  std::vector<float> k(size_t(kv_dim) * num_slots, 0.0f), v(k.size(), 0.0f);
  auto row = [&](int p, bool is_v) { return test::random_floats(size_t(kv_dim), uint64_t(10 * p + is_v)); };
  for (int start = 0; start < total; start = start == 0 ? prompt : start + 1) {
    const int n = start == 0 ? prompt : 1;
    std::vector<float> new_k, new_v;
    for (int p = start; p < start + n; ++p) {
      const auto kr = row(p, false), vr = row(p, true);
      new_k.insert(new_k.end(), kr.begin(), kr.end());
      new_v.insert(new_v.end(), vr.begin(), vr.end());
    }
    const std::vector<int> slots = append_slots(start, n);
    cpu::store_kv(new_k.data(), new_v.data(), k.data(), v.data(), slots.data(), n, kv_dim, num_slots);
  }
  int wrong = 0;
  for (int p = 0; p < num_slots; ++p) {
    const auto want_k = p < total ? row(p, false) : std::vector<float>(size_t(kv_dim), 0.0f);
    const auto want_v = p < total ? row(p, true) : std::vector<float>(size_t(kv_dim), 0.0f);
    if (!row_holds(k, p, want_k.data(), kv_dim) || !row_holds(v, p, want_v.data(), kv_dim)) {
      if (++wrong <= 3)
        FAIL_CHECK("position " << p << ": the K or V row is not "
                               << (p < total ? "the one stored for that position" : "untouched (nothing was stored there)"));
    }
  }
  CHECK(wrong == 0);
}

TEST_CASE("kv_store: a slot outside the pool is an infer::Error, and nothing is written") {
  const int kv_dim = 8, num_slots = 6;
  const auto rows = test::random_floats(size_t(3) * kv_dim, 3);
  const std::vector<std::vector<int>> bad = {
      {-1},        // a negative slot
      {6},         // one past the end
      {3, 4, 7},   // the last one is outside: the first two must not be written either
      {0, -5, 1},  // a negative slot in the middle
  };
  for (const std::vector<int>& slots : bad) {
    CAPTURE(slots.back());
    Pool pool(kv_dim, num_slots);
    CHECK_THROWS_AS(cpu::store_kv(rows.data(), rows.data(), pool.k.data(), pool.v.data(), slots.data(), int(slots.size()),
                                  kv_dim, num_slots),
                    Error);
    bool untouched = true;
    for (size_t i = 0; i < pool.k.size(); ++i)
      untouched = untouched && pool.k[i] == sentinel(false, i) && pool.v[i] == sentinel(true, i);
    CHECK_MESSAGE(untouched, "a refused store changed the pool: check every slot before copying anything");
  }
  // The last rows themselves are fine, and so is an empty store.
  Pool pool(kv_dim, num_slots);
  const std::vector<int> last = append_slots(3, 3);
  CHECK_NOTHROW(cpu::store_kv(rows.data(), rows.data(), pool.k.data(), pool.v.data(), last.data(), 3, kv_dim, num_slots));
  CHECK_NOTHROW(cpu::store_kv(rows.data(), rows.data(), pool.k.data(), pool.v.data(), last.data(), 0, kv_dim, num_slots));
}
