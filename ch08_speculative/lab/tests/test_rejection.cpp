// test_rejection.cpp: ch08 lab, exercise 2: the rejection-sampling step (accept_draft_token, sample_residual)
// and what it guarantees: speculative sampling draws from the target's distribution.
#include "infer/core/error.h"
#include "infer/engine/speculative.h"
#include "test_util.h"

#include <cmath>
#include <numeric>
#include <random>

using namespace infer;

TEST_CASE("rejection: a guess is accepted with probability min(1, p / q)") {
  // Over a fine grid of u, the accepted fraction is min(1, p / q).
  for (auto [p, q] : {std::pair{0.5, 0.25}, std::pair{0.2, 0.4}, std::pair{0.0, 0.3}, std::pair{0.3, 0.3},
                      std::pair{0.01, 0.9}}) {
    int accepted = 0;
    constexpr int kGrid = 10000;
    for (int i = 0; i < kGrid; ++i) accepted += accept_draft_token(p, q, (i + 0.5) / kGrid) ? 1 : 0;
    INFO("p = " << p << ", q = " << q << ": accepted " << accepted << " of " << kGrid << " uniforms");
    CHECK(double(accepted) / kGrid == doctest::Approx(std::min(1.0, p / q)).epsilon(1e-3));
  }
}

TEST_CASE("rejection: the replacement is drawn from normalize(max(0, p - q))") {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 20; ++trial) {
    const size_t vocab = 3 + rng() % 20;
    std::vector<float> p(vocab);
    std::vector<float> q(vocab);
    for (size_t i = 0; i < vocab; ++i) p[i] = float(rng() % 100), q[i] = float(rng() % 100);
    const float p_total = std::accumulate(p.begin(), p.end(), 0.0f), q_total = std::accumulate(q.begin(), q.end(), 0.0f);
    for (size_t i = 0; i < vocab; ++i) p[i] /= p_total, q[i] /= q_total;
    std::vector<double> residual(vocab);
    double total = 0.0;
    for (size_t i = 0; i < vocab; ++i) total += residual[i] = std::max(0.0, double(p[i]) - double(q[i]));
    // A fine grid of u gives each token a share equal to its residual probability (up to the grid step).
    constexpr int kGrid = 20000;
    std::vector<int> counts(vocab, 0);
    for (int i = 0; i < kGrid; ++i) {
      const int token = sample_residual(p, q, (i + 0.5) / kGrid);
      REQUIRE(token >= 0);
      REQUIRE(size_t(token) < vocab);
      ++counts[size_t(token)];
    }
    for (size_t i = 0; i < vocab; ++i) {
      INFO("token " << i << ": p " << p[i] << ", q " << q[i] << ", drawn " << counts[i] << " of " << kGrid);
      CHECK(std::abs(double(counts[i]) / kGrid - residual[i] / total) <= 2.0 / kGrid);
    }
  }
  // p == q: nothing is left over; the draw falls back to p itself.
  const std::vector<float> p{0.25f, 0.5f, 0.25f};
  CHECK(sample_residual(p, p, 0.1) == 0);
  CHECK(sample_residual(p, p, 0.5) == 1);
  CHECK(sample_residual(p, p, 0.9) == 2);
  CHECK_THROWS_AS(sample_residual(p, std::vector<float>{0.5f, 0.5f}, 0.5), Error);
}

TEST_CASE("rejection: one speculative step outputs exactly p (accept, else replace)") {
  // The whole step, in exact arithmetic over a grid of (u_accept, x ~ q, u_residual): the probability of
  // each output token must be p. This is the theorem the two functions implement together.
  const std::vector<float> p{0.1f, 0.5f, 0.3f, 0.1f}, q{0.4f, 0.2f, 0.2f, 0.2f};
  std::vector<double> out(p.size(), 0.0);
  constexpr int kGrid = 400;
  for (size_t x = 0; x < q.size(); ++x) {
    for (int a = 0; a < kGrid; ++a) {
      const double weight = double(q[x]) / kGrid;
      if (accept_draft_token(p[x], q[x], (a + 0.5) / kGrid)) {
        out[x] += weight;
        continue;
      }
      for (int r = 0; r < kGrid; ++r) out[size_t(sample_residual(p, q, (r + 0.5) / kGrid))] += weight / kGrid;
    }
  }
  for (size_t y = 0; y < p.size(); ++y) {
    INFO("token " << y << ": output probability " << out[y] << ", target p = " << p[y]);
    CHECK(out[y] == doctest::Approx(p[y]).epsilon(0.01));
  }
}
