// The selection library's parts: the feature source over chunked parts, the thread
// pool, the shared kernels, k-means modes, lazy k-center, ActiveFT's gradient, and
// the streamed path against the in-memory one.
#include <gtest/gtest.h>

#include <atomic>
#include <limits>
#include <random>
#include <set>

#include "server/model/safetensors.h"
#include "server/select/activeft.h"
#include "server/select/density.h"
#include "server/select/kcenter.h"
#include "server/select/kernels.h"
#include "server/select/kmeans.h"
#include "server/select/names.h"
#include "server/select/registry.h"
#include "server/select/select.h"
#include "tests/model/scratch_dir.h"

namespace updp::select {
namespace {

torch::Tensor Clustered(int64_t n, int64_t d, int64_t k, uint64_t seed) {
  torch::manual_seed(seed);
  torch::Tensor c = torch::nn::functional::normalize(
      torch::randn({k, d}), torch::nn::functional::NormalizeFuncOptions().dim(1));
  torch::Tensor lab = torch::randint(k, {n}, torch::kLong);
  return c.index_select(0, lab) + 0.15 * torch::randn({n, d});
}

std::vector<int64_t> Indices(const std::vector<Pick>& picks) {
  std::vector<int64_t> out;
  for (const auto& p : picks) out.push_back(p.index);
  return out;
}

TEST(Registry, EveryNameHasAnImplementationAndTheServerListMatches) {
  ASSERT_EQ(Registry().size(), StrategyNameList().size());
  std::set<std::string> names;
  for (const auto& e : Registry()) {
    EXPECT_NE(e.run, nullptr);
    names.insert(e.name->name);
    EXPECT_EQ(FindStrategy(e.name->name), e.run);
  }
  EXPECT_EQ(names.size(), Registry().size());
  // Position i is the strategy named i: compare with the strategies' own entry points.
  EXPECT_EQ(FindStrategy("kmeans"), &RunKMeans);
  EXPECT_EQ(FindStrategy("kcenter"), &RunKCenter);
  EXPECT_EQ(FindStrategy("typiclust"), &RunTypiClust);
  EXPECT_EQ(FindStrategy("usl"), &RunUsl);
  EXPECT_EQ(FindStrategy("activeft"), &RunActiveFt);
  EXPECT_EQ(FindStrategy("probcover"), &RunProbCover);
  EXPECT_EQ(FindStrategy("updp"), &RunUpdp);
  EXPECT_EQ(FindStrategy("magic"), nullptr);
  EXPECT_TRUE(IsStrategy("updp"));
  EXPECT_FALSE(IsStrategy("UPDP"));
  EXPECT_NE(StrategyNamesText().find("probcover or updp"), std::string::npos);
}

TEST(ThreadPool, RunsEveryIndexOnceAndRethrows) {
  for (int threads : {1, 2, 5}) {
    ThreadPool pool(threads);
    std::vector<std::atomic<int>> hits(1000);
    pool.ParallelFor(1000, [&](int64_t i) { hits[i]++; });
    for (auto& h : hits) EXPECT_EQ(h.load(), 1);
    std::atomic<int64_t> covered{0};
    pool.ParallelRanges(12345, [&](int64_t lo, int64_t hi) { covered += hi - lo; });
    EXPECT_EQ(covered.load(), 12345);
    EXPECT_THROW(pool.ParallelFor(10,
                                  [](int64_t i) {
                                    if (i == 7) throw std::runtime_error("seven");
                                  }),
                 std::runtime_error);
  }
}

TEST(ThreadPool, SharedByConcurrentCallers) {
  ThreadPool pool(3);
  std::atomic<int64_t> sum{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&] { pool.ParallelFor(500, [&](int64_t i) { sum += i; }); });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(sum.load(), 4 * (499 * 500 / 2));
}

TEST(FeatureSource, PartsReadAsOneMatrix) {
  torch::Tensor x = torch::randn({10, 4});
  auto s = FeatureSource::Create({x.narrow(0, 0, 3), x.narrow(0, 3, 0), x.narrow(0, 3, 7)},
                                 /*normalize=*/false);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->rows(), 10);
  EXPECT_TRUE(torch::equal(s->Block(1, 6), x.narrow(0, 1, 6)));  // spans two parts
  EXPECT_TRUE(torch::equal(s->Gather({9, 0, 4}), x.index_select(0, torch::tensor({9, 0, 4}))));
  std::vector<std::pair<int64_t, int64_t>> blocks = s->BlockRanges();
  ASSERT_EQ(blocks.size(), 2u);  // never across a part
  EXPECT_EQ(blocks[1].first, 3);
  EXPECT_EQ(blocks[1].second, 7);
  auto n = s->WithNormalize(true);
  EXPECT_NEAR(n.Block(0, 10).norm(2, 1).sub(1).abs().max().item<float>(), 0, 1e-5);
  std::vector<float> row(4);
  n.Row(5, row.data());
  EXPECT_TRUE(torch::allclose(torch::tensor(row), n.Block(5, 1)[0], 1e-6, 1e-6));
  // Bad parts are named.
  EXPECT_FALSE(FeatureSource::Create({x, torch::randn({2, 5})}, true).ok());
  EXPECT_FALSE(FeatureSource::Create({x, x.to(torch::kFloat16)}, true).ok());
  EXPECT_FALSE(FeatureSource::Create({torch::ones({2, 2}, torch::kLong)}, true).ok());
}

