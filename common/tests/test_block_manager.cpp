// test_block_manager.cpp: the paged KV cache's bookkeeping (engine/block_manager.h).
//
// Directed cases (allocation, growth, LRU eviction, prefix hits, refusals) and a seeded random walk of
// every operation against a fake KV storage kept by the test: each pool slot records the token id written
// there, so a prefix hit is only correct if the reused blocks hold exactly the new sequence's tokens. After
// every operation check_invariants() recounts the ref counts and the free list from the tables, and at the
// end every block is free.
#include "infer/core/error.h"
#include "infer/engine/block_manager.h"

#include "test_util.h"

#include <map>
#include <numeric>
#include <random>

using namespace infer;

namespace {

std::vector<int> iota_tokens(int n, int start = 100) {
  std::vector<int> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), start);
  return t;
}

}  // namespace

TEST_CASE("block manager: allocate, grow and free return every block") {
  BlockManager bm(8, 4, /*prefix_caching=*/false);
  CHECK(bm.num_free() == 8);
  const auto prompt = iota_tokens(6);
  REQUIRE(bm.can_allocate(prompt, 6));
  CHECK(bm.allocate(1, prompt, 6) == 0);  // caching off: nothing cached
  CHECK(bm.block_table(1).size() == 2);
  CHECK(bm.num_free() == 6);
  bm.reserve(1, 8);  // still two blocks
  CHECK(bm.block_table(1).size() == 2);
  bm.reserve(1, 9);  // a third
  CHECK(bm.block_table(1).size() == 3);
  CHECK(bm.can_reserve(1, 32));
  CHECK_FALSE(bm.can_reserve(1, 33));
  CHECK_THROWS_AS(bm.reserve(1, 33), Error);
  CHECK_THROWS_AS(bm.allocate(1, prompt, 6), Error);  // already allocated
  bm.check_invariants();
  bm.truncate(1, 5);
  CHECK(bm.block_table(1).size() == 2);
  bm.free(1);
  bm.free(1);  // unknown now: a no-op
  CHECK(bm.num_free() == 8);
  bm.check_invariants();
  CHECK_THROWS_AS(BlockManager(0, 16, true), Error);
  CHECK_THROWS_AS(BlockManager(4, 0, true), Error);
}

TEST_CASE("block manager: a full pool refuses, then frees") {
  BlockManager bm(4, 4, false);
  const auto a = iota_tokens(16);
  REQUIRE(bm.can_allocate(a, 16));
  bm.allocate(1, a, 16);
  CHECK(bm.num_free() == 0);
  CHECK_FALSE(bm.can_allocate(iota_tokens(1), 1));
  CHECK_THROWS_AS(bm.allocate(2, iota_tokens(1), 1), Error);
  CHECK_FALSE(bm.has(2));
  bm.free(1);
  CHECK(bm.can_allocate(iota_tokens(1), 1));
  bm.check_invariants();
}

TEST_CASE("block manager: prefix hits share blocks, count saved tokens, and keep the last token to compute") {
  BlockManager bm(16, 4, true);
  const auto prompt = iota_tokens(10);  // blocks [0..3] [4..7] full, [8, 9] partial
  CHECK(bm.allocate(1, prompt, 10) == 0);
  CHECK(bm.cached_blocks(prompt) == 0);  // nothing computed yet: nothing registered
  bm.mark_computed(1, prompt, 10);
  CHECK(bm.cached_blocks(prompt) == 2);

  // Same first 8 tokens, different tail: both full blocks are shared.
  auto other = prompt;
  other[9] = 7;
  CHECK(bm.allocate(2, other, 10) == 8);
  CHECK(bm.block_table(2)[0] == bm.block_table(1)[0]);
  CHECK(bm.block_table(2)[1] == bm.block_table(1)[1]);
  CHECK(bm.block_table(2)[2] != bm.block_table(1)[2]);
  CHECK(bm.ref_count(bm.block_table(1)[0]) == 2);
  CHECK(bm.stats().hit_blocks == 2);
  CHECK(bm.stats().hit_tokens == 8);

  // A prompt of exactly 8 tokens may reuse only the first block: its last token must be computed.
  const auto eight = iota_tokens(8);
  CHECK(bm.cached_blocks(eight) == 1);

  // A different second block: only the first is shared.
  auto diverging = prompt;
  diverging[5] = 1;
  CHECK(bm.cached_blocks(diverging) == 1);
  // A different first block: nothing, even though block 2's tokens match (the hash is chained).
  auto shifted = prompt;
  shifted[0] = 1;
  CHECK(bm.cached_blocks(shifted) == 0);
  bm.check_invariants();
  bm.free(1);
  bm.free(2);
  CHECK(bm.num_free() == 16);
  bm.check_invariants();
}

