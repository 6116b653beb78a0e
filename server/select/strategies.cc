#include "server/select/strategies.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <queue>
#include <random>
#include <thread>
#include <unordered_set>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace updp::select {
namespace {

// Row chunk for distance blocks: [kChunk x K] floats stay small enough to be reused
// from the heap instead of being mmapped (and page-faulted) afresh per chunk.
constexpr int64_t kChunk = 4096;
constexpr float kInf = std::numeric_limits<float>::infinity();

struct Ctx {
  const SelectOptions& opt;
  const ProgressFn& progress;
  const CancelledFn& cancelled;
  void Report(const std::string& phase, double f) const {
    if (progress) progress(phase, f);
  }
  bool Cancelled() const { return cancelled && cancelled(); }
};

// Squared Euclidean distances between rows of a [n,D] and b [m,D] (float32):
// |a|^2 + |b|^2 - 2 a.b with a single [n,m] buffer (addmm, then in-place ops).
torch::Tensor SqDist(const torch::Tensor& a, const torch::Tensor& b) {
  torch::Tensor bb = b.pow(2).sum(1).unsqueeze(0);
  torch::Tensor d = torch::addmm(bb, a, b.t(), /*beta=*/1.0, /*alpha=*/-2.0);
  d.add_(a.pow(2).sum(1, true));
  return d.clamp_min_(0.0);
}

std::vector<int64_t> RandomSample(int64_t n, int64_t k, std::mt19937_64& rng) {
  if (k >= n) {
    std::vector<int64_t> all(n);
    std::iota(all.begin(), all.end(), 0);
    return all;
  }
  // Floyd's algorithm: k distinct values without materialising a permutation of n.
  std::unordered_set<int64_t> chosen;
  std::vector<int64_t> out;
  out.reserve(k);
  for (int64_t j = n - k; j < n; ++j) {
    int64_t t = std::uniform_int_distribution<int64_t>(0, j)(rng);
    if (!chosen.insert(t).second) {
      chosen.insert(j);
      out.push_back(j);
    } else {
      out.push_back(t);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

torch::Tensor Rows(const torch::Tensor& x, const std::vector<int64_t>& idx) {
  return x.index_select(0, torch::tensor(idx, torch::kLong));
}

// Greedy k-means++ seeding on `x` (already a sample): each step draws
// 2 + ln(k) candidates by D^2 weight and keeps the one that lowers the potential
// most (as scikit-learn does); plain k-means++ often puts two seeds in one cluster.
torch::Tensor KMeansPlusPlus(const torch::Tensor& x, int64_t k, std::mt19937_64& rng) {
  const int64_t n = x.size(0);
  const int trials = 2 + static_cast<int>(std::log(static_cast<double>(k)));
  torch::Tensor xx = x.pow(2).sum(1, true);  // [n,1], reused by every step
  auto dist_to = [&](const std::vector<int64_t>& rows) {
    torch::Tensor c = Rows(x, rows);
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
        cand.push_back(std::min<int64_t>(n - 1, std::upper_bound(cum.begin(), cum.end(), r) - cum.begin()));
      }
    }
    torch::Tensor nd = torch::minimum(d.unsqueeze(1), dist_to(cand));  // [n,trials]
    int64_t best = nd.sum(0).argmin().item<int64_t>();
    centers.push_back(cand[best]);
    d = nd.select(1, best).contiguous();
  }
  return Rows(x, centers).clone();
}

absl::Status CheckFinite(const torch::Tensor& x) {
  for (int64_t b = 0; b < x.size(0); b += kChunk) {
    torch::Tensor c = x.narrow(0, b, std::min(kChunk, x.size(0) - b));
    torch::Tensor bad = torch::logical_not(torch::isfinite(c)).any(1);
    if (bad.any().item<bool>()) {
      int64_t row = b + bad.nonzero()[0][0].item<int64_t>();
      return absl::InvalidArgumentError(
          absl::StrCat("features: row ", row, " contains NaN or Inf"));
    }
  }
  return absl::OkStatus();
}

// For every centroid, the nearest rows not excluded, resolving collisions so that
// each centroid gets a distinct row. Returns (row, sqdist) per centroid; -1 when none.
std::vector<std::pair<int64_t, float>> NearestDistinct(const torch::Tensor& x,
                                                       const torch::Tensor& centroids,
                                                       const std::vector<char>& excluded) {
  const int64_t k = centroids.size(0), n = x.size(0);
  const int64_t top = std::min<int64_t>(n, 8);
  // Per centroid, keep the `top` best (dist,row) candidates over all chunks.
  std::vector<std::vector<std::pair<float, int64_t>>> best(k);
  for (int64_t b = 0; b < n; b += kChunk) {
    const int64_t len = std::min(kChunk, n - b);
    torch::Tensor d = SqDist(x.narrow(0, b, len), centroids);  // [len,k]
    for (int64_t r = 0; r < len; ++r) {
      if (excluded[b + r]) d[r].fill_(kInf);
    }
    auto t = d.topk(std::min<int64_t>(top, len), 0, /*largest=*/false);
    torch::Tensor vals = std::get<0>(t).t().contiguous(), idx = std::get<1>(t).t().contiguous();
    auto va = vals.accessor<float, 2>();
    auto ia = idx.accessor<int64_t, 2>();
    for (int64_t c = 0; c < k; ++c) {
      auto& bc = best[c];
      for (int64_t j = 0; j < vals.size(1); ++j) {
        if (std::isinf(va[c][j])) continue;
        bc.emplace_back(va[c][j], b + ia[c][j]);
      }
      std::sort(bc.begin(), bc.end());
      if (static_cast<int64_t>(bc.size()) > top) bc.resize(top);
    }
  }
  // Greedy by closeness: the globally closest (centroid,row) pairs claim first.
  std::vector<std::tuple<float, int64_t, int64_t>> pairs;
  for (int64_t c = 0; c < k; ++c) {
    for (auto& [dist, row] : best[c]) pairs.emplace_back(dist, c, row);
  }
  std::sort(pairs.begin(), pairs.end());
  std::vector<std::pair<int64_t, float>> out(k, {-1, kInf});
  std::unordered_set<int64_t> used;
  for (auto& [dist, c, row] : pairs) {
    if (out[c].first >= 0 || used.count(row)) continue;
    out[c] = {row, dist};
    used.insert(row);
  }
  return out;
}

// Tops up `picks` with random unused, unlabeled rows until `want` picks.
void FillRandom(std::vector<Pick>& picks, int64_t want, const std::vector<char>& excluded,
                int64_t n, std::mt19937_64& rng) {
  if (static_cast<int64_t>(picks.size()) >= want) return;
  std::vector<char> used(excluded);
  for (auto& p : picks) used[p.index] = 1;
  std::vector<int64_t> free;
  for (int64_t i = 0; i < n; ++i) {
    if (!used[i]) free.push_back(i);
  }
  std::shuffle(free.begin(), free.end(), rng);
  for (int64_t i = 0; static_cast<int64_t>(picks.size()) < want && i < (int64_t)free.size(); ++i) {
    picks.push_back({free[i], -1, 0.0});
  }
}

std::vector<Pick> RunRandom(int64_t n, int64_t want, const std::vector<char>& excluded,
                            std::mt19937_64& rng) {
  std::vector<Pick> picks;
  FillRandom(picks, want, excluded, n, rng);
  return picks;
}

std::vector<Pick> RunKMeans(const torch::Tensor& x, int64_t want, const std::vector<char>& excluded,
                            const Ctx& ctx, std::mt19937_64& rng) {
  ctx.Report("kmeans", 0.0);
  torch::Tensor c = KMeansCentroids(x, want, rng(), ctx.opt.kmeans_iterations,
                                    ctx.opt.kmeans_points_per_centroid, ctx.cancelled);
  ctx.Report("nearest", 0.7);
  auto nearest = NearestDistinct(x, c, excluded);
  std::vector<Pick> picks;
  for (int64_t k = 0; k < static_cast<int64_t>(nearest.size()); ++k) {
    if (nearest[k].first < 0) continue;
    // score: cosine similarity to the centroid for unit vectors (1 - d^2/2).
    picks.push_back({nearest[k].first, k, 1.0 - nearest[k].second / 2.0});
  }
  FillRandom(picks, want, excluded, x.size(0), rng);
  return picks;
}

// One fused pass of greedy k-center: min-distance update against centre `c`
// (squared distance |x|^2 + |c|^2 - 2 x.c) and the farthest non-excluded row.
struct Farthest {
  float dist = -1.0f;
  int64_t index = -1;
};

float Dot(const float* a, const float* b, int64_t d) {
  float s = 0;
  for (int64_t k = 0; k < d; ++k) s += a[k] * b[k];
  return s;
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) float DotAvx2(const float* a, const float* b, int64_t d) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= d; k += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), _mm256_loadu_ps(b + k + 8), s1);
  }
  s0 = _mm256_add_ps(s0, s1);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
  h = _mm_hadd_ps(h, h);
  h = _mm_hadd_ps(h, h);
  float s = _mm_cvtss_f32(h);
  for (; k < d; ++k) s += a[k] * b[k];
  return s;
}
#endif