TEST(FeatureSource, FirstNonFiniteRowInEveryDtypeAndPart) {
  ThreadPool pool(2);
  for (auto dt : {torch::kFloat16, torch::kBFloat16, torch::kFloat32, torch::kFloat64}) {
    torch::Tensor a = torch::randn({6000, 24}).to(dt), b = torch::randn({7000, 24}).to(dt);
    auto clean = *FeatureSource::Create({a, b}, true);
    EXPECT_EQ(clean.FirstNonFiniteRow(&pool), -1) << dt;
    b[3000][5] = std::numeric_limits<float>::infinity();   // global row 9000
    b[100][23] = std::numeric_limits<float>::quiet_NaN();  // global row 6100
    a[5999][0] = -std::numeric_limits<float>::infinity();  // global row 5999
    auto bad = *FeatureSource::Create({a, b}, true);
    EXPECT_EQ(bad.FirstNonFiniteRow(&pool), 5999) << dt;
    EXPECT_EQ(bad.FirstNonFiniteRow(), 5999) << dt;
    a[5999][0] = 0;
    EXPECT_EQ(FeatureSource::Create({a, b}, true)->FirstNonFiniteRow(&pool), 6100) << dt;
    EXPECT_NE(CheckFinite(*FeatureSource::Create({a, b}, true), &pool).message().find("row 6100"),
              std::string::npos);
  }
  // float64 values beyond float32's range would read as infinities.
  torch::Tensor d = torch::zeros({10, 4}, torch::kFloat64);
  d[7][1] = 1e300;
  EXPECT_EQ(FeatureSource::FromTensor(d, false)->FirstNonFiniteRow(), 7);
}

TEST(Kernels, SmallestKIsTheSortedPrefix) {
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<float> u(0, 1);
  for (int64_t n : {1, 7, 8, 9, 100, 1001}) {
    for (int64_t k : {1, 5, 21}) {
      std::vector<float> v(n);
      for (auto& e : v) e = u(rng);
      if (n == 1001) std::sort(v.rbegin(), v.rend());  // descending: the worst order
      if (n == 100) v.assign(n, 0.5f);                 // all tied
      std::vector<float> out(std::min(n, k));
      SmallestK(v.data(), n, k, out.data());
      std::vector<float> sorted(v);
      std::sort(sorted.begin(), sorted.end());
      sorted.resize(out.size());
      EXPECT_EQ(out, sorted) << n << " " << k;
    }
  }
}

