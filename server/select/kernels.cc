#include "server/select/kernels.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_set>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "absl/strings/str_cat.h"

namespace updp::select {
namespace {

// Per-centroid lists of the `t` nearest rows seen so far, kept sorted; `thr` is the
// worst kept distance (infinity until a list is full), so most rows are rejected by
// one comparison.
struct TopLists {
  int64_t k = 0, t = 0;
  std::vector<float> d;
  std::vector<int64_t> row;
  std::vector<float> thr;
  TopLists(int64_t k_, int64_t t_)
      : k(k_), t(t_), d(k_ * t_, kInf), row(k_ * t_, -1), thr(k_, kInf) {}
  void Insert(int64_t c, float dist, int64_t r) {
    float* dc = d.data() + c * t;
    int64_t* rc = row.data() + c * t;
    int64_t p = t - 1;
    while (p > 0 && dc[p - 1] > dist) {
      dc[p] = dc[p - 1];
      rc[p] = rc[p - 1];
      --p;
    }
    dc[p] = dist;
    rc[p] = r;
    thr[c] = dc[t - 1];
  }
};

// Index of the first minimum of v[0..n) and the minimum itself.
int64_t Argmin(const float* v, int64_t n, float* min_out) {
  int64_t best = 0;
  float bv = v[0];
  for (int64_t c = 1; c < n; ++c) {
    if (v[c] < bv) {
      bv = v[c];
      best = c;
    }
  }
  *min_out = bv;
  return best;
}

// Offers (v[c] + add, row) to the lists of every centroid c whose threshold it beats.
void OfferRow(const float* v, int64_t n, float add, int64_t row, TopLists& tl) {
  const float* thr = tl.thr.data();
  for (int64_t c = 0; c < n; ++c) {
    const float dc = v[c] + add;
    if (dc < thr[c]) tl.Insert(c, std::max(0.0f, dc), row);
  }
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) int64_t ArgminAvx2(const float* v, int64_t n, float* min_out) {
  if (n < 16) return Argmin(v, n, min_out);
  __m256 best = _mm256_loadu_ps(v);
  __m256i bidx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i idx = bidx;
  const __m256i step = _mm256_set1_epi32(8);
  int64_t c = 8;
  for (; c + 8 <= n; c += 8) {
    idx = _mm256_add_epi32(idx, step);
    const __m256 x = _mm256_loadu_ps(v + c);
    const __m256 lt = _mm256_cmp_ps(x, best, _CMP_LT_OQ);  // strict: first index per lane
    best = _mm256_blendv_ps(best, x, lt);
    bidx = _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(bidx), _mm256_castsi256_ps(idx), lt));
  }
  alignas(32) float bv[8];
  alignas(32) int32_t bi[8];
  _mm256_store_ps(bv, best);
  _mm256_store_si256(reinterpret_cast<__m256i*>(bi), bidx);
  float m = bv[0];
  int64_t at = bi[0];
  for (int j = 1; j < 8; ++j) {  // the smallest value, then the smallest index with it
    if (bv[j] < m || (bv[j] == m && bi[j] < at)) {
      m = bv[j];
      at = bi[j];
    }
  }
  for (; c < n; ++c) {
    if (v[c] < m) {
      m = v[c];
      at = c;
    }
  }
  *min_out = m;
  return at;
}

__attribute__((target("avx2"))) void OfferRowAvx2(const float* v, int64_t n, float add,
                                                  int64_t row, TopLists& tl) {
  const float* thr = tl.thr.data();
  const __m256 a = _mm256_set1_ps(add);
  int64_t c = 0;
  for (; c + 8 <= n; c += 8) {
    const __m256 d = _mm256_add_ps(_mm256_loadu_ps(v + c), a);
    int mask = _mm256_movemask_ps(_mm256_cmp_ps(d, _mm256_loadu_ps(thr + c), _CMP_LT_OQ));
    while (mask) {  // lanes are distinct centroids: inserting one leaves the others valid
      const int j = __builtin_ctz(mask);
      mask &= mask - 1;
      tl.Insert(c + j, std::max(0.0f, v[c + j] + add), row);
    }
  }
  for (; c < n; ++c) {
    const float dc = v[c] + add;
    if (dc < thr[c]) tl.Insert(c, std::max(0.0f, dc), row);
  }
}
#endif

