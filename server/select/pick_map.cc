#include "server/select/pick_map.h"

#include <algorithm>
#include <map>
#include <random>

#include "absl/strings/str_cat.h"
#include "server/select/kernels.h"

namespace updp::select {
namespace {

// The top two principal axes [D, 2] (float64) of `s` [m, D] centred on `mean`, each
// signed so that its largest coordinate is positive (the same picture every run), and
// their shares of the variance.
torch::Tensor TopTwoAxes(const torch::Tensor& centred, double explained[2]) {
  const int64_t m = centred.size(0), d = centred.size(1);
  const torch::Tensor cov =
      centred.t().mm(centred) / static_cast<double>(std::max<int64_t>(1, m - 1));
  // The ATen op (torch::linalg::eigh's header is gone from LibTorch 2.x).
  auto [values, vectors] = torch::linalg_eigh(cov, "L");  // ascending
  const int64_t take = std::min<int64_t>(2, d);
  torch::Tensor axes = torch::zeros({d, 2}, torch::kFloat64);
  const double total = std::max(1e-30, values.sum().item<double>());
  for (int64_t a = 0; a < take; ++a) {
    torch::Tensor v = vectors.select(1, d - 1 - a);
    const int64_t at = v.abs().argmax().item<int64_t>();
    if (v[at].item<double>() < 0) v = -v;
    axes.select(1, a).copy_(v);
    explained[a] = std::max(0.0, values[d - 1 - a].item<double>()) / total;
  }
  return axes;
}

}  // namespace

absl::StatusOr<PickMap> ComputePickMap(const FeatureSource& source, const std::vector<Pick>& picks,
                                       const PickMapOptions& o, ThreadPool& pool,
                                       const CancelledFn& cancelled) {
  torch::NoGradGuard no_grad;
  const FeatureSource x = source.WithNormalize(o.normalize);
  const int64_t n = x.rows();
  if (picks.empty()) return absl::InvalidArgumentError("picks: none to map");
  std::vector<int64_t> pick_rows;
  std::vector<char> picked(n, 0);
  for (const Pick& p : picks) {
    if (p.index < 0 || p.index >= n) {
      return absl::InvalidArgumentError(absl::StrCat("picks: row ", p.index, " out of range"));
    }
    pick_rows.push_back(p.index);
    picked[p.index] = 1;
  }
  PickMap out;
  // Cluster ids: the strategy's; picks without one get their own after those.
  int64_t next_id = 0;
  for (const Pick& p : picks) next_id = std::max(next_id, p.cluster + 1);
  for (const Pick& p : picks) out.pick_cluster.push_back(p.cluster >= 0 ? p.cluster : next_id++);

  // Every row's nearest pick: one blocked pass (the k-means assignment kernel with the
  // picks as centroids; on unit vectors the nearest is the most cosine-similar).
  ScanRequest req;
  req.assign = true;
  const torch::Tensor centroids = x.Gather(pick_rows, &pool);
  ScanResult scan = NearestScan(x, centroids, req, pool, cancelled);
  if (scan.cancelled || (cancelled && cancelled())) return absl::CancelledError("cancelled");
  std::map<int64_t, MapCluster> clusters;
  for (size_t i = 0; i < picks.size(); ++i) {
    MapCluster& c = clusters[out.pick_cluster[i]];
    c.id = out.pick_cluster[i];
    ++c.picks;
  }
  for (int64_t r = 0; r < n; ++r) ++clusters[out.pick_cluster[scan.assign[r]]].size;
  for (auto& [id, c] : clusters) out.clusters.push_back(c);

  // PCA on a seeded random sample of rows.
  std::mt19937_64 rng(o.seed ^ 0x9e3779b97f4a7c15ULL);
  const std::vector<int64_t> sample =
      RandomSample(n, std::min<int64_t>(n, std::max<int64_t>(1, o.pca_sample)), rng);
  out.sample_rows = static_cast<int64_t>(sample.size());
  const torch::Tensor s = x.Gather(sample, &pool).to(torch::kFloat64);
  const torch::Tensor mean = s.mean(0, /*keepdim=*/true);
  const torch::Tensor axes = TopTwoAxes(s - mean, out.explained);
  if (cancelled && cancelled()) return absl::CancelledError("cancelled");

  // The points: every pick, then at most max_other_points other rows of the sample.
  std::vector<int64_t> others;
  for (int64_t r : sample) {
    if (!picked[r]) others.push_back(r);
  }
  if (static_cast<int64_t>(others.size()) > o.max_other_points) {
    std::vector<int64_t> keep;
    for (int64_t i : RandomSample(static_cast<int64_t>(others.size()),
                                  std::max<int64_t>(0, o.max_other_points), rng)) {
      keep.push_back(others[i]);
    }
    others.swap(keep);
  }
  std::vector<int64_t> rows = pick_rows;
  rows.insert(rows.end(), others.begin(), others.end());
  const torch::Tensor xy =
      (x.Gather(rows, &pool).to(torch::kFloat64) - mean).mm(axes).to(torch::kFloat32).contiguous();
  const float* p = xy.data_ptr<float>();
  out.points.reserve(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    MapPoint q;
    q.row = rows[i];
    q.x = p[2 * i];
    q.y = p[2 * i + 1];
    const bool is_pick = i < picks.size();
    q.pick = is_pick ? static_cast<int64_t>(i) : -1;
    q.cluster = is_pick ? out.pick_cluster[i] : out.pick_cluster[scan.assign[rows[i]]];
    out.points.push_back(q);
  }
  return out;
}

}  // namespace updp::select