TEST(Kernels, NearestScanMatchesBruteForce) {
  torch::Tensor x = torch::randn({5000, 8});
  torch::Tensor c = torch::randn({13, 8});
  auto src = *FeatureSource::Create({x.narrow(0, 0, 4500), x.narrow(0, 4500, 500)}, false);
  std::vector<char> excluded(5000, 0);
  for (int i = 0; i < 5000; i += 7) excluded[i] = 1;
  ThreadPool pool(2);
  ScanRequest req;
  req.assign = true;
  req.top_per_centroid = 3;
  req.excluded = &excluded;
  req.accumulate = true;
  ScanResult r = NearestScan(src, c, req, pool);
  torch::Tensor d = SqDist(x, c);
  auto [dmin, amin] = d.min(1);
  for (int64_t i = 0; i < 5000; ++i) {
    ASSERT_EQ(r.assign[i], amin[i].item<int64_t>()) << i;
    ASSERT_NEAR(r.dist[i], dmin[i].item<float>(), 1e-3);
  }
  EXPECT_NEAR(r.inertia, dmin.sum().item<double>(), 1e-2);
  torch::Tensor masked = d.clone();
  for (int64_t i = 0; i < 5000; ++i) {
    if (excluded[i]) masked[i].fill_(kInf);
  }
  auto top = std::get<1>(masked.topk(3, 0, /*largest=*/false));
  for (int64_t k = 0; k < 13; ++k) {
    ASSERT_EQ(r.top[k].size(), 3u);
    for (int j = 0; j < 3; ++j) EXPECT_EQ(r.top[k][j].second, top[j][k].item<int64_t>());
  }
  int64_t total = 0;
  for (int64_t n : r.counts) total += n;
  EXPECT_EQ(total, 5000);
  torch::Tensor want =
      torch::zeros({13, 8}, torch::kFloat64).index_add_(0, amin, x.to(torch::kFloat64));
  // Each block's sums are float (then added in double): float rounding, while one row
  // in the wrong cluster would move a sum by ~1.
  EXPECT_TRUE(torch::allclose(r.sums, want, 1e-5, 1e-4));
}

TEST(Kernels, MeanKnnDistanceAndCandidateCap) {
  torch::Tensor x = torch::randn({300, 5});
  ThreadPool pool(2);
  torch::Tensor got = MeanKnnDistance(x, x, 4, /*self_included=*/true, pool);
  torch::Tensor d = SqDist(x, x).sqrt();
  torch::Tensor want = std::get<0>(d.topk(5, 1, false)).narrow(1, 1, 4).mean(1);
  EXPECT_TRUE(torch::allclose(got, want, 1e-4, 1e-4));
  Groups g = GroupBy({0, 1, 1, 2, 2, 2}, 3);
  EXPECT_EQ(g.Members(2), (std::vector<int64_t>{3, 4, 5}));
  EXPECT_EQ(CandidateCap(g, 10, 1e9, 1), 10);
  // sum_c min(size, cap) * size <= 8 holds for cap = 2 (1 + 4 + 6 = 11 > 8?) -> cap 1.
  EXPECT_EQ(CandidateCap(g, 10, 8, 1), 1);
  EXPECT_EQ(CandidateCap(g, 10, 11, 1), 2);
}