using DotFn = float (*)(const float*, const float*, int64_t);

DotFn BestDot() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return DotAvx2;
#endif
  return Dot;
}

class KCenterState {
 public:
  KCenterState(const torch::Tensor& x, const std::vector<char>& excluded)
      : x_(x), excluded_(excluded), n_(x.size(0)), d_(x.size(1)), mind_(n_, kInf),
        norms_(n_), dot_(BestDot()) {
    const float* X = x_.data_ptr<float>();
    for (int64_t i = 0; i < n_; ++i) norms_[i] = dot_(X + i * d_, X + i * d_, d_);
    threads_ = std::max(1u, std::min(8u, std::thread::hardware_concurrency()));
  }
  // Lowers the min distances with centre row `c`; returns the farthest row.
  Farthest Add(int64_t c) {
    const float* X = x_.data_ptr<float>();
    std::vector<float> cv(X + c * d_, X + (c + 1) * d_);
    const float cn = norms_[c];
    std::vector<Farthest> part(threads_);
    auto work = [&](int t) {
      const int64_t lo = n_ * t / threads_, hi = n_ * (t + 1) / threads_;
      Farthest f;
      for (int64_t i = lo; i < hi; ++i) {
        const float dist = std::max(0.0f, norms_[i] + cn - 2.0f * dot_(X + i * d_, cv.data(), d_));
        if (dist < mind_[i]) mind_[i] = dist;
        if (!excluded_[i] && mind_[i] > f.dist) f = {mind_[i], i};
      }
      part[t] = f;
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads_; ++t) pool.emplace_back(work, t);
    work(0);
    for (auto& th : pool) th.join();
    Farthest best;
    for (const auto& f : part) {
      if (f.dist > best.dist) best = f;
    }
    return best;
  }
  // Initialises min distances against many centres at once (GEMM, chunked).
  Farthest AddMany(const std::vector<int64_t>& rows) {
    auto [assign, dist] = AssignNearest(x_, Rows(x_, rows));
    auto da = dist.accessor<float, 1>();
    Farthest best;
    for (int64_t i = 0; i < n_; ++i) {
      mind_[i] = std::min(mind_[i], da[i]);
      if (!excluded_[i] && mind_[i] > best.dist) best = {mind_[i], i};
    }
    return best;
  }

