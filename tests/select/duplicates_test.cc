// Near-duplicate search (exact and cell search), grouping, and Select's dedup option.
#include "server/select/duplicates.h"

#include <gtest/gtest.h>

#include <set>
#include <utility>

#include "server/select/names.h"
#include "server/select/select.h"

namespace updp::select {
namespace {

torch::Tensor Unit(const torch::Tensor& x) {
  return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(1));
}

// `n` rows around `k` centres (so cells are not trivial), then `dups` extra rows, each
// a near copy (noise `eps`) or an exact copy of a random earlier row, at the end.
torch::Tensor WithPlantedDuplicates(int64_t n, int64_t k, int64_t d, int64_t dups, double eps,
                                    uint64_t seed) {
  torch::manual_seed(seed);
  torch::Tensor centres = Unit(torch::randn({k, d}));
  torch::Tensor base =
      centres.index_select(0, torch::randint(k, {n}, torch::kLong)) + 0.5 * torch::randn({n, d});
  torch::Tensor src = torch::randint(n, {dups}, torch::kLong);
  torch::Tensor copies = base.index_select(0, src);
  torch::Tensor noise = eps * torch::randn({dups, d});
  noise.narrow(0, 0, dups / 4).zero_();  // a quarter are exact copies
  return torch::cat({base, copies + noise * copies.norm(2, 1, true)}, 0);
}

// Brute force: every pair (a < b) with cosine >= t.
std::set<std::pair<int64_t, int64_t>> BrutePairs(const torch::Tensor& x, double t) {
  torch::Tensor u = Unit(x);
  std::set<std::pair<int64_t, int64_t>> out;
  for (int64_t b = 0; b < u.size(0); b += 2048) {  // 2048 rows at a time: bounded memory
    torch::Tensor idx =
        (u.narrow(0, b, std::min<int64_t>(2048, u.size(0) - b)).mm(u.t()) >= t - 1e-5).nonzero();
    auto a = idx.accessor<int64_t, 2>();
    for (int64_t i = 0; i < idx.size(0); ++i) {
      if (b + a[i][0] < a[i][1]) out.insert({b + a[i][0], a[i][1]});
    }
  }
  return out;
}

std::set<std::pair<int64_t, int64_t>> AsSet(const std::vector<SimilarPair>& pairs) {
  std::set<std::pair<int64_t, int64_t>> out;
  for (const auto& p : pairs) out.insert({p.a, p.b});
  return out;
}

TEST(FindSimilarPairs, ExactSearchEqualsBruteForce) {
  torch::Tensor x = WithPlantedDuplicates(3000, 20, 32, 300, 0.02, 1);
  auto src = *FeatureSource::FromTensor(x, false);
  ThreadPool pool(2);
  DuplicateParameters p;
  p.threshold = 0.95;
  p.exact_max_rows = 1 << 20;
  PairSearchStats st;
  auto pairs = FindSimilarPairs(src, p, pool, nullptr, nullptr, &st);
  ASSERT_TRUE(pairs.ok()) << pairs.status();
  EXPECT_TRUE(st.exact);
  const auto want = BrutePairs(x, 0.95);
  EXPECT_GE(want.size(), 300u);  // the planted ones at least
  EXPECT_EQ(AsSet(*pairs), want);
  for (size_t i = 1; i < pairs->size(); ++i) {  // sorted and unique
    const auto& a = (*pairs)[i - 1];
    const auto& b = (*pairs)[i];
    EXPECT_TRUE(a.a < b.a || (a.a == b.a && a.b < b.b));
  }
  for (const auto& q : *pairs) EXPECT_LT(q.a, q.b);
}

TEST(FindSimilarPairs, CellSearchIsSubquadraticAndFindsThePlantedPairs) {
  const int64_t n = 10000;
  torch::Tensor x = WithPlantedDuplicates(n, 50, 48, 1000, 0.03, 2);
  auto src = *FeatureSource::FromTensor(x, false);
  ThreadPool pool(2);
  DuplicateParameters p;
  p.threshold = 0.95;
  p.exact_max_rows = 0;  // force the cell search
  PairSearchStats st;
  auto pairs = FindSimilarPairs(src, p, pool, nullptr, nullptr, &st);
  ASSERT_TRUE(pairs.ok()) << pairs.status();
  EXPECT_FALSE(st.exact);
  EXPECT_GT(st.cells, 100);
  const int64_t total = n + 1000;
  EXPECT_LT(st.products, total * total / 10);  // far from all pairs
  const auto want = BrutePairs(x, 0.95);
  const auto got = AsSet(*pairs);
  int64_t found = 0;
  for (const auto& w : want) found += got.count(w);
  EXPECT_GE(static_cast<double>(found), 0.99 * want.size());
  for (const auto& g : got) EXPECT_TRUE(want.count(g)) << g.first << "," << g.second;
}

TEST(FindSimilarPairs, RejectsThresholdsOutsideZeroOne) {
  auto src = *FeatureSource::FromTensor(torch::randn({10, 4}), false);
  ThreadPool pool(1);
  for (double t : {0.0, -0.5, 1.5}) {
    DuplicateParameters p;
    p.threshold = t;
    auto r = FindSimilarPairs(src, p, pool);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("threshold"), std::string::npos);
  }
}