using ArgminFn = int64_t (*)(const float*, int64_t, float*);
using OfferFn = void (*)(const float*, int64_t, float, int64_t, TopLists&);

bool HasAvx2() {
#if defined(__x86_64__)
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
#else
  return false;
#endif
}

ArgminFn BestArgmin() {
#if defined(__x86_64__)
  if (HasAvx2()) return ArgminAvx2;
#endif
  return Argmin;
}

OfferFn BestOffer() {
#if defined(__x86_64__)
  if (HasAvx2()) return OfferRowAvx2;
#endif
  return OfferRow;
}

}  // namespace

namespace {

// Appends every v[i] <= bound to cand; eight values per compare.
__attribute__((target("avx2"))) void CollectAtMostAvx2(const float* v, int64_t n, float bound,
                                                       std::vector<float>& cand) {
  const __m256 b = _mm256_set1_ps(bound);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(v + i), b, _CMP_LE_OQ));
    while (mask != 0) {
      cand.push_back(v[i + __builtin_ctz(mask)]);
      mask &= mask - 1;
    }
  }
  for (; i < n; ++i) {
    if (v[i] <= bound) cand.push_back(v[i]);
  }
}

void CollectAtMost(const float* v, int64_t n, float bound, std::vector<float>& cand) {
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return CollectAtMostAvx2(v, n, bound, cand);
  for (int64_t i = 0; i < n; ++i) {
    if (v[i] <= bound) cand.push_back(v[i]);
  }
}

}  // namespace

void SmallestK(const float* v, int64_t n, int64_t k, float* out) {
  k = std::min(k, n);
  if (k <= 0) return;
  thread_local std::vector<float> cand;
  cand.clear();
  if (n < 4 * k) {
    cand.assign(v, v + n);
  } else {
    // Split v into k groups: the largest of the k group minima is an upper bound of
    // the k-th smallest value (k values are at most it), so only the values up to it
    // can be among the k smallest. Branch-free passes instead of a heap that
    // mispredicts on every insertion.
    float bound = -kInf;
    for (int64_t j = 0; j < k; ++j) {
      float m = kInf;
      for (int64_t i = j * n / k; i < (j + 1) * n / k; ++i) m = std::min(m, v[i]);
      bound = std::max(bound, m);
    }
    CollectAtMost(v, n, bound, cand);
  }
  if (static_cast<int64_t>(cand.size()) < k) {  // NaNs in v: no bound holds; sort all
    cand.assign(v, v + n);
    std::sort(cand.begin(), cand.end(), [](float a, float b) {
      return std::isnan(b) ? !std::isnan(a) : a < b;
    });
  } else {
    std::nth_element(cand.begin(), cand.begin() + (k - 1), cand.end());
  }
  std::copy(cand.begin(), cand.begin() + k, out);
  std::sort(out, out + k);
}