 private:
  torch::Tensor x_;
  const std::vector<char>& excluded_;
  int64_t n_, d_;
  std::vector<float> mind_, norms_;
  DotFn dot_;
  int threads_ = 1;
};

// Greedy k-center (core-set): repeatedly add the point farthest from all centres.
// Exact; one fused pass over the data per pick.
std::vector<Pick> RunKCenter(const torch::Tensor& x, int64_t want,
                             const std::vector<char>& excluded, const Ctx& ctx) {
  const int64_t n = x.size(0);
  KCenterState st(x, excluded);
  std::vector<Pick> picks;
  std::vector<int64_t> labeled;
  for (int64_t i = 0; i < n; ++i) {
    if (excluded[i]) labeled.push_back(i);
  }
  Farthest next;
  if (!labeled.empty()) {
    next = st.AddMany(labeled);  // the new picks complement the labeled set
  } else {
    // Start from the item nearest the mean.
    int64_t start = std::get<1>(AssignNearest(x, x.mean(0, true))).argmin().item<int64_t>();
    picks.push_back({start, 0, 0.0});
    next = st.Add(start);
  }
  while (static_cast<int64_t>(picks.size()) < want) {
    if (picks.size() % 16 == 0) {
      if (ctx.Cancelled()) return {};
      ctx.Report("kcenter", static_cast<double>(picks.size()) / want);
    }
    if (next.index < 0 || next.dist <= 0.0f) break;  // the rest duplicates a centre
    const int64_t pick = next.index;
    // Score: the coverage radius this pick closes (distance to the nearest centre).
    picks.push_back({pick, static_cast<int64_t>(picks.size()), std::sqrt(next.dist)});
    next = st.Add(pick);
  }
  return picks;
}