TEST(GroupDuplicates, RepresentativesAreApartAndMembersClose) {
  torch::Tensor x = WithPlantedDuplicates(2000, 10, 24, 600, 0.08, 3);
  auto src = *FeatureSource::FromTensor(x, false);
  ThreadPool pool(2);
  DuplicateParameters p;
  p.threshold = 0.9;
  p.exact_max_rows = 1 << 20;
  auto pairs = FindSimilarPairs(src, p, pool);
  ASSERT_TRUE(pairs.ok());
  const int64_t n = x.size(0);
  std::vector<char> skip(n, 0);
  skip[pairs->front().a] = 1;  // a skipped row is in no group
  const Grouping g = GroupDuplicates(n, *pairs, &skip);
  ASSERT_FALSE(g.groups.empty());
  torch::Tensor u = Unit(x);
  std::set<int64_t> seen;
  std::vector<int64_t> reps;
  for (const auto& grp : g.groups) {
    ASSERT_GE(grp.rows.size(), 2u);
    EXPECT_FALSE(g.duplicate[grp.rows[0]]);
    reps.push_back(grp.rows[0]);
    for (size_t i = 0; i < grp.rows.size(); ++i) {
      EXPECT_TRUE(seen.insert(grp.rows[i]).second) << "row in two groups";
      EXPECT_FALSE(skip[grp.rows[i]]);
      if (i == 0) continue;
      EXPECT_GT(grp.rows[i], grp.rows[0]);
      EXPECT_TRUE(g.duplicate[grp.rows[i]]);
      const float sim = u[grp.rows[0]].dot(u[grp.rows[i]]).item<float>();
      EXPECT_GE(sim, 0.9f - 1e-4f);
      EXPECT_NEAR(sim, grp.similarities[i], 1e-4);
    }
  }
  // Every row that is not a duplicate (nor skipped) is a representative: no two of
  // them are within the threshold.
  std::vector<int64_t> kept;
  for (int64_t i = 0; i < n; ++i)
    if (!g.duplicate[i] && !skip[i]) kept.push_back(i);
  torch::Tensor k = u.index_select(0, torch::tensor(kept));
  EXPECT_LT(k.mm(k.t()).triu(1).max().item<float>(), 0.9f - 1e-5f);
}

// No two picks, nor a pick and a labeled row, within the threshold.
void ExpectApart(const torch::Tensor& x, const std::vector<Pick>& picks,
                 const std::vector<int64_t>& labeled, double t) {
  torch::Tensor u = Unit(x);
  std::vector<int64_t> rows;
  for (const auto& p : picks) rows.push_back(p.index);
  torch::Tensor pr = u.index_select(0, torch::tensor(rows));
  EXPECT_LT(pr.mm(pr.t()).triu(1).max().item<float>(), t - 1e-5);
  if (!labeled.empty()) {
    torch::Tensor lr = u.index_select(0, torch::tensor(labeled));
    EXPECT_LT(pr.mm(lr.t()).max().item<float>(), t - 1e-5);
  }
}

class DedupPerStrategy : public ::testing::TestWithParam<std::string> {};

TEST_P(DedupPerStrategy, PicksAreNeverNearDuplicates) {
  // 400 rows and 400 near copies of them: without dedup a large budget must pick
  // some pair (checked on random below), with it never.
  torch::Tensor x = WithPlantedDuplicates(400, 8, 16, 400, 0.02, 4);
  std::vector<int64_t> labeled;
  for (int64_t i = 0; i < 400; i += 20) labeled.push_back(i);
  SelectOptions o;
  o.strategy = GetParam();
  o.budget = 300;
  o.seed = 3;
  o.labeled = labeled;
  o.dedup.threshold = 0.95;
  ThreadPool pool(2);
  auto src = *FeatureSource::FromTensor(x, true);
  SelectReport rep;
  auto r = Select(src, o, pool, nullptr, nullptr, &rep);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GE(r->size(), 250u);  // ~380 candidates remain
  ExpectApart(x, *r, labeled, 0.95);
  std::set<int64_t> lab(labeled.begin(), labeled.end());
  for (const auto& p : *r) EXPECT_FALSE(lab.count(p.index));
  EXPECT_GT(rep.dedup_pairs, 300);
  EXPECT_GT(rep.dedup_left_out, 300);
  EXPECT_EQ(rep.dedup_rounds, 1);  // the exact search found every pair
}

INSTANTIATE_TEST_SUITE_P(All, DedupPerStrategy, ::testing::ValuesIn([] {
                           std::vector<std::string> v;
                           for (const auto& s : StrategyNames())
                             if (s != "updp") v.push_back(s);  // needs a prompt
                           return v;
                         }()));