TEST_CASE("block manager: freed cached blocks stay findable until reallocated, least recently freed first") {
  BlockManager bm(4, 2, true);
  const std::vector<int> a{1, 2, 3, 4, 5};  // two full blocks + 1
  bm.allocate(1, a, 5);
  bm.mark_computed(1, a, 5);
  bm.free(1);
  CHECK(bm.num_free() == 4);
  CHECK(bm.cached_blocks(a) == 2);  // still cached after the free
  // Reusing them takes them out of the free list.
  CHECK(bm.allocate(2, a, 5) == 4);
  CHECK(bm.num_free() == 1);
  bm.free(2);
  // free() releases the tail first, so a prefix's last block is evicted before its first. The free list is
  // now [seq 1's partial 3rd block, seq 2's partial 3rd block, a's 2nd, a's 1st] (least recent first):
  // allocating 2 blocks takes the two partial ones (never registered), so a's prefix survives.
  const std::vector<int> b{9, 9, 9};
  bm.allocate(3, b, 3);
  CHECK(bm.cached_blocks(a) == 2);
  CHECK(bm.stats().evictions == 0);
  // One more block evicts a's second block; its first stays a hit.
  bm.reserve(3, 5);
  CHECK(bm.stats().evictions == 1);
  CHECK(bm.cached_blocks(a) == 1);
  bm.free(3);
  bm.check_invariants();
  CHECK(bm.num_free() == 4);
}

TEST_CASE("block manager: a reallocated parent invalidates its children") {
  // Block 0 of prompt a is evicted and refilled with other tokens; a's second block must not be found behind
  // a new first block whose hash chain differs, and a's own prefix is gone.
  BlockManager bm(3, 2, true);
  const std::vector<int> a{1, 2, 3, 4, 5};
  bm.allocate(1, a, 5);
  bm.mark_computed(1, a, 5);
  const int first = bm.block_table(1)[0];
  bm.free(1);
  const std::vector<int> c{7, 8, 7, 8, 7, 8, 1};  // takes all 3 blocks: a's are evicted
  bm.allocate(2, c, 6);
  CHECK(bm.stats().evictions == 2);
  CHECK(bm.cached_blocks(a) == 0);
  bm.free(2);
  bm.check_invariants();
  (void)first;
}

TEST_CASE("block manager: truncate refuses to cut into a cached block") {
  BlockManager bm(8, 4, true);
  const auto prompt = iota_tokens(9);
  bm.allocate(1, prompt, 9);
  bm.mark_computed(1, prompt, 9);
  bm.reserve(1, 14);
  bm.truncate(1, 10);  // drops nothing (blocks 0..2 cover 12)
  CHECK(bm.block_table(1).size() == 3);
  bm.truncate(1, 8);  // block 2 goes
  CHECK(bm.block_table(1).size() == 2);
  CHECK_THROWS_AS(bm.truncate(1, 6), Error);  // would rewrite registered block 1
  bm.free(1);
  CHECK(bm.num_free() == 8);
}