// Mean distance of each row of `q` to its k nearest rows of `ref` (excluding
// itself when q and ref share rows: zero distances to self are skipped once).
torch::Tensor MeanKnnDistance(const torch::Tensor& q, const torch::Tensor& ref, int k,
                              bool self_included) {
  const int64_t n = q.size(0);
  const int64_t kk = std::min<int64_t>(ref.size(0), k + (self_included ? 1 : 0));
  torch::Tensor out = torch::empty({n});
  for (int64_t b = 0; b < n; b += 4096) {
    const int64_t len = std::min<int64_t>(4096, n - b);
    torch::Tensor d = SqDist(q.narrow(0, b, len), ref).sqrt_();
    torch::Tensor top = std::get<0>(d.topk(kk, 1, /*largest=*/false));
    if (self_included) top = top.narrow(1, 1, kk - 1);
    out.narrow(0, b, len).copy_(top.numel() == 0 ? torch::zeros({len}) : top.mean(1));
  }
  return out;
}

// Candidates of one cluster and their inverse mean distance to their k nearest
// cluster members: all members when the cluster is small, else a random subset of
// `cap` candidates (neighbours still searched among all members).
std::pair<std::vector<int64_t>, torch::Tensor> ClusterDensity(const torch::Tensor& x,
                                                             const std::vector<int64_t>& mem,
                                                             int knn, int cap,
                                                             std::mt19937_64& rng) {
  torch::Tensor xs = Rows(x, mem);
  std::vector<int64_t> cand_pos;
  if (static_cast<int64_t>(mem.size()) <= cap) {
    cand_pos.resize(mem.size());
    std::iota(cand_pos.begin(), cand_pos.end(), 0);
  } else {
    cand_pos = RandomSample(static_cast<int64_t>(mem.size()), cap, rng);
  }
  torch::Tensor q = xs.index_select(0, torch::tensor(cand_pos, torch::kLong));
  torch::Tensor dens = 1.0 / (MeanKnnDistance(q, xs, knn, /*self_included=*/true) + 1e-8);
  std::vector<int64_t> rows;
  rows.reserve(cand_pos.size());
  for (int64_t p : cand_pos) rows.push_back(mem[p]);
  return {rows, dens};
}

std::vector<Pick> RunTypiClust(const torch::Tensor& x, int64_t want,
                               const std::vector<char>& excluded, int64_t n_labeled,
                               const Ctx& ctx, std::mt19937_64& rng) {
  const int64_t n = x.size(0);
  const int64_t k = std::min<int64_t>({want + n_labeled, ctx.opt.typiclust_max_clusters, n});
  ctx.Report("kmeans", 0.0);
  torch::Tensor c = KMeansCentroids(x, k, rng(), ctx.opt.kmeans_iterations,
                                    ctx.opt.kmeans_points_per_centroid, ctx.cancelled);
  torch::Tensor assign = AssignNearest(x, c).first;
  auto a = assign.accessor<int64_t, 1>();
  std::vector<std::vector<int64_t>> members(k);
  std::vector<char> has_labeled(k, 0);
  for (int64_t i = 0; i < n; ++i) {
    members[a[i]].push_back(i);
    if (excluded[i]) has_labeled[a[i]] = 1;
  }
  std::vector<int64_t> order(k);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t p, int64_t q) {
    if (has_labeled[p] != has_labeled[q]) return has_labeled[p] < has_labeled[q];
    return members[p].size() > members[q].size();
  });
  ctx.Report("typicality", 0.6);
  std::vector<Pick> picks;
  std::vector<char> used(excluded);
  for (int64_t r = 0; r < k && static_cast<int64_t>(picks.size()) < want; ++r) {
    const int64_t cl = order[r];
    auto& mem = members[cl];
    if (mem.empty()) continue;
    if (ctx.Cancelled()) return {};
    auto [cand, typ] = ClusterDensity(x, mem, ctx.opt.knn, ctx.opt.max_candidates_per_cluster, rng);
    auto ta = typ.accessor<float, 1>();
    int64_t best = -1;
    float bv = -1;
    for (size_t j = 0; j < cand.size(); ++j) {
      if (!used[cand[j]] && ta[j] > bv) {
        bv = ta[j];
        best = cand[j];
      }
    }
    if (best < 0) continue;
    used[best] = 1;
    picks.push_back({best, cl, bv});
  }
  FillRandom(picks, want, excluded, n, rng);
  return picks;
}

