#include "server/select/duplicates.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace updp::select {
namespace {

// Similarities are float32 dot products of unit rows: two copies of one vector can
// come out a few ulps below 1, so the threshold is applied with this slack.
constexpr float kSlack = 1e-5f;

// Pairs stop being collected beyond this many (24 bytes each): a threshold that
// makes most of a large dataset "duplicates" is a mistake worth reporting.
constexpr int64_t kMaxPairs = int64_t{64} << 20;

// The entries >= t of s = rows(a) x rows(b)^T, as pairs of distinct rows in (min, max)
// order; `upper_only`: a block against itself, keep j > i only.
void Collect(const torch::Tensor& s, const int64_t* a, const int64_t* b, float t, bool upper_only,
             ThreadPool& pool, std::vector<SimilarPair>& out) {
  const int64_t m = s.size(0), n = s.size(1);
  const float* sp = s.data_ptr<float>();
  std::mutex mu;
  pool.ParallelRanges(m, [&](int64_t begin, int64_t end) {
    std::vector<SimilarPair> mine;
    for (int64_t i = begin; i < end; ++i) {
      const float* row = sp + i * n;
      for (int64_t j = upper_only ? i + 1 : 0; j < n; ++j) {
        if (row[j] < t || a[i] == b[j]) continue;
        const float sim = std::min(1.0f, row[j]);
        mine.push_back({std::min(a[i], b[j]), std::max(a[i], b[j]), sim});
      }
    }
    std::lock_guard<std::mutex> l(mu);
    out.insert(out.end(), mine.begin(), mine.end());
  });
}

absl::Status TooMany(const std::vector<SimilarPair>& pairs, const DuplicateParameters& p,
                     int64_t limit = kMaxPairs) {
  if (static_cast<int64_t>(pairs.size()) <= limit) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(p.field, ": more than ", kMaxPairs,
                                                   " pairs of items are at least ", p.threshold,
                                                   " similar; raise the ", p.field));
}

absl::Status Cancelled() { return absl::CancelledError("duplicate search cancelled"); }

std::vector<int64_t> Iota(int64_t begin, int64_t len) {
  std::vector<int64_t> v(len);
  for (int64_t i = 0; i < len; ++i) v[i] = begin + i;
  return v;
}

// Every block against every later block (and itself).
absl::Status ExactPairs(const FeatureSource& x, const DuplicateParameters& p, float t,
                        ThreadPool& pool, const CancelledFn& cancelled, const ProgressFn& progress,
                        std::vector<SimilarPair>& out, PairSearchStats& st) {
  const auto ranges = x.BlockRanges();
  const size_t nb = ranges.size();
  for (size_t i = 0; i < nb; ++i) {
    if (cancelled && cancelled()) return Cancelled();
    if (progress) progress("pairs", static_cast<double>(i) / nb);
    const auto [ab, al] = ranges[i];
    const torch::Tensor a = x.Block(ab, al);
    const std::vector<int64_t> ra = Iota(ab, al);
    for (size_t j = i; j < nb; ++j) {
      const auto [bb, bl] = ranges[j];
      const torch::Tensor b = i == j ? a : x.Block(bb, bl);
      const std::vector<int64_t> rb = i == j ? ra : Iota(bb, bl);
      const torch::Tensor s = a.mm(b.t()).contiguous();
      Collect(s, ra.data(), rb.data(), t, /*upper_only=*/i == j, pool, out);
      st.products += al * bl;
      if (auto s2 = TooMany(out, p); !s2.ok()) return s2;
    }
  }
  return absl::OkStatus();
}

// The rows of each cell, from a row -> cells list with `per_row` cells per row.
std::vector<std::vector<int64_t>> Invert(const std::vector<int32_t>& cells_of, int per_row,
                                         int take, int64_t num_cells) {
  std::vector<std::vector<int64_t>> lists(num_cells);
  const int64_t n = static_cast<int64_t>(cells_of.size()) / per_row;
  for (int64_t r = 0; r < n; ++r) {
    for (int k = 0; k < take; ++k) lists[cells_of[r * per_row + k]].push_back(r);
  }
  return lists;
}