// The random walk: sequences built from a few shared prefixes (so hits happen), grown, computed, truncated
// and freed in random order, against a fake storage of what each slot holds.
TEST_CASE("block manager: random operation sequences keep ref counts, free list and cached contents consistent") {
  for (uint64_t seed : {1u, 2u, 3u}) {
    for (bool caching : {false, true}) {
      CAPTURE(seed);
      CAPTURE(caching);
      const int block_size = 1 + int(seed);  // 2, 3, 4
      const int num_blocks = 24;
      BlockManager bm(num_blocks, block_size, caching);
      std::mt19937_64 rng(seed);
      auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };

      // Three shared prefixes of 2 blocks + noise.
      std::vector<std::vector<int>> prefixes;
      for (int p = 0; p < 3; ++p) {
        std::vector<int> t;
        for (int i = 0; i < 2 * block_size; ++i) t.push_back(uniform(0, 5));
        prefixes.push_back(t);
      }
      struct Live {
        std::vector<int> tokens;  // all known tokens
        int computed = 0;
        int reserved = 0;
      };
      std::map<SeqId, Live> live;
      std::vector<int> slot_token(size_t(num_blocks) * block_size, -1);  // the fake KV storage
      SeqId next_id = 1;
      uint64_t hits_seen = 0;

      for (int op = 0; op < 2000; ++op) {
        const int kind = uniform(0, 9);
        if (kind <= 2 || live.empty()) {  // admit
          Live s;
          s.tokens = prefixes[size_t(uniform(0, 2))];
          s.tokens.resize(size_t(uniform(1, 3 * block_size)), 0);
          for (size_t i = 2 * size_t(block_size); i < s.tokens.size(); ++i) s.tokens[i] = uniform(0, 5);
          const int cached = bm.cached_blocks(s.tokens) * block_size;
          const int positions = std::min(int(s.tokens.size()), cached + uniform(1, 2 * block_size));
          if (!bm.can_allocate(s.tokens, positions)) continue;
          const SeqId id = next_id++;
          REQUIRE(bm.allocate(id, s.tokens, positions) == cached);
          // Every reused slot must already hold this sequence's token.
          for (int p = 0; p < cached; ++p) {
            const std::vector<int>& table = bm.block_table(id);
            REQUIRE(slot_token[size_t(table[size_t(p / block_size)]) * block_size + p % block_size] ==
                    s.tokens[size_t(p)]);
          }
          hits_seen += uint64_t(cached / block_size);
          s.computed = cached;
          s.reserved = positions;
          live[id] = s;
        } else {
          auto it = live.begin();
          std::advance(it, uniform(0, int(live.size()) - 1));
          const SeqId id = it->first;
          Live& s = it->second;
          if (kind <= 5) {  // compute what is reserved (a forward pass writes those slots), maybe generate one
            const std::vector<int>& table = bm.block_table(id);
            for (int p = s.computed; p < s.reserved; ++p) {
              if (p >= int(s.tokens.size())) s.tokens.push_back(uniform(0, 5));  // a decoded token
              const int block = table[size_t(p / block_size)];
              REQUIRE(bm.ref_count(block) == 1);  // never write into a shared block
              slot_token[size_t(block) * block_size + p % block_size] = s.tokens[size_t(p)];
            }
            s.computed = s.reserved;
            bm.mark_computed(id, s.tokens, s.computed);
          } else if (kind <= 7) {  // grow
            const int want = s.reserved + uniform(1, block_size + 1);
            if (bm.can_reserve(id, want)) {
              bm.reserve(id, want);
              s.reserved = want;
            }
          } else if (kind == 8 && s.computed > 0) {  // roll back some positions (may be refused)
            const int to = uniform(0, s.computed);
            try {
              bm.truncate(id, to);
              s.computed = std::min(s.computed, to);
              s.reserved = std::min(s.reserved, to);
              s.tokens.resize(size_t(std::max(to, 0)));
              if (s.tokens.empty()) s.tokens.push_back(0);
            } catch (const Error&) {
            }
          } else {  // finish
            bm.free(id);
            live.erase(it);
          }
        }
        bm.check_invariants();
        int used = 0;
        for (int b = 0; b < num_blocks; ++b) used += bm.is_free(b) ? 0 : 1;
        REQUIRE(used == bm.num_used());
      }
      if (caching) {
        CHECK(hits_seen > 0);  // the walk did exercise the cache
        CHECK(bm.stats().hit_blocks == hits_seen);
      } else {
        CHECK(hits_seen == 0);
      }
      for (const auto& [id, s] : live) bm.free(id);
      bm.check_invariants();
      CHECK(bm.num_free() == num_blocks);
      CHECK(bm.num_sequences() == 0);
    }
  }
}