std::vector<Pick> RunUsl(const torch::Tensor& x, int64_t want, const std::vector<char>& excluded,
                         const Ctx& ctx, std::mt19937_64& rng) {
  const int64_t n = x.size(0);
  const auto& o = ctx.opt;
  ctx.Report("kmeans", 0.0);
  torch::Tensor c = KMeansCentroids(x, want, rng(), o.kmeans_iterations,
                                    o.kmeans_points_per_centroid, ctx.cancelled);
  torch::Tensor assign = AssignNearest(x, c).first;
  if (ctx.Cancelled()) return {};
  ctx.Report("density", 0.3);
  torch::Tensor density;
  if (n <= o.density_exact_max) {
    density = 1.0 / (MeanKnnDistance(x, x, o.knn, /*self_included=*/true) + 1e-8);
  } else {
    // k-NN within the item's cluster: equal to the global k-NN whenever an item's
    // neighbours share its cluster, at N * N/K * D instead of N^2 * D (and at most
    // max_candidates_per_cluster candidates per cluster; the others are not candidates).
    density = torch::full({n}, -std::numeric_limits<float>::infinity());
    std::vector<std::vector<int64_t>> members(c.size(0));
    auto aa = assign.accessor<int64_t, 1>();
    for (int64_t i = 0; i < n; ++i) members[aa[i]].push_back(i);
    for (const auto& mem : members) {
      if (mem.empty()) continue;
      if (ctx.Cancelled()) return {};
      auto [cand, d] = ClusterDensity(x, mem, o.knn, o.max_candidates_per_cluster, rng);
      density.index_copy_(0, torch::tensor(cand, torch::kLong), d);
    }
  }
  auto a = assign.accessor<int64_t, 1>();
  auto rho = density.accessor<float, 1>();
  const int64_t k = c.size(0);
  std::vector<int64_t> pick(k, -1);
  for (int64_t i = 0; i < n; ++i) {
    if (excluded[i]) continue;
    int64_t cl = a[i];
    if (pick[cl] < 0 || rho[i] > rho[pick[cl]]) pick[cl] = i;
  }
  std::vector<double> score(k, 0.0);
  for (int it = 0; it < o.usl_iterations; ++it) {
    ctx.Report("regularise", 0.6 + 0.3 * it / std::max(1, o.usl_iterations));
    std::vector<int64_t> valid;
    for (int64_t cl = 0; cl < k; ++cl) {
      if (pick[cl] >= 0) valid.push_back(cl);
    }
    std::vector<int64_t> pick_rows;
    for (int64_t cl : valid) pick_rows.push_back(pick[cl]);
    torch::Tensor p = Rows(x, pick_rows);
    torch::Tensor pick_cluster = torch::tensor(valid, torch::kLong);
    std::vector<int64_t> next(pick);
    std::vector<double> best(k, -std::numeric_limits<double>::infinity());
    for (int64_t b = 0; b < n; b += kChunk) {
      if (ctx.Cancelled()) return {};
      const int64_t len = std::min(kChunk, n - b);
      torch::Tensor d = SqDist(x.narrow(0, b, len), p).sqrt_().clamp_min_(1e-6);
      // Picks of the item's own cluster do not count.
      torch::Tensor own = assign.narrow(0, b, len).unsqueeze(1).eq(pick_cluster.unsqueeze(0));
      d.masked_fill_(own, kInf);
      const int64_t m = std::min<int64_t>(o.usl_nearest_selected, d.size(1));
      torch::Tensor near = std::get<0>(d.topk(m, 1, false));
      torch::Tensor reg = (1.0 / near.pow(o.usl_alpha)).nan_to_num(0.0, 0.0, 0.0).sum(1);
      torch::Tensor val = density.narrow(0, b, len) - o.usl_lambda * reg;
      auto va = val.accessor<float, 1>();
      for (int64_t r = 0; r < len; ++r) {
        const int64_t i = b + r;
        if (excluded[i]) continue;
        if (va[r] > best[a[i]]) {
          best[a[i]] = va[r];
          next[a[i]] = i;
        }
      }
    }
    pick = next;
    score = best;
  }
  std::vector<Pick> picks;
  std::unordered_set<int64_t> seen;
  for (int64_t cl = 0; cl < k; ++cl) {
    if (pick[cl] >= 0 && seen.insert(pick[cl]).second) picks.push_back({pick[cl], cl, score[cl]});
  }
  FillRandom(picks, want, excluded, n, rng);
  return picks;
}

