#include "server/select/kmeans.h"

#include <chrono>
#include <cmath>
#include <memory>
#include <numeric>

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

// One Lloyd assignment of an in-memory float32 sample with Hamerly's bounds. `lower`
// holds each row's lower bound of its distance to every centroid but its own (< 0:
// unknown, search the row). Fills the result as NearestScan would with assign and
// accumulate (block sums in the same 4,096-row blocks and order, so the sums equal
// a full scan's when the assignments do).
class BoundedAssign {
 public:
  BoundedAssign(const torch::Tensor& sample, ThreadPool& pool)
      : x_(sample), m_(sample.size(0)), d_(sample.size(1)), a_(m_, 0), lower_(m_, -1.0f),
        dsq_(m_, 0.0f), xx_(m_), dot_(BestDot()), pool_(pool) {
    const float* xp = x_.data_ptr<float>();
    pool_.ParallelRanges(m_, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) xx_[i] = dot_(xp + i * d_, xp + i * d_, d_);
    });
  }

  // Returns false when cancelled.
  bool Assign(const torch::Tensor& centroids, ScanResult* out, int64_t* searched,
              const CancelledFn& cancelled) {
    const torch::Tensor c = centroids.contiguous();
    const int64_t k = c.size(0);
    const float* xp = x_.data_ptr<float>();
    const float* cp = c.data_ptr<float>();
    std::vector<float> cc(k);
    for (int64_t j = 0; j < k; ++j) cc[j] = dot_(cp + j * d_, cp + j * d_, d_);
    // Distances are at most 2 for unit rows; float error is far below the margin.
    constexpr float kMargin = 1e-3f;
    std::vector<char> search(m_, 0);
    pool_.ParallelRanges(m_, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        if (lower_[i] < 0) {
          search[i] = 1;
          continue;
        }
        const float* ca = cp + a_[i] * d_;
        const float dsq = std::max(0.0f, xx_[i] + cc[a_[i]] - 2.0f * dot_(xp + i * d_, ca, d_));
        if (std::sqrt(dsq) + kMargin < lower_[i]) {
          dsq_[i] = dsq;
        } else {
          search[i] = 1;
        }
      }
    });
    std::vector<int64_t> rows;
    for (int64_t i = 0; i < m_; ++i) {
      if (search[i]) rows.push_back(i);
    }
    if (static_cast<int64_t>(rows.size()) * 2 > m_) {  // all: cheaper than copying most rows
      rows.resize(m_);
      std::iota(rows.begin(), rows.end(), 0);
    }
    *searched = static_cast<int64_t>(rows.size());
    if (!rows.empty()) {
      const torch::Tensor xr = static_cast<int64_t>(rows.size()) == m_
                                   ? x_
                                   : x_.index_select(0, torch::tensor(rows, torch::kLong));
      ScanRequest req;
      req.assign = true;
      req.second = true;
      ScanResult s = NearestScan(*FeatureSource::FromTensor(xr, /*normalize=*/false), c, req,
                                 pool_, cancelled);
      if (s.cancelled) return false;
      for (size_t j = 0; j < rows.size(); ++j) {
        const int64_t i = rows[j];
        a_[i] = s.assign[j];
        dsq_[i] = s.dist[j];
        lower_[i] = std::sqrt(s.dist2[j]);
      }
    }
    out->assign = a_;
    out->dist = dsq_;
    out->counts.assign(k, 0);
    out->sums = torch::zeros({k, d_}, torch::kFloat64);
    out->inertia = 0;
    torch::Tensor block_sums = torch::zeros({k, d_});
    for (int64_t b = 0; b < m_; b += FeatureSource::kBlockRows) {
      const int64_t len = std::min(FeatureSource::kBlockRows, m_ - b);
      std::vector<int64_t> idx(a_.begin() + b, a_.begin() + b + len);
      block_sums.zero_().index_add_(0, torch::tensor(idx, torch::kLong), x_.narrow(0, b, len));
      out->sums.add_(block_sums);
      for (int64_t i = b; i < b + len; ++i) {
        ++out->counts[a_[i]];
        out->inertia += dsq_[i];
      }
    }
    return true;
  }

  // The centroids moved from `before` to `after`. A few centroids usually keep moving
  // while most have settled: the distances to the kMovers that moved most are
  // computed exactly (one [rows, kMovers] GEMM), and every bound drops by the largest
  // move among the others only.
  void Moved(const torch::Tensor& before, const torch::Tensor& after) {
    constexpr int64_t kMovers = 64;
    const int64_t k = after.size(0);
    const torch::Tensor drift = (after - before).norm(2, 1);
    const int64_t nd = std::min(k, kMovers);
    auto top = drift.topk(std::min(k, nd + 1));
    const float rest = nd < k ? std::get<0>(top)[nd].item<float>() : 0.0f;
    const torch::Tensor movers = std::get<1>(top).narrow(0, 0, nd).contiguous();
    const torch::Tensor cm = after.index_select(0, movers).contiguous();
    const torch::Tensor cmn = cm.pow(2).sum(1).unsqueeze(0);
    const int64_t* mv = movers.data_ptr<int64_t>();
    pool_.ParallelRanges(m_, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; b += FeatureSource::kBlockRows) {
        const int64_t len = std::min(FeatureSource::kBlockRows, hi - b);
        // [rows, movers] squared distances for one block, one GEMM.
        const torch::Tensor dq = torch::addmm(cmn, x_.narrow(0, b, len), cm.t(), 1.0, -2.0);
        const float* dp = dq.data_ptr<float>();
        for (int64_t i = b; i < b + len; ++i) {
          float l = lower_[i];
          if (l < 0) continue;
          l -= rest;
          for (int64_t j = 0; j < nd; ++j) {
            if (mv[j] == a_[i]) continue;
            const float dsq = std::max(0.0f, dp[(i - b) * nd + j] + xx_[i]);
            l = std::min(l, std::sqrt(dsq));
          }
          lower_[i] = l >= 0 ? l : -1.0f;
        }
      }
    });
  }

 private:
  torch::Tensor x_;
  const int64_t m_, d_;
  std::vector<int32_t> a_;
  std::vector<float> lower_, dsq_, xx_;
  DotFn dot_;
  ThreadPool& pool_;
};

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
  std::unique_ptr<BoundedAssign> bounded;
  if (!res.full && p.bounds) bounded = std::make_unique<BoundedAssign>(sample, pool);
  double last = -1;
  for (int it = 0; it < iterations; ++it) {
    ScanResult s;
    int64_t searched = train.rows();
    if (bounded) {
      if (!bounded->Assign(c, &s, &searched, cancelled)) {
        res.cancelled = true;
        break;
      }
    } else {
      ScanRequest req;
      req.accumulate = true;
      req.assign = true;  // the distances pick the re-seeds of empty clusters
      s = NearestScan(train, c, req, pool, cancelled);
      if (s.cancelled) {
        res.cancelled = true;
        break;
      }
    }
    const torch::Tensor before = c;
    torch::Tensor counts = torch::tensor(s.counts, torch::kLong).to(torch::kFloat64);
    torch::Tensor empty = counts.eq(0);
    torch::Tensor moved = (s.sums / counts.clamp_min(1).unsqueeze(1)).to(torch::kFloat32);
    c = torch::where(empty.unsqueeze(1), c, moved);
    KMeansIterationStats st;
    st.iteration = it + 1;
    st.objective = s.inertia;
    st.points = train.rows();
    st.searched = searched;

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
    if (bounded) bounded->Moved(before, c);
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