ScanResult NearestScan(const FeatureSource& x, const torch::Tensor& centroids,
                       const ScanRequest& req, ThreadPool& pool, const CancelledFn& cancelled) {
  torch::NoGradGuard no_grad;
  const int64_t n = x.rows(), k = centroids.size(0), d = x.dim();
  ScanResult out;
  if (req.assign) {
    out.assign.assign(n, 0);
    out.dist.assign(n, 0.0f);
  }
  if (req.second) out.dist2.assign(n, kInf);
  if (req.accumulate) {
    out.sums = torch::zeros({k, d}, torch::kFloat64);
    out.counts.assign(k, 0);
  }
  const torch::Tensor c32 = centroids.to(torch::kFloat32).contiguous();
  // argmin_c |x - c|^2 = argmin_c (|c|^2 - 2 x.c): one addmm per block, |x|^2 added
  // to the scalars that need it.
  const torch::Tensor cc = c32.pow(2).sum(1).unsqueeze(0);
  const torch::Tensor ct = c32.t().contiguous();
  const int parts = pool.threads();
  const int64_t top = req.top_per_centroid;
  std::vector<TopLists> tops;
  if (top > 0) tops.assign(parts, TopLists(k, top));
  // Distances are computed for 1,024 rows at a time: a [1024, K] block written by the
  // GEMM is still in cache when the scan reads it.
  constexpr int64_t kScanRows = 1024;
  torch::Tensor buf = torch::empty({kScanRows, k});
  const ArgminFn argmin = BestArgmin();
  const OfferFn offer = BestOffer();
  std::vector<int64_t> block_assign;
  std::vector<double> block_dist;
  torch::Tensor block_sums;
  if (req.accumulate) block_sums = torch::zeros({k, d});
  for (const auto& [begin, len] : x.BlockRanges()) {
    if (cancelled && cancelled()) {
      out.cancelled = true;
      return out;
    }
    const torch::Tensor xb = x.Block(begin, len);
    const torch::Tensor xx = xb.pow(2).sum(1).contiguous();
    const float* xp = xx.data_ptr<float>();
    block_assign.resize(len);
    block_dist.resize(len);
    for (int64_t sb = 0; sb < len; sb += kScanRows) {
      const int64_t sl = std::min(kScanRows, len - sb);
      torch::Tensor s = buf.narrow(0, 0, sl);
      torch::addmm_out(s, cc, xb.narrow(0, sb, sl), ct, /*beta=*/1.0, /*alpha=*/-2.0);
      float* sp = s.data_ptr<float>();
      const int64_t row0 = begin + sb;
      pool.ParallelFor(parts, [&](int64_t t) {
        for (int64_t r = sl * t / parts; r < sl * (t + 1) / parts; ++r) {
          float* row = sp + r * k;
          float bv;
          const int64_t best = argmin(row, k, &bv);
          block_assign[sb + r] = best;
          block_dist[sb + r] = std::max(0.0f, bv + xp[sb + r]);
          if (req.second && k > 1) {  // the minimum with the nearest masked out
            row[best] = kInf;
            float b2;
            argmin(row, k, &b2);
            row[best] = bv;
            out.dist2[row0 + r] = std::max(0.0f, b2 + xp[sb + r]);
          }
          if (top > 0 && !(req.excluded && (*req.excluded)[row0 + r])) {
            offer(row, k, xp[sb + r], row0 + r, tops[t]);
          }
        }
      });
    }
    for (int64_t r = 0; r < len; ++r) out.inertia += block_dist[r];  // fixed order
    if (req.assign) {
      for (int64_t r = 0; r < len; ++r) {
        out.assign[begin + r] = static_cast<int32_t>(block_assign[r]);
        out.dist[begin + r] = static_cast<float>(block_dist[r]);
      }
    }
    if (req.accumulate) {
      // A block's sums in float (at most 4,096 rows each), the running total in double:
      // one [K, D] conversion per block instead of one per row.
      block_sums.zero_().index_add_(0, torch::tensor(block_assign, torch::kLong), xb);
      out.sums.add_(block_sums);
      for (int64_t r = 0; r < len; ++r) ++out.counts[block_assign[r]];
    }
  }
  if (top > 0) {
    out.top.resize(k);
    for (int64_t c = 0; c < k; ++c) {
      auto& l = out.top[c];
      for (const auto& tl : tops) {
        for (int64_t j = 0; j < top; ++j) {
          if (tl.row[c * top + j] >= 0) l.emplace_back(tl.d[c * top + j], tl.row[c * top + j]);
        }
      }
      std::sort(l.begin(), l.end());
      if (static_cast<int64_t>(l.size()) > top) l.resize(top);
    }
  }
  return out;
}

std::vector<std::pair<int64_t, float>> MatchDistinct(
    const std::vector<std::vector<std::pair<float, int64_t>>>& top) {
  const int64_t k = static_cast<int64_t>(top.size());
  std::vector<std::tuple<float, int64_t, int64_t>> pairs;
  for (int64_t c = 0; c < k; ++c) {
    for (const auto& [dist, row] : top[c]) pairs.emplace_back(dist, c, row);
  }
  std::sort(pairs.begin(), pairs.end());
  std::vector<std::pair<int64_t, float>> out(k, {-1, kInf});
  std::unordered_set<int64_t> used;
  for (const auto& [dist, c, row] : pairs) {
    if (out[c].first >= 0 || used.count(row)) continue;
    out[c] = {row, dist};
    used.insert(row);
  }
  return out;
}