std::vector<Pick> RunActiveFt(const torch::Tensor& x, int64_t want,
                              const std::vector<char>& excluded, const Ctx& ctx,
                              std::mt19937_64& rng) {
  const int64_t n = x.size(0);
  const auto& o = ctx.opt;
  auto init = RandomSample(n, want, rng);
  torch::Tensor theta = Rows(x, init).clone().set_requires_grad(true);
  torch::optim::Adam adam({theta}, torch::optim::AdamOptions(o.activeft_lr));
  torch::Generator gen = at::detail::createCPUGenerator(rng());
  for (int step = 0; step < o.activeft_steps; ++step) {
    if (step % 10 == 0) {
      if (ctx.Cancelled()) return {};
      ctx.Report("optimise", 0.9 * step / o.activeft_steps);
    }
    torch::Tensor batch = x;
    if (n > o.activeft_batch) {
      batch = x.index_select(0, torch::randint(n, {o.activeft_batch}, gen, torch::kLong));
    }
    torch::Tensor t = torch::nn::functional::normalize(
        theta, torch::nn::functional::NormalizeFuncOptions().dim(1));
    torch::Tensor sim = torch::mm(batch, t.t());  // [b,B]
    auto mx = sim.max(1);
    torch::Tensor s = std::get<0>(mx) / o.activeft_tau;
    torch::Tensor c_idx = std::get<1>(mx);
    torch::Tensor td = t.detach();
    torch::Tensor cc = torch::mm(td, td.t()) / o.activeft_tau;  // [B,B]
    torch::Tensor denom_rest = cc.exp().sum(1).index_select(0, c_idx);
    torch::Tensor loss = -(s - torch::log(s.exp() + denom_rest)).mean();
    adam.zero_grad();
    loss.backward();
    adam.step();
  }
  torch::Tensor t = torch::nn::functional::normalize(
      theta.detach(), torch::nn::functional::NormalizeFuncOptions().dim(1));
  ctx.Report("nearest", 0.9);
  auto nearest = NearestDistinct(x, t, excluded);
  std::vector<Pick> picks;
  for (int64_t k = 0; k < static_cast<int64_t>(nearest.size()); ++k) {
    if (nearest[k].first >= 0) picks.push_back({nearest[k].first, k, 1.0 - nearest[k].second / 2});
  }
  FillRandom(picks, want, excluded, n, rng);
  return picks;
}