absl::Status CellPairs(const FeatureSource& x, const DuplicateParameters& p, float t,
                       ThreadPool& pool, const CancelledFn& cancelled, const ProgressFn& progress,
                       std::vector<SimilarPair>& out, PairSearchStats& st) {
  const int64_t n = x.rows();
  int64_t cells = p.cells > 0 ? p.cells
                              : static_cast<int64_t>(std::lround(
                                    std::sqrt(static_cast<double>(std::max(1, p.probes)) * n)));
  cells = std::clamp<int64_t>(cells, 1, n);
  const int probes = static_cast<int>(std::clamp<int64_t>(p.probes, 1, cells));
  st.exact = false;
  st.cells = cells;
  st.probes = probes;
  if (progress) progress("cells", 0.0);
  KMeansResult km = TrainKMeans(x, cells, p.kmeans, p.seed, pool, cancelled);
  if (km.cancelled) return Cancelled();
  // Nearest centroids by Euclidean distance: argmax of x.c - |c|^2 / 2.
  const torch::Tensor ct = km.centroids.t().contiguous();
  const torch::Tensor half = km.centroids.pow(2).sum(1).mul(0.5);
  std::vector<int32_t> probe(n * probes);
  for (const auto& [begin, len] : x.BlockRanges()) {
    if (cancelled && cancelled()) return Cancelled();
    const torch::Tensor s = x.Block(begin, len).mm(ct).sub_(half);
    const torch::Tensor idx =
        std::get<1>(s.topk(probes, /*dim=*/1, /*largest=*/true, /*sorted=*/true))
            .to(torch::kInt32)
            .contiguous();
    std::copy_n(idx.data_ptr<int32_t>(), len * probes, probe.data() + begin * probes);
  }
  // A row is stored in its nearest cell and looked for in its `probes` nearest.
  const auto stored = Invert(probe, probes, 1, cells);
  const auto queries = Invert(probe, probes, probes, cells);
  constexpr int64_t kRows = FeatureSource::kBlockRows;
  for (int64_t c = 0; c < cells; ++c) {
    if (progress && c % 64 == 0) progress("pairs", static_cast<double>(c) / cells);
    const auto& db = stored[c];
    const auto& q = queries[c];
    if (db.empty() || q.empty()) continue;
    // Blocks on both sides bound the similarity matrix of an oversized cell.
    for (size_t d0 = 0; d0 < db.size(); d0 += kRows) {
      const std::vector<int64_t> dr(db.begin() + d0, db.begin() + std::min(db.size(), d0 + kRows));
      const torch::Tensor dt = x.Gather(dr, &pool).t().contiguous();
      for (size_t q0 = 0; q0 < q.size(); q0 += kRows) {
        // Checked per block: one oversized cell (many copies of one image) must not
        // run on unbounded.
        if (cancelled && cancelled()) return Cancelled();
        const std::vector<int64_t> qr(q.begin() + q0, q.begin() + std::min(q.size(), q0 + kRows));
        const torch::Tensor s = x.Gather(qr, &pool).mm(dt).contiguous();
        Collect(s, qr.data(), dr.data(), t, /*upper_only=*/false, pool, out);
        st.products += static_cast<int64_t>(qr.size() * dr.size());
        // Pairs found from both of their cells come twice until made unique below.
        if (auto s2 = TooMany(out, p, 2 * kMaxPairs); !s2.ok()) return s2;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<SimilarPair>> FindSimilarPairs(
    const FeatureSource& features, const DuplicateParameters& p, ThreadPool& pool,
    const CancelledFn& cancelled, const ProgressFn& progress, PairSearchStats* stats) {
  if (!(p.threshold > 0 && p.threshold <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat(p.field, ": ", p.threshold, " is not a cosine similarity in (0, 1]"));
  }
  const auto start = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  const FeatureSource x = features.WithNormalize(true);
  const float t = static_cast<float>(p.threshold) - kSlack;
  std::vector<SimilarPair> pairs;
  PairSearchStats st;
  absl::Status s = x.rows() <= p.exact_max_rows
                       ? ExactPairs(x, p, t, pool, cancelled, progress, pairs, st)
                       : CellPairs(x, p, t, pool, cancelled, progress, pairs, st);
  if (!s.ok()) return s;
  // A pair found from two cells may differ in the last bit: the larger is kept, so the
  // result does not depend on the order the threads delivered them in.
  std::sort(pairs.begin(), pairs.end(), [](const SimilarPair& l, const SimilarPair& r) {
    if (l.a != r.a) return l.a < r.a;
    if (l.b != r.b) return l.b < r.b;
    return l.similarity > r.similarity;
  });
  pairs.erase(std::unique(pairs.begin(), pairs.end(),
                          [](const SimilarPair& l, const SimilarPair& r) {
                            return l.a == r.a && l.b == r.b;
                          }),
              pairs.end());
  if (auto s2 = TooMany(pairs, p); !s2.ok()) return s2;
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (stats) *stats = st;
  if (progress) progress("pairs", 1.0);
  return pairs;
}

Grouping GroupDuplicates(int64_t n, const std::vector<SimilarPair>& pairs,
                         const std::vector<char>* skip, bool keep_groups) {
  Grouping g;
  g.duplicate.assign(n, 0);
  const auto skipped = [&](int64_t r) { return skip && (*skip)[r]; };
  // `pairs` is sorted by a: the later neighbours of a row are one contiguous run.
  for (size_t i = 0; i < pairs.size();) {
    const int64_t a = pairs[i].a;
    size_t end = i;
    while (end < pairs.size() && pairs[end].a == a) ++end;
    if (!skipped(a) && !g.duplicate[a]) {
      DuplicateGroup group{{a}, {1.0f}};
      for (size_t k = i; k < end; ++k) {
        const int64_t b = pairs[k].b;
        if (skipped(b) || g.duplicate[b]) continue;
        g.duplicate[b] = 1;
        if (!keep_groups) continue;
        group.rows.push_back(b);
        group.similarities.push_back(pairs[k].similarity);
      }
      if (group.rows.size() > 1) g.groups.push_back(std::move(group));
    }
    i = end;
  }
  return g;
}

}  // namespace updp::select