TEST(Dedup, WithoutItPicksDoIncludeDuplicates) {
  torch::Tensor x = WithPlantedDuplicates(400, 8, 16, 400, 0.02, 4);
  SelectOptions o;
  o.strategy = "random";
  o.budget = 300;
  auto r = Select(x, o);
  ASSERT_TRUE(r.ok());
  torch::Tensor u = Unit(x);
  std::vector<int64_t> rows;
  for (const auto& p : *r) rows.push_back(p.index);
  torch::Tensor pr = u.index_select(0, torch::tensor(rows));
  EXPECT_GE(pr.mm(pr.t()).triu(1).max().item<float>(), 0.95f);
}

// Two blobs of 100 rows (around e0 and e1) and rows 200 and 201, a near-duplicate pair
// straddling them: with 2 cells and 1 probe per row the search misses that pair.
torch::Tensor StraddlingPair() {
  torch::manual_seed(5);
  const int64_t d = 8;
  torch::Tensor e = torch::eye(d);
  torch::Tensor a = e[0].unsqueeze(0) + 0.4 * torch::randn({100, d});
  torch::Tensor b = e[1].unsqueeze(0) + 0.4 * torch::randn({100, d});
  torch::Tensor u = (1.05 * e[0] + e[1] + 0.1 * e[2]).unsqueeze(0);
  torch::Tensor v = (e[0] + 1.05 * e[1] - 0.1 * e[2]).unsqueeze(0);
  return torch::cat({a, b, u, v}, 0);
}

TEST(Dedup, AMissedPairIsCaughtByTheExactCheck) {
  // Two blobs (cells) and one near-duplicate pair straddling them: with one cell
  // probed per row the search misses the pair; the check of the picks catches it.
  torch::Tensor x = StraddlingPair();
  ASSERT_GE(Unit(x)[200].dot(Unit(x)[201]).item<float>(), 0.95f);
  DuplicateParameters p;
  p.threshold = 0.95;
  p.exact_max_rows = 0;
  p.cells = 2;
  p.probes = 1;
  ThreadPool pool(1);
  auto src = *FeatureSource::FromTensor(x, true);
  auto pairs = FindSimilarPairs(src, p, pool);
  ASSERT_TRUE(pairs.ok());
  ASSERT_EQ(AsSet(*pairs).count({200, 201}), 0u) << "the set-up needs the pair to be missed";
  SelectOptions o;
  o.strategy = "random";
  o.budget = 202;  // everything that may be picked
  o.dedup = p;
  SelectReport rep;
  auto r = Select(src, o, pool, nullptr, nullptr, &rep);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectApart(x, *r, {}, 0.95);
  EXPECT_GE(rep.dedup_rounds, 2);
  EXPECT_EQ(static_cast<int64_t>(r->size()), 202 - rep.dedup_left_out - rep.dedup_dropped);
}

TEST(Dedup, WithOneRoundTheOffendersAreDropped) {
  // The set-up of AMissedPairIsCaughtByTheExactCheck, with no second run allowed.
  torch::Tensor x = StraddlingPair();
  SelectOptions o;
  o.strategy = "random";
  o.budget = 202;
  o.dedup.threshold = 0.95;
  o.dedup.exact_max_rows = 0;
  o.dedup.cells = 2;
  o.dedup.probes = 1;
  o.dedup_rounds = 1;
  ThreadPool pool(1);
  auto src = *FeatureSource::FromTensor(x, true);
  SelectReport rep;
  auto r = Select(src, o, pool, nullptr, nullptr, &rep);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(rep.dedup_rounds, 1);
  EXPECT_GE(rep.dedup_dropped, 1);
  ExpectApart(x, *r, {}, 0.95);
}

TEST(Dedup, KCenterNeverStartsOnALeftOutRow) {
  // No labeled rows: kcenter starts from the row nearest the mean. Row 41 is exactly
  // the mean direction, so it is that row, but it is a near copy of row 40 (slightly
  // off that direction), so dedup leaves it out: kcenter must start elsewhere.
  torch::manual_seed(6);
  torch::Tensor rows = Unit(torch::randn({40, 8}));
  torch::Tensor dir = Unit(rows.mean(0, true));
  torch::Tensor x = torch::cat({rows, Unit(dir + 0.02 * torch::randn({1, 8})), dir}, 0);
  torch::Tensor mean = Unit(x).mean(0, true);
  ASSERT_EQ((Unit(x) - mean).pow(2).sum(1).argmin().item<int64_t>(), 41);
  SelectOptions o;
  o.strategy = "kcenter";
  o.budget = 5;
  o.dedup.threshold = 0.99;
  SelectReport rep;
  ThreadPool pool(1);
  auto src = *FeatureSource::FromTensor(x, true);
  auto r = Select(src, o, pool, nullptr, nullptr, &rep);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 5u);
  EXPECT_EQ(rep.dedup_left_out, 1);
  for (const auto& p : *r) EXPECT_NE(p.index, 41);
}

TEST(Dedup, RejectsABadThreshold) {
  SelectOptions o;
  o.strategy = "random";
  o.budget = 3;
  o.dedup.threshold = 1.5;
  auto r = Select(torch::randn({10, 4}), o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("dedup"), std::string::npos);
}

}  // namespace
}  // namespace updp::select