std::vector<Pick> RunProbCover(const torch::Tensor& x, int64_t want,
                               const std::vector<char>& excluded, const Ctx& ctx,
                               std::mt19937_64& rng) {
  const int64_t n = x.size(0);
  const auto& o = ctx.opt;
  // Work on a sample when N is large (documented approximation); labeled rows always in.
  std::vector<int64_t> idx = RandomSample(n, std::min<int64_t>(n, o.probcover_max_points), rng);
  {
    std::unordered_set<int64_t> in(idx.begin(), idx.end());
    for (int64_t i = 0; i < n; ++i) {
      if (excluded[i] && !in.count(i)) idx.push_back(i);
    }
  }
  const int64_t m = static_cast<int64_t>(idx.size());
  torch::Tensor xs = Rows(x, idx);
  ctx.Report("delta", 0.0);
  // delta: largest radius whose ball purity w.r.t. k-means pseudo-labels (K = budget)
  // stays >= target, i.e. the (1 - target) quantile of the distance to the nearest
  // point with another pseudo-label.
  const int64_t pseudo = o.probcover_clusters > 0 ? o.probcover_clusters : want;
  torch::Tensor c = KMeansCentroids(xs, std::min<int64_t>(pseudo, m), rng(), o.kmeans_iterations,
                                    o.kmeans_points_per_centroid, ctx.cancelled);
  torch::Tensor lab = AssignNearest(xs, c).first;
  torch::Tensor other = torch::empty({m});
  for (int64_t b = 0; b < m; b += 4096) {
    const int64_t len = std::min<int64_t>(4096, m - b);
    torch::Tensor d = SqDist(xs.narrow(0, b, len), xs).sqrt_();
    d.masked_fill_(lab.narrow(0, b, len).unsqueeze(1).eq(lab.unsqueeze(0)), kInf);
    other.narrow(0, b, len).copy_(std::get<0>(d.min(1)));
  }
  torch::Tensor finite = other.masked_select(torch::isfinite(other));
  double delta = finite.numel() == 0
                     ? 1.0
                     : torch::quantile(finite, 1.0 - o.probcover_purity).item<double>();
  delta = std::max(delta, 1e-6);
  if (ctx.Cancelled()) return {};
  ctx.Report("graph", 0.4);
  std::vector<std::vector<int32_t>> adj(m);  // i -> points within delta (incl. itself)
  for (int64_t b = 0; b < m; b += 4096) {
    const int64_t len = std::min<int64_t>(4096, m - b);
    torch::Tensor d = SqDist(xs.narrow(0, b, len), xs);
    torch::Tensor nz = (d < delta * delta).nonzero();
    auto na = nz.accessor<int64_t, 2>();
    for (int64_t e = 0; e < nz.size(0); ++e) adj[b + na[e][0]].push_back(static_cast<int32_t>(na[e][1]));
  }
  std::vector<char> covered(m, 0);
  std::vector<int64_t> degree(m);
  for (int64_t i = 0; i < m; ++i) degree[i] = static_cast<int64_t>(adj[i].size());
  // Reverse edges to update degrees when points become covered.
  std::vector<std::vector<int32_t>> radj(m);
  for (int64_t i = 0; i < m; ++i) {
    for (int32_t j : adj[i]) radj[j].push_back(static_cast<int32_t>(i));
  }
  auto cover = [&](int64_t i) {
    for (int32_t j : adj[i]) {
      if (covered[j]) continue;
      covered[j] = 1;
      for (int32_t p : radj[j]) --degree[p];
    }
  };
  std::vector<char> ex_s(m, 0);
  for (int64_t s = 0; s < m; ++s) {
    if (excluded[idx[s]]) {
      ex_s[s] = 1;
      cover(s);
    }
  }
  std::vector<Pick> picks;
  std::vector<char> used(ex_s);
  while (static_cast<int64_t>(picks.size()) < want) {
    int64_t best = -1, bd = 0;
    for (int64_t i = 0; i < m; ++i) {
      if (!used[i] && degree[i] > bd) {
        bd = degree[i];
        best = i;
      }
    }
    if (best < 0) break;  // everything covered: the rest is filled at random
    used[best] = 1;
    picks.push_back({idx[best], static_cast<int64_t>(picks.size()), static_cast<double>(bd)});
    cover(best);
  }
  FillRandom(picks, want, excluded, n, rng);
  return picks;
}

}  // namespace

const std::vector<std::string>& StrategyNames() {
  static const std::vector<std::string> kNames = {"random", "kmeans",   "kcenter",  "typiclust",
                                                  "usl",    "activeft", "probcover"};
  return kNames;
}

std::pair<torch::Tensor, torch::Tensor> AssignNearest(const torch::Tensor& x,
                                                      const torch::Tensor& centroids) {
  const int64_t n = x.size(0);
  torch::Tensor assign = torch::empty({n}, torch::kLong), dist = torch::empty({n});
  // argmin_c |x - c|^2 = argmin_c (|c|^2 - 2 x.c); |x|^2 is added to the minimum only.
  torch::Tensor cc = centroids.pow(2).sum(1).unsqueeze(0);
  torch::Tensor ct = centroids.t().contiguous();
  torch::Tensor buf = torch::empty({std::min(kChunk, n), centroids.size(0)});
  for (int64_t b = 0; b < n; b += kChunk) {
    const int64_t len = std::min(kChunk, n - b);
    torch::Tensor xb = x.narrow(0, b, len).to(torch::kFloat32);
    torch::Tensor s = buf.narrow(0, 0, len);
    torch::addmm_out(s, cc, xb, ct, /*beta=*/1.0, /*alpha=*/-2.0);
    auto m = s.min(1);
    dist.narrow(0, b, len).copy_((std::get<0>(m) + xb.pow(2).sum(1)).clamp_min_(0.0));
    assign.narrow(0, b, len).copy_(std::get<1>(m));
  }
  return {assign, dist};
}

