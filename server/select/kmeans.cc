#include "server/select/kmeans.h"

#include <chrono>
#include <cmath>

#include "server/select/kernels.h"
#include "server/select/select.h"

namespace updp::select {
namespace {

// Greedy k-means++ seeding on the rows of `x` (a sample): each step draws 2 + ln(k)
// candidates by D^2 weight and keeps the one that lowers the potential most (as
// scikit-learn does); plain k-means++ often puts two seeds in one cluster.
torch::Tensor KMeansPlusPlus(const torch::Tensor& x, int64_t k, std::mt19937_64& rng) {
  const int64_t n = x.size(0);
  const int trials = 2 + static_cast<int>(std::log(static_cast<double>(k)));
  const torch::Tensor xx = x.pow(2).sum(1, true);
  auto dist_to = [&](const std::vector<int64_t>& rows) {
    torch::Tensor c = x.index_select(0, torch::tensor(rows, torch::kLong));
    torch::Tensor d = torch::addmm(c.pow(2).sum(1).unsqueeze(0), x, c.t(), 1.0, -2.0);
    return d.add_(xx).clamp_min_(0.0);  // [n, rows]
  };
  std::vector<int64_t> centers{std::uniform_int_distribution<int64_t>(0, n - 1)(rng)};
  torch::Tensor d = dist_to(centers).squeeze(1).contiguous();
  std::vector<double> cum(n);
  for (int64_t c = 1; c < k; ++c) {
    const float* dp = d.data_ptr<float>();
    double total = 0;
    for (int64_t i = 0; i < n; ++i) cum[i] = (total += dp[i]);
    std::vector<int64_t> cand;
    for (int t = 0; t < trials; ++t) {
      if (total <= 0.0) {
        cand.push_back(std::uniform_int_distribution<int64_t>(0, n - 1)(rng));
      } else {
        double r = std::uniform_real_distribution<double>(0.0, total)(rng);
        cand.push_back(
            std::min<int64_t>(n - 1, std::upper_bound(cum.begin(), cum.end(), r) - cum.begin()));
      }
    }
    torch::Tensor nd = torch::minimum(d.unsqueeze(1), dist_to(cand));  // [n, trials]
    const int64_t best = nd.sum(0).argmin().item<int64_t>();
    centers.push_back(cand[best]);
    d = nd.select(1, best).contiguous();
  }
  return x.index_select(0, torch::tensor(centers, torch::kLong)).clone();
}

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

KMeansResult TrainKMeans(const FeatureSource& x, int64_t k, const KMeansParameters& p,
                         uint64_t seed, ThreadPool& pool, const CancelledFn& cancelled) {
  torch::NoGradGuard no_grad;
  const auto t0 = std::chrono::steady_clock::now();
  std::mt19937_64 rng(seed);
  const int64_t n = x.rows();
  k = std::min(k, n);
  KMeansResult res;
  res.full = static_cast<double>(n) * k * x.dim() <= p.full_max_work;
  // The rows Lloyd runs on: all of them (streamed) in full mode, else a sample held
  // in memory.
  torch::Tensor sample;
  FeatureSource train = x;
  if (!res.full) {
    const int64_t m = std::min<int64_t>(n, k * p.max_points_per_centroid);
    sample = x.Gather(RandomSample(n, m, rng), &pool);
    train = *FeatureSource::FromTensor(sample, /*normalize=*/false);
  }
  const int64_t init_n =
      res.full ? std::min<int64_t>(n, std::max<int64_t>(p.full_init_max_points, k))
               : std::min<int64_t>(train.rows(), k * p.init_points_per_centroid);
  torch::Tensor init_rows = train.Gather(RandomSample(train.rows(), init_n, rng), &pool);
  torch::Tensor c = KMeansPlusPlus(init_rows, k, rng);
  const int iterations = res.full ? p.max_iterations : p.niter;
  double last = -1;
  for (int it = 0; it < iterations; ++it) {
    ScanRequest req;
    req.accumulate = true;
    req.assign = true;  // the distances pick the re-seeds of empty clusters
    ScanResult s = NearestScan(train, c, req, pool, cancelled);
    if (s.cancelled) {
      res.cancelled = true;
      break;
    }
    torch::Tensor counts = torch::tensor(s.counts, torch::kLong).to(torch::kFloat64);
    torch::Tensor empty = counts.eq(0);
    torch::Tensor moved = (s.sums / counts.clamp_min(1).unsqueeze(1)).to(torch::kFloat32);
    c = torch::where(empty.unsqueeze(1), c, moved);
    KMeansIterationStats st;
    st.iteration = it + 1;
    st.objective = s.inertia;
    st.points = train.rows();
    // Empty clusters take the rows farthest from their centres.
    const int64_t n_empty = empty.sum().item<int64_t>();
    if (n_empty > 0) {
      torch::Tensor dist = torch::from_blob(s.dist.data(), {static_cast<int64_t>(s.dist.size())},
                                            torch::kFloat32);
      torch::Tensor far = std::get<1>(dist.topk(std::min<int64_t>(n_empty, train.rows())));
      torch::Tensor empties = empty.nonzero().squeeze(1);
      std::vector<int64_t> rows(far.data_ptr<int64_t>(), far.data_ptr<int64_t>() + far.size(0));
      torch::Tensor fresh = train.Gather(rows);
      for (int64_t e = 0; e < far.size(0); ++e) c[empties[e].item<int64_t>()] = fresh[e];
      st.empty_reseeded = static_cast<int>(far.size(0));
    }
    st.seconds = Seconds(t0);
    res.stats.push_back(st);
    if (res.full && last >= 0 && n_empty == 0 &&
        std::abs(last - s.inertia) <= p.tolerance * std::max(last, 1e-30)) {
      res.converged = true;
      break;
    }
    last = s.inertia;
  }
  res.centroids = c;
  return res;
}

std::vector<Pick> RunKMeans(const StrategyContext& ctx) {
  ctx.Report("kmeans", 0.0);
  KMeansResult km =
      TrainKMeans(ctx.x, ctx.want, ctx.opt.kmeans, ctx.rng(), ctx.pool, ctx.cancelled);
  if (km.cancelled) return {};
  ctx.Report("nearest", 0.7);
  // One pass: for every centroid its nearest unlabeled rows, then distinct ones.
  ScanRequest req;
  req.top_per_centroid = 8;
  req.excluded = &ctx.excluded;
  ScanResult s = NearestScan(ctx.x, km.centroids, req, ctx.pool, ctx.cancelled);
  if (s.cancelled) return {};
  auto nearest = MatchDistinct(s.top);
  std::vector<Pick> picks;
  for (int64_t c = 0; c < static_cast<int64_t>(nearest.size()); ++c) {
    if (nearest[c].first < 0) continue;
    // Score: cosine similarity to the centroid for unit vectors (1 - d^2/2).
    picks.push_back({nearest[c].first, c, 1.0 - nearest[c].second / 2.0});
  }
  return picks;
}

}  // namespace updp::select
