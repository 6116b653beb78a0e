#include "server/select/select.h"
#include "server/select/names.h"

#include <gtest/gtest.h>

#include <set>

namespace updp::select {
namespace {

// `k` well-separated unit-norm blobs of `per` points each in `d` dimensions.
torch::Tensor Blobs(int k, int per, int d, torch::Tensor* labels, uint64_t seed = 0) {
  torch::manual_seed(seed);
  torch::Tensor centres = torch::nn::functional::normalize(
      torch::randn({k, d}), torch::nn::functional::NormalizeFuncOptions().dim(1));
  torch::Tensor x = centres.repeat_interleave(per, 0) + 0.03 * torch::randn({k * per, d});
  *labels = torch::arange(k).repeat_interleave(per);
  // Uneven order so that picks are not trivially positional.
  torch::Tensor perm = torch::randperm(k * per);
  *labels = labels->index_select(0, perm);
  return x.index_select(0, perm);
}

class PerStrategy : public ::testing::TestWithParam<std::string> {};

TEST_P(PerStrategy, ExactBudgetDistinctAndDeterministic) {
  torch::Tensor y;
  torch::Tensor x = Blobs(6, 40, 16, &y);
  for (int64_t budget : {1, 6, 25, 240, 500}) {
    SelectOptions o;
    o.strategy = GetParam();
    o.budget = budget;
    o.seed = 7;
    auto a = Select(x, o);
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(static_cast<int64_t>(a->size()), std::min<int64_t>(budget, 240));
    std::set<int64_t> s;
    for (auto& p : *a) s.insert(p.index);
    EXPECT_EQ(s.size(), a->size());
    auto b = Select(x, o);
    ASSERT_TRUE(b.ok());
    ASSERT_EQ(a->size(), b->size());
    for (size_t i = 0; i < a->size(); ++i) EXPECT_EQ((*a)[i].index, (*b)[i].index);
  }
}

TEST_P(PerStrategy, SkipsAlreadyLabeled) {
  torch::Tensor y;
  torch::Tensor x = Blobs(4, 30, 8, &y);
  SelectOptions o;
  o.strategy = GetParam();
  o.budget = 20;
  for (int64_t i = 0; i < 120; i += 3) o.labeled.push_back(i);
  auto r = Select(x, o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->size(), 20u);
  for (auto& p : *r) EXPECT_NE(p.index % 3, 0);
  // Everything but 5 labeled: exactly 5 picks.
  o.labeled.clear();
  for (int64_t i = 5; i < 120; ++i) o.labeled.push_back(i);
  r = Select(x, o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->size(), 5u);
}

TEST_P(PerStrategy, DuplicatePointsAndBadInput) {
  torch::Tensor x = torch::ones({50, 4});
  x.narrow(0, 25, 25).mul_(-1);
  SelectOptions o;
  o.strategy = GetParam();
  o.budget = 10;
  auto r = Select(x, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->size(), 10u);
  o.budget = 0;
  EXPECT_EQ(Select(x, o).status().code(), absl::StatusCode::kInvalidArgument);
  o.budget = 3;
  x[17][2] = std::numeric_limits<float>::quiet_NaN();
  auto bad = Select(x, o);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("row 17"), std::string::npos);
  x[17][2] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(Select(x, o).status().code(), absl::StatusCode::kInvalidArgument);
}

// Every registered name (the registry's own list, updp included: without a cluster
// head it runs the kmeans rule).
INSTANTIATE_TEST_SUITE_P(All, PerStrategy, ::testing::ValuesIn(StrategyNames()));

class Clustering : public ::testing::TestWithParam<std::string> {};

TEST_P(Clustering, OnePickPerBlob) {
  for (uint64_t seed : {0, 1, 2}) {
    torch::Tensor y;
    torch::Tensor x = Blobs(8, 50, 32, &y, seed);
    SelectOptions o;
    o.strategy = GetParam();
    o.budget = 8;
    o.seed = seed;
    auto r = Select(x, o);
    ASSERT_TRUE(r.ok());
    std::set<int64_t> blobs;
    for (auto& p : *r) blobs.insert(y[p.index].item<int64_t>());
    EXPECT_EQ(blobs.size(), 8u) << GetParam() << " seed " << seed;
  }
}

INSTANTIATE_TEST_SUITE_P(All, Clustering,
                         ::testing::Values("kmeans", "kcenter", "typiclust", "usl"));

TEST(Select, UnknownStrategyAndBadLabeled) {
  torch::Tensor x = torch::randn({10, 3});
  SelectOptions o;
  o.strategy = "magic";
  o.budget = 2;
  auto r = Select(x, o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("magic"), std::string::npos);
  o.strategy = "kmeans";
  o.labeled = {10};
  EXPECT_EQ(Select(x, o).status().code(), absl::StatusCode::kInvalidArgument);
  o.labeled.clear();
  o.strategy = "updp";
  o.updp.rule = "cluster-head";  // without a cluster head
  EXPECT_EQ(Select(x, o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Select, CancellationStops) {
  torch::Tensor x = torch::randn({2000, 8});
  SelectOptions o;
  o.strategy = "kcenter";
  o.budget = 500;
  int calls = 0;
  auto r = Select(x, o, nullptr, [&] { return ++calls > 3; });
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace updp::select
