// The selection report's map: nearest-pick clusters and the 2-D PCA projection.
#include "server/select/pick_map.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "server/select/select.h"

namespace updp::select {
namespace {

// `sizes[c]` rows around centre c (orthogonal directions), in blocks by centre.
torch::Tensor Blobs(const std::vector<int64_t>& sizes, int64_t d, uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<torch::Tensor> parts;
  for (size_t c = 0; c < sizes.size(); ++c) {
    torch::Tensor centre = torch::zeros({1, d});
    centre[0][static_cast<int64_t>(c)] = 1;
    parts.push_back(centre + 0.05 * torch::randn({sizes[c], d}));
  }
  return torch::cat(parts, 0);
}

PickMap Map(const torch::Tensor& x, const std::vector<Pick>& picks, PickMapOptions o = {}) {
  ThreadPool pool(2);
  auto src = FeatureSource::FromTensor(x, true);
  EXPECT_TRUE(src.ok());
  auto m = ComputePickMap(*src, picks, o, pool);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *m : PickMap{};
}

TEST(PickMapTest, RowsJoinTheClusterOfTheirNearestPick) {
  const std::vector<int64_t> sizes{30, 50, 20};
  const torch::Tensor x = Blobs(sizes, 8, 1);
  // One pick in each blob, with the strategy's cluster ids 7, 3, 5; a second pick in
  // the middle blob sharing id 3.
  const std::vector<Pick> picks{{0, 7, 1.0}, {30, 3, 1.0}, {80, 5, 1.0}, {31, 3, 0.5}};
  const PickMap m = Map(x, picks);
  ASSERT_EQ(m.clusters.size(), 3u);
  std::map<int64_t, MapCluster> by_id;
  for (const auto& c : m.clusters) by_id[c.id] = c;
  EXPECT_EQ(by_id[7].size, 30);
  EXPECT_EQ(by_id[3].size, 50);
  EXPECT_EQ(by_id[5].size, 20);
  EXPECT_EQ(by_id[7].picks, 1);
  EXPECT_EQ(by_id[3].picks, 2);
  EXPECT_EQ(by_id[5].picks, 1);
  EXPECT_EQ(m.pick_cluster, (std::vector<int64_t>{7, 3, 5, 3}));
}

TEST(PickMapTest, PicksWithoutClusterAreTheirOwnAfterTheStrategysIds) {
  const torch::Tensor x = Blobs({10, 10, 10}, 8, 2);
  const std::vector<Pick> picks{{5, -1, 0}, {15, 0, 0}, {25, -1, 0}};
  const PickMap m = Map(x, picks);
  EXPECT_EQ(m.pick_cluster, (std::vector<int64_t>{1, 0, 2}));
  int64_t size = 0, npicks = 0;
  for (const auto& c : m.clusters) {
    EXPECT_EQ(c.size, 10) << c.id;
    size += c.size;
    npicks += c.picks;
  }
  EXPECT_EQ(size, 30);
  EXPECT_EQ(npicks, 3);
}

TEST(PickMapTest, EveryPickOnTheMapAndOtherPointsCapped) {
  const torch::Tensor x = torch::randn({3000, 16});
  SelectOptions so;
  so.strategy = "kmeans";
  so.budget = 40;
  auto picks = Select(x, so);
  ASSERT_TRUE(picks.ok()) << picks.status();
  PickMapOptions o;
  o.pca_sample = 1000;
  o.max_other_points = 200;
  const PickMap m = Map(x, *picks, o);
  EXPECT_EQ(m.sample_rows, 1000);
  ASSERT_EQ(m.points.size(), 40u + 200u);
  std::set<int64_t> rows;
  for (size_t i = 0; i < 40; ++i) {
    EXPECT_EQ(m.points[i].pick, static_cast<int64_t>(i));
    EXPECT_EQ(m.points[i].row, (*picks)[i].index);
    EXPECT_EQ(m.points[i].cluster, m.pick_cluster[i]);
  }
  for (const auto& p : m.points) rows.insert(p.row);
  EXPECT_EQ(rows.size(), m.points.size());  // no row twice
  int64_t total = 0;
  for (const auto& c : m.clusters) total += c.size;
  EXPECT_EQ(total, 3000);
}

TEST(PickMapTest, FirstAxisFollowsTheLargestSpread) {
  // Points along a line in direction u, with little noise: the first axis is u (up to
  // sign, fixed so its largest coordinate is positive), the order along it preserved.
  torch::manual_seed(4);
  const int64_t n = 200, d = 6;
  torch::Tensor t = torch::linspace(-1, 1, n).unsqueeze(1);
  torch::Tensor u = torch::tensor({0.0f, 0.6f, 0.0f, 0.8f, 0.0f, 0.0f}).unsqueeze(0);
  // Offset so that normalisation keeps the line (nearly) straight: rows near e0.
  torch::Tensor base = torch::zeros({1, d});
  base[0][0] = 10;
  torch::Tensor x = base + t * u + 0.001 * torch::randn({n, d});
  PickMapOptions o;
  o.normalize = false;
  const PickMap m = Map(x, {{0, -1, 0}, {n - 1, -1, 0}}, o);
  EXPECT_GT(m.explained[0], 0.99);
  // Pick 0 is t = -1, pick 1 is t = +1: opposite ends of the first axis, and the
  // axis' sign puts the larger u coordinate (0.8) positive, so t = +1 is on the right.
  EXPECT_LT(m.points[0].x, 0);
  EXPECT_GT(m.points[1].x, 0);
  EXPECT_NEAR(m.points[1].x - m.points[0].x, 2.0, 0.05);
}

TEST(PickMapTest, RefusesNoPicksAndStopsWhenCancelled) {
  ThreadPool pool(2);
  auto src = FeatureSource::FromTensor(torch::randn({100, 4}), true);
  ASSERT_TRUE(src.ok());
  EXPECT_EQ(ComputePickMap(*src, {}, {}, pool).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ComputePickMap(*src, {{100, -1, 0}}, {}, pool).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ComputePickMap(*src, {{1, -1, 0}}, {}, pool, [] { return true; }).status().code(),
            absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace updp::select