TEST(KMeans, FullModeRunsToConvergenceSampledModeKeepsNiter) {
  torch::Tensor x = Clustered(2000, 16, 10, 3);
  auto src = *FeatureSource::FromTensor(x, true);
  ThreadPool pool(2);
  KMeansParameters p;
  KMeansResult full = TrainKMeans(src, 10, p, 1, pool);
  EXPECT_TRUE(full.full);
  EXPECT_TRUE(full.converged);
  ASSERT_GE(full.stats.size(), 2u);
  for (size_t i = 1; i < full.stats.size(); ++i) {
    EXPECT_LE(full.stats[i].objective, full.stats[i - 1].objective * (1 + 1e-9));
    EXPECT_EQ(full.stats[i].points, 2000);
  }
  p.full_max_work = 0;  // forces the sampled mode
  p.max_points_per_centroid = 50;
  KMeansResult sampled = TrainKMeans(src, 10, p, 1, pool);
  EXPECT_FALSE(sampled.full);
  ASSERT_EQ(sampled.stats.size(), static_cast<size_t>(p.niter));
  EXPECT_EQ(sampled.stats[0].points, 500);
}

class KMeansChunks : public model::ScratchDirTest {};

TEST_F(KMeansChunks, StreamedChunksGiveTheSamePicksAsOneMatrix) {
  // float16 rows in three mapped chunk files versus the same rows as one tensor.
  torch::Tensor x = Clustered(9000, 32, 40, 5).to(torch::kFloat16);
  std::vector<torch::Tensor> parts;
  std::vector<std::shared_ptr<const model::SafetensorsFile>> files;
  int64_t at = 0;
  for (int64_t len : {4100, 3000, 1900}) {
    const std::string path = TmpPath("chunk" + std::to_string(at) + ".safetensors");
    ASSERT_TRUE(model::WriteSafetensors(path, {{"features", x.narrow(0, at, len)}}).ok());
    std::shared_ptr<const model::SafetensorsFile> f = *model::SafetensorsFile::Open(path);
    parts.push_back(*model::SafetensorsFile::MapTensor(f, "features"));
    at += len;
  }
  auto streamed = *FeatureSource::Create(parts, true);
  ThreadPool pool(2);
  for (bool full : {true, false}) {
    SelectOptions o;
    o.strategy = "kmeans";
    o.budget = 40;
    o.seed = 11;
    o.labeled = {5, 6, 7};
    if (!full) o.kmeans.full_max_work = 0;
    auto a = Select(streamed, o, pool);
    auto b = Select(x, o);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(Indices(*a), Indices(*b)) << (full ? "full" : "sampled");
  }
}

TEST(KMeans, BoundsKeepTheAssignmentsAndSearchFewerRows) {
  torch::Tensor x = Clustered(20000, 32, 40, 4);
  auto src = *FeatureSource::FromTensor(x, true);
  ThreadPool pool(2);
  KMeansParameters p;
  p.full_max_work = 0;  // sampled mode: 40 * 256 rows
  p.niter = 12;
  KMeansResult with = TrainKMeans(src, 40, p, 3, pool);
  p.bounds = false;
  KMeansResult without = TrainKMeans(src, 40, p, 3, pool);
  ASSERT_EQ(with.stats.size(), without.stats.size());
  EXPECT_TRUE(torch::allclose(with.centroids, without.centroids, 1e-5, 1e-6));
  int64_t searched = 0, points = 0;
  for (size_t i = 0; i < with.stats.size(); ++i) {
    EXPECT_NEAR(with.stats[i].objective, without.stats[i].objective,
                1e-4 * without.stats[i].objective)
        << i;
    EXPECT_EQ(without.stats[i].searched, without.stats[i].points);
    searched += with.stats[i].searched;
    points += with.stats[i].points;
  }
  EXPECT_EQ(with.stats[0].searched, with.stats[0].points);  // no bounds yet
  EXPECT_LT(searched, points / 2);
}