torch::Tensor KMeansCentroids(const torch::Tensor& x, int64_t k, uint64_t seed, int iterations,
                              int points_per_centroid, const CancelledFn& cancelled) {
  std::mt19937_64 rng(seed);
  const int64_t n = x.size(0);
  k = std::min(k, n);
  torch::Tensor sample = Rows(x, RandomSample(n, std::min<int64_t>(n, k * points_per_centroid), rng))
                             .to(torch::kFloat32);
  // k-means++ seeding costs one pass per centre, so it runs on a smaller sample.
  torch::Tensor seed_set =
      sample.size(0) > 16 * k ? Rows(sample, RandomSample(sample.size(0), 16 * k, rng)) : sample;
  torch::Tensor c = KMeansPlusPlus(seed_set, k, rng);
  const int64_t s = sample.size(0);
  for (int it = 0; it < iterations; ++it) {
    if (cancelled && cancelled()) break;
    auto [assign, dist] = AssignNearest(sample, c);
    torch::Tensor sums = torch::zeros_like(c).index_add_(0, assign, sample);
    torch::Tensor counts = torch::zeros({k}).index_add_(0, assign, torch::ones({s}));
    torch::Tensor empty = counts.eq(0);
    c = torch::where(empty.unsqueeze(1), c, sums / counts.clamp_min(1).unsqueeze(1));
    // Re-seed empty clusters with the points farthest from their centres.
    int64_t n_empty = empty.sum().item<int64_t>();
    if (n_empty > 0) {
      torch::Tensor far = std::get<1>(dist.topk(std::min(n_empty, s)));
      torch::Tensor empties = empty.nonzero().squeeze(1);
      for (int64_t e = 0; e < far.size(0); ++e) c[empties[e].item<int64_t>()] = sample[far[e].item<int64_t>()];
    }
  }
  return c;
}

absl::StatusOr<std::vector<Pick>> Select(const torch::Tensor& features, const SelectOptions& opt,
                                         const ProgressFn& progress, const CancelledFn& cancelled) {
  const auto& names = StrategyNames();
  if (std::find(names.begin(), names.end(), opt.strategy) == names.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "strategy: unknown strategy '", opt.strategy,
        "' (expected random, kmeans, kcenter, typiclust, usl, activeft or probcover)"));
  }
  if (opt.budget <= 0) return absl::InvalidArgumentError("budget: must be > 0");
  if (features.dim() != 2) return absl::InvalidArgumentError("features: expected a [N, D] matrix");
  const int64_t n = features.size(0);
  std::vector<char> excluded(n, 0);
  int64_t n_labeled = 0;
  for (int64_t l : opt.labeled) {
    if (l < 0 || l >= n) {
      return absl::InvalidArgumentError(absl::StrCat("labeled: index ", l, " out of range"));
    }
    if (!excluded[l]) ++n_labeled;
    excluded[l] = 1;
  }
  const int64_t want = std::min(opt.budget, n - n_labeled);
  if (want <= 0) return std::vector<Pick>{};
  torch::NoGradGuard no_grad;
  torch::Tensor x = features.to(torch::kFloat32).contiguous();
  if (auto s = CheckFinite(x); !s.ok()) return s;
  if (opt.normalize) {
    // Normalise in place when the conversion above already copied (float16 input), so
    // the matrix exists once in float32; otherwise leave the caller's tensor alone.
    const bool owned = !x.is_same(features) && x.data_ptr() != features.data_ptr();
    torch::Tensor norms = x.norm(2, 1, true).clamp_min_(1e-12);
    x = owned ? x.div_(norms) : x / norms;
  }
  std::mt19937_64 rng(opt.seed);
  Ctx ctx{opt, progress, cancelled};
  std::vector<Pick> picks;
  if (opt.strategy == "random") {
    picks = RunRandom(n, want, excluded, rng);
  } else if (opt.strategy == "kmeans") {
    picks = RunKMeans(x, want, excluded, ctx, rng);
  } else if (opt.strategy == "kcenter") {
    picks = RunKCenter(x, want, excluded, ctx);
    FillRandom(picks, want, excluded, n, rng);
  } else if (opt.strategy == "typiclust") {
    picks = RunTypiClust(x, want, excluded, n_labeled, ctx, rng);
  } else if (opt.strategy == "usl") {
    picks = RunUsl(x, want, excluded, ctx, rng);
  } else if (opt.strategy == "activeft") {
    torch::AutoGradMode enable(true);
    picks = RunActiveFt(x, want, excluded, ctx, rng);
  } else {
    picks = RunProbCover(x, want, excluded, ctx, rng);
  }
  if (ctx.Cancelled()) return absl::CancelledError("selection cancelled");
  ctx.Report("done", 1.0);
  return picks;
}

}  // namespace updp::select
