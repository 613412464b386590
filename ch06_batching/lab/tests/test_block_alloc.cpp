// test_block_alloc.cpp: ch06 lab: the block allocator (take_free_block, release, reserve, free) on its own,
// under a seeded random walk with the manager's invariant check, and inside the whole engine.
#include "infer/core/error.h"
#include "infer/engine/block_manager.h"
#include "infer/engine/engine.h"

#include "fake_runner.h"
#include "test_util.h"

#include <map>
#include <random>

using namespace infer;
using namespace infer::test;

namespace {

std::vector<int> tokens(int n, int first = 10) {
  std::vector<int> t;
  for (int i = 0; i < n; ++i) t.push_back(first + i);
  return t;
}

// The invariant check with a hint instead of an exception.
void require_consistent(const BlockManager& bm, const char* after) {
  try {
    bm.check_invariants();
  } catch (const Error& e) {
    FAIL_CHECK("after " << after << ": " << e.what()
                        << "\n  HINT: ref counts must equal the number of block tables naming a block, and the free "
                           "list must hold exactly the blocks with ref 0, once each");
  }
}

}  // namespace

TEST_CASE("lab ch06 alloc: blocks are handed out from the front of the free list with ref count 1") {
  BlockManager bm(6, 4, false);
  bm.allocate(1, tokens(9), 9);  // 3 blocks
  REQUIRE(bm.has(1));
  const std::vector<int> table = bm.block_table(1);
  REQUIRE(table.size() == 3);
  INFO("a fresh pool's free list is 0, 1, 2, ...: the first blocks handed out are 0, 1, 2");
  CHECK(table == std::vector<int>{0, 1, 2});
  for (int b : table) CHECK(bm.ref_count(b) == 1);
  CHECK(bm.num_free() == 3);
  require_consistent(bm, "allocate");
  bm.free(1);
  CHECK(bm.num_free() == 6);
  require_consistent(bm, "free");
}

TEST_CASE("lab ch06 alloc: freed blocks go to the back, last block first (LRU order)") {
  BlockManager bm(4, 2, false);
  bm.allocate(1, tokens(5), 5);  // blocks 0, 1, 2
  bm.free(1);                    // free list: 3, 2, 1, 0
  bm.allocate(2, tokens(8), 8);  // 4 blocks, in free-list order
  INFO("after freeing blocks 0, 1, 2 (last first) the free list is 3, 2, 1, 0");
  CHECK(bm.block_table(2) == std::vector<int>{3, 2, 1, 0});
  CHECK(bm.num_free() == 0);
  CHECK_THROWS_AS(bm.reserve(2, 9), Error);  // a fifth block does not exist
  CHECK(bm.block_table(2).size() == 4);
  bm.free(2);
  bm.free(2);  // unknown now: nothing happens
  CHECK(bm.num_free() == 4);
  require_consistent(bm, "free");
}

TEST_CASE("lab ch06 alloc: reserve grows a table only when a new block is needed, and refuses without taking") {
  BlockManager bm(5, 4, false);
  bm.allocate(1, tokens(3), 3);
  CHECK(bm.block_table(1).size() == 1);
  bm.reserve(1, 4);
  CHECK(bm.block_table(1).size() == 1);
  bm.reserve(1, 5);
  CHECK(bm.block_table(1).size() == 2);
  bm.reserve(1, 2);  // fewer positions: nothing changes
  CHECK(bm.block_table(1).size() == 2);
  CHECK_THROWS_AS(bm.reserve(1, 21), Error);  // 6 blocks > 5
  INFO("a refused reserve must not take any block");
  CHECK(bm.block_table(1).size() == 2);
  CHECK(bm.num_free() == 3);
  bm.free(1);
  require_consistent(bm, "reserve + free");
}

TEST_CASE("lab ch06 alloc: a shared prefix block is freed only when its last user frees it") {
  BlockManager bm(8, 4, /*prefix_caching=*/true);
  const auto prompt = tokens(9);
  bm.allocate(1, prompt, 9);
  bm.mark_computed(1, prompt, 9);  // blocks 0 and 1 are now cached
  bm.allocate(2, prompt, 9);       // shares them
  const int shared = bm.block_table(1)[0];
  CHECK(bm.block_table(2)[0] == shared);
  CHECK(bm.ref_count(shared) == 2);
  bm.free(1);
  INFO("release() takes one user away: the block stays in use by sequence 2");
  CHECK(bm.ref_count(shared) == 1);
  CHECK_FALSE(bm.is_free(shared));
  require_consistent(bm, "freeing one of two users");
  bm.free(2);
  CHECK(bm.is_free(shared));
  CHECK(bm.num_free() == 8);
  require_consistent(bm, "freeing both");
  CHECK_THROWS_AS(BlockManager(2, 2, false).reserve(1, 1), Error);  // unknown sequence
}

TEST_CASE("lab ch06 alloc: a seeded random walk keeps every invariant and ends all free") {
  std::mt19937_64 rng(6);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  BlockManager bm(20, 3, true);
  std::map<SeqId, std::vector<int>> live;
  SeqId next = 1;
  for (int op = 0; op < 1500; ++op) {
    const int kind = uniform(0, 3);
    if (kind == 0 || live.empty()) {
      std::vector<int> t = tokens(uniform(1, 12), uniform(0, 2) * 3);  // 3 prefixes: hits happen
      if (!bm.can_allocate(t, int(t.size()))) continue;
      bm.allocate(next, t, int(t.size()));
      bm.mark_computed(next, t, int(t.size()));
      live[next++] = t;
    } else {
      auto it = live.begin();
      std::advance(it, uniform(0, int(live.size()) - 1));
      if (kind == 1) {
        const int want = int(bm.block_table(it->first).size()) * 3 + uniform(1, 4);
        if (bm.can_reserve(it->first, want)) bm.reserve(it->first, want);
      } else {
        bm.free(it->first);
        live.erase(it);
      }
    }
    require_consistent(bm, "a random operation");
    REQUIRE(bm.num_free() + bm.num_used() == 20);
  }
  for (const auto& [id, t] : live) bm.free(id);
  CHECK(bm.num_free() == 20);
  require_consistent(bm, "freeing everything");
}

TEST_CASE("lab ch06 alloc: the engine on your allocator: outputs equal each request alone, the pool ends free") {
  // 10 blocks of 4 for 6 requests that need up to 8 blocks each: admissions, growth, preemptions, frees.
  EngineOptions options;
  options.max_batch = 4;
  options.max_step_tokens = 16;
  Engine engine(std::make_unique<FakeRunner>(10, 4), options);
  std::map<RequestId, std::vector<int>> out;
  std::map<RequestId, std::vector<int>> prompts;
  RequestParams params;
  params.max_tokens = 14;
  for (int i = 0; i < 6; ++i) {
    std::vector<int> prompt = tokens(6 + 3 * i, 2 * i);
    const RequestId id = engine.add_request(prompt, params, [&out](const RequestEvent& e) {
      if (e.token >= 0) out[e.id].push_back(e.token);
    });
    prompts[id] = prompt;
  }
  int steps = 0;
  while (engine.has_work() && steps++ < 2000) engine.step();
  for (const auto& [id, prompt] : prompts) {
    CAPTURE(id);
    CHECK(out[id] == fake_reference_tokens(prompt, 50, 14, SamplerConfig{}));
  }
  CHECK(engine.stats().preemptions > 0);
  CHECK(engine.stats().blocks_free == 10);
}