TEST(KCenter, LazyIsExactAndDoesLessWork) {
  torch::Tensor x = Clustered(6000, 16, 50, 8);
  auto src = *FeatureSource::FromTensor(x, true);
  ThreadPool pool(2);
  std::vector<char> excluded(6000, 0);
  for (int labeled : {0, 1}) {
    if (labeled) {
      for (int i = 0; i < 6000; i += 500) excluded[i] = 1;
    }
    SelectOptions o;
    std::mt19937_64 r1(1), r2(1);
    KCenterStats lazy_stats, full_stats;
    StrategyContext lazy{src,  o,  200,     excluded, excluded, labeled ? 12 : 0,
                         pool, r1, nullptr, nullptr};
    auto a = RunKCenterWithStats(lazy, &lazy_stats);
    SelectOptions full_opt;
    full_opt.kcenter.lazy = false;
    StrategyContext full{src,  full_opt, 200,     excluded, excluded, labeled ? 12 : 0,
                         pool, r2,       nullptr, nullptr};
    auto b = RunKCenterWithStats(full, &full_stats);
    ASSERT_EQ(a.size(), 200u);
    EXPECT_EQ(Indices(a), Indices(b));
    EXPECT_GE(full_stats.full_passes, 198);  // one per pick once a centre exists
    EXPECT_LT(lazy_stats.refreshed_rows, 6000 * 200 / 4);
    EXPECT_LT(lazy_stats.row_centre_products, full_stats.row_centre_products / 2);
    // Brute force: each pick is the farthest row from the earlier picks and labeled rows.
    torch::Tensor xn = src.Block(0, 6000);
    torch::Tensor mind = torch::full({6000}, kInf);
    for (int i = 0; i < 6000; ++i) {
      if (excluded[i]) mind = torch::minimum(mind, SqDist(xn, xn[i].unsqueeze(0)).squeeze(1));
    }
    for (size_t j = labeled ? 0 : 1; j < 20; ++j) {
      if (j > 0) {
        mind = torch::minimum(mind, SqDist(xn, xn[a[j - 1].index].unsqueeze(0)).squeeze(1));
      }
      torch::Tensor m = mind.clone();
      for (int i = 0; i < 6000; ++i) {
        if (excluded[i]) m[i] = -1;
      }
      EXPECT_NEAR(m[a[j].index].item<float>(), m.max().item<float>(), 1e-5) << j;
    }
  }
}

TEST(Usl, PrunedRegulariserPicksTheSameAsEvaluatingEveryRow) {
  torch::Tensor x = Clustered(5000, 16, 30, 9);
  for (int64_t exact_max : {int64_t{50000}, int64_t{100}}) {  // global and in-cluster density
    SelectOptions o;
    o.strategy = "usl";
    o.budget = 40;
    o.seed = 2;
    o.labeled = {1, 2, 3};
    o.usl.density_exact_max = exact_max;
    o.usl.iterations = 3;
    auto a = Select(x, o);
    o.usl.prune = false;
    auto b = Select(x, o);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(Indices(*a), Indices(*b));
  }
}

TEST(ActiveFt, GradientMatchesAutograd) {
  torch::manual_seed(4);
  torch::Tensor theta = torch::randn({7, 6});
  torch::Tensor x = torch::nn::functional::normalize(
      torch::randn({50, 6}), torch::nn::functional::NormalizeFuncOptions().dim(1));
  auto [loss, grad] = ActiveFtLossAndGrad(theta, x, 0.07);
  torch::Tensor th = theta.clone().set_requires_grad(true);
  torch::Tensor t =
      torch::nn::functional::normalize(th, torch::nn::functional::NormalizeFuncOptions().dim(1));
  torch::Tensor sim = torch::mm(x, t.t());
  auto mx = sim.max(1);
  torch::Tensor s = std::get<0>(mx) / 0.07;
  torch::Tensor td = t.detach();
  torch::Tensor rest = (torch::mm(td, td.t()) / 0.07).exp().sum(1).index_select(0, std::get<1>(mx));
  torch::Tensor l = -(s - torch::log(s.exp() + rest)).mean();
  l.backward();
  EXPECT_NEAR(loss, l.item<double>(), 1e-4);
  EXPECT_TRUE(torch::allclose(grad, th.grad(), 1e-4, 1e-5));
}

}  // namespace
}  // namespace updp::select