torch::Tensor SqDist(const torch::Tensor& a, const torch::Tensor& b) {
  torch::Tensor bb = b.pow(2).sum(1).unsqueeze(0);
  torch::Tensor d = torch::addmm(bb, a, b.t(), /*beta=*/1.0, /*alpha=*/-2.0);
  d.add_(a.pow(2).sum(1, true));
  return d.clamp_min_(0.0);
}

torch::Tensor MeanKnnDistance(const torch::Tensor& q, const torch::Tensor& ref, int k,
                              bool self_included, ThreadPool& pool) {
  const int64_t n = q.size(0), m = ref.size(0);
  const int64_t kk = std::min<int64_t>(m, k + (self_included ? 1 : 0));
  torch::Tensor out = torch::zeros({n});
  if (kk <= (self_included ? 1 : 0)) return out;
  float* o = out.data_ptr<float>();
  constexpr int64_t kRows = 1024;
  for (int64_t b = 0; b < n; b += kRows) {
    const int64_t len = std::min(kRows, n - b);
    const torch::Tensor dist = SqDist(q.narrow(0, b, len), ref).contiguous();
    const float* dp = dist.data_ptr<float>();
    // Per row the kk smallest (O(m) comparisons), instead of a sort.
    pool.ParallelRanges(len, [&](int64_t lo, int64_t hi) {
      std::vector<float> tmp(kk);
      for (int64_t r = lo; r < hi; ++r) {
        SmallestK(dp + r * m, m, kk, tmp.data());
        double sum = 0;
        float smallest = kInf;
        for (int64_t j = 0; j < kk; ++j) {
          sum += std::sqrt(tmp[j]);
          smallest = std::min(smallest, tmp[j]);
        }
        if (self_included) sum -= std::sqrt(smallest);
        o[b + r] = static_cast<float>(sum / (kk - (self_included ? 1 : 0)));
      }
    });
  }
  return out;
}

std::vector<int64_t> RandomSample(int64_t n, int64_t k, std::mt19937_64& rng) {
  if (k >= n) {
    std::vector<int64_t> all(n);
    std::iota(all.begin(), all.end(), 0);
    return all;
  }
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

absl::Status CheckFinite(const FeatureSource& x, ThreadPool* pool) {
  // Raw values: a NaN or Inf survives normalisation as NaN, so either reading works.
  const int64_t row = x.FirstNonFiniteRow(pool);
  if (row < 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("features: row ", row, " contains NaN or Inf"));
}

void FillRandom(std::vector<Pick>& picks, int64_t want, const std::vector<char>& excluded,
                std::mt19937_64& rng) {
  if (static_cast<int64_t>(picks.size()) >= want) return;
  const int64_t n = static_cast<int64_t>(excluded.size());
  std::vector<char> used(excluded);
  for (const auto& p : picks) used[p.index] = 1;
  // Rejection sampling while free rows are plentiful (O(want), no O(N) list); the
  // shuffled list of free rows otherwise.
  int64_t free_rows = 0;
  for (char u : used) free_rows += !u;
  const int64_t need = std::min<int64_t>(want - static_cast<int64_t>(picks.size()), free_rows);
  if (need <= 0) return;
  if (free_rows >= 4 * need) {
    std::uniform_int_distribution<int64_t> any(0, n - 1);
    for (int64_t got = 0; got < need;) {
      const int64_t r = any(rng);
      if (used[r]) continue;
      used[r] = 1;
      picks.push_back({r, -1, 0.0});
      ++got;
    }
    return;
  }
  std::vector<int64_t> free;
  free.reserve(free_rows);
  for (int64_t i = 0; i < n; ++i) {
    if (!used[i]) free.push_back(i);
  }
  std::shuffle(free.begin(), free.end(), rng);
  for (int64_t i = 0; i < need; ++i) picks.push_back({free[i], -1, 0.0});
}

namespace {
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
}  // namespace

DotFn BestDot() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return DotAvx2;
#endif
  return Dot;
}

}  // namespace updp::select
