#include "server/select/kcenter.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#include "server/select/kernels.h"
#include "server/select/select.h"

namespace updp::select {
namespace {

class KCenter {
 public:
  KCenter(const StrategyContext& ctx, KCenterStats* stats)
      : ctx_(ctx),
        n_(ctx.x.rows()),
        d_(ctx.x.dim()),
        mind_(n_, kInf),
        upto_(n_, 0),
        dot_(BestDot()),
        stats_(stats) {
    // One slot per pick, allocated once: refreshes read the centres as a matrix.
    centres_ = torch::empty({std::max<int64_t>(ctx.want, 1), d_});
    max_batch_ = std::clamp<int64_t>(n_ / 256, 16, 4096);
  }

  std::vector<Pick> Run() {
    std::vector<int64_t> labeled;
    for (int64_t i = 0; i < n_; ++i) {
      if (ctx_.labeled[i]) labeled.push_back(i);
    }
    std::vector<Pick> picks;
    if (!labeled.empty()) {
      // The picks complement the labeled set: bounds start at the distance to it.
      ScanRequest req;
      req.assign = true;
      ScanResult s =
          NearestScan(ctx_.x, ctx_.x.Gather(labeled, &ctx_.pool), req, ctx_.pool, ctx_.cancelled);
      if (s.cancelled) return {};
      mind_ = std::move(s.dist);
    } else {
      // Start from the row nearest the mean.
      torch::Tensor sum = torch::zeros({1, d_}, torch::kFloat64);
      ctx_.x.ForEachBlock([&](int64_t, const torch::Tensor& b) {
        sum += b.sum(0, true).to(torch::kFloat64);  // float within a block, double across
        return true;
      });
      ScanRequest req;
      req.assign = true;
      ScanResult s =
          NearestScan(ctx_.x, (sum / n_).to(torch::kFloat32), req, ctx_.pool, ctx_.cancelled);
      if (s.cancelled) return {};
      int64_t start = -1;  // the nearest row that may be picked
      for (int64_t i = 0; i < n_; ++i) {
        if (!ctx_.excluded[i] && (start < 0 || s.dist[i] < s.dist[start])) start = i;
      }
      if (start < 0) return {};
      picks.push_back({start, 0, 0.0});
      AddCentre(start);
      // Distances to the first centre in one blocked pass (as a one-centroid scan).
      ScanResult first =
          NearestScan(ctx_.x, centres_.narrow(0, 0, 1), req, ctx_.pool, ctx_.cancelled);
      if (first.cancelled) return {};
      mind_ = std::move(first.dist);
      std::fill(upto_.begin(), upto_.end(), 1);
      mind_[start] = 0.0f;
    }
    heap_.reserve(n_);
    for (int64_t i = 0; i < n_; ++i) {
      if (!ctx_.excluded[i] && !(picks.size() == 1 && picks[0].index == i)) {
        heap_.push_back({mind_[i], i});
      }
    }
    std::make_heap(heap_.begin(), heap_.end());
    ctx_.Report("kcenter", static_cast<double>(picks.size()) / ctx_.want);
    while (static_cast<int64_t>(picks.size()) < ctx_.want && !heap_.empty()) {
      if (picks.size() % 16 == 0) {
        if (ctx_.Cancelled()) return {};
        ctx_.Report("kcenter", static_cast<double>(picks.size()) / ctx_.want);
      }
      const int64_t next = Farthest();
      if (next < 0 || mind_[next] <= 0.0f) break;  // the rest duplicates a centre
      std::pop_heap(heap_.begin(), heap_.end());
      heap_.pop_back();
      // Score: the coverage radius this pick closes (distance to the nearest centre).
      picks.push_back({next, static_cast<int64_t>(picks.size()), std::sqrt(mind_[next])});
      AddCentre(next);
    }
    return picks;
  }

 private:
  // A heap entry carries a copy of its row's bound so that sifting reads contiguous
  // memory (at 10M rows an indirection into the bounds is a cache miss per level).
  struct Entry {
    float bound;
    int64_t row;
    // Max-heap on the bound; among equal bounds the lower row comes first.
    bool operator<(const Entry& o) const {
      return bound < o.bound || (bound == o.bound && row > o.row);
    }
  };

  void AddCentre(int64_t row) {
    float* c = centres_.data_ptr<float>() + num_centres_ * d_;
    ctx_.x.Row(row, c);
    cnorm_.push_back(dot_(c, c, d_));
    ++num_centres_;
    mind_[row] = 0.0f;
    upto_[row] = static_cast<int32_t>(num_centres_);
  }

  // Lowers the bounds of rows[0..m) with the centres each has not seen yet. Rows are
  // refreshed in tiles: one GEMM of the tile against the pending centres, so the
  // row-centre products run at matrix speed rather than one dot at a time.
  void RefreshRows(const int64_t* rows, int64_t m) {
    auto tiles = [&](int64_t lo, int64_t hi) {
      constexpr int64_t kTile = 256;
      std::vector<int64_t> tile;
      for (int64_t s = lo; s < hi; s += kTile) {
        tile.assign(rows + s, rows + std::min(hi, s + kTile));
        int32_t first = static_cast<int32_t>(num_centres_);
        for (int64_t r : tile) first = std::min(first, upto_[r]);
        if (first == num_centres_) continue;
        const int64_t p = num_centres_ - first;
        const torch::Tensor xb = ctx_.x.Gather(tile);
        const torch::Tensor g = torch::mm(xb, centres_.narrow(0, first, p).t());
        const float* gp = g.data_ptr<float>();
        const float* xp = xb.data_ptr<float>();
        int64_t products = 0;
        for (size_t j = 0; j < tile.size(); ++j) {
          const int64_t r = tile[j];
          const float xn = dot_(xp + j * d_, xp + j * d_, d_);
          float best = mind_[r];
          for (int64_t c = upto_[r]; c < num_centres_; ++c) {
            const float dist = std::max(0.0f, xn + cnorm_[c] - 2.0f * gp[j * p + (c - first)]);
            best = std::min(best, dist);
          }
          products += num_centres_ - upto_[r];
          mind_[r] = best;
          upto_[r] = static_cast<int32_t>(num_centres_);
        }
        products_ += products;
      }
    };
    if (m >= 2048) {
      ctx_.pool.ParallelRanges(m, tiles);
    } else {
      tiles(0, m);
    }
  }

  // The exact farthest row: refresh stale heap tops until the top is current (its
  // bound then is its distance, and no other row's distance exceeds its bound). Stale
  // tops are taken in batches that double while the top stays stale, so a pick that
  // moves many bounds costs a few large GEMMs instead of many small ones.
  int64_t Farthest() {
    int64_t refreshed = 0, batch_size = 16;
    const auto budget = static_cast<int64_t>(ctx_.opt.kcenter.max_refresh_fraction * n_);
    std::vector<int64_t> batch;
    while (!heap_.empty()) {
      if (upto_[heap_.front().row] == num_centres_) return heap_.front().row;
      if (!ctx_.opt.kcenter.lazy || refreshed > budget) {
        RefreshAll();
        continue;
      }
      batch.clear();
      while (!heap_.empty() && static_cast<int64_t>(batch.size()) < batch_size &&
             upto_[heap_.front().row] != num_centres_) {
        std::pop_heap(heap_.begin(), heap_.end());
        batch.push_back(heap_.back().row);
        heap_.pop_back();
      }
      RefreshRows(batch.data(), static_cast<int64_t>(batch.size()));
      for (int64_t r : batch) {
        heap_.push_back({mind_[r], r});
        std::push_heap(heap_.begin(), heap_.end());
      }
      refreshed += static_cast<int64_t>(batch.size());
      if (stats_) stats_->refreshed_rows += static_cast<int64_t>(batch.size());
      batch_size = std::min(batch_size * 2, max_batch_);
    }
    return -1;
  }

  // Brings every row in the heap up to date (rows in storage order, so the reads are
  // sequential) and rebuilds the heap.
  void RefreshAll() {
    std::vector<int64_t> rows(heap_.size());
    for (size_t j = 0; j < heap_.size(); ++j) rows[j] = heap_[j].row;
    std::sort(rows.begin(), rows.end());
    RefreshRows(rows.data(), static_cast<int64_t>(rows.size()));
    for (size_t j = 0; j < rows.size(); ++j) heap_[j] = {mind_[rows[j]], rows[j]};
    std::make_heap(heap_.begin(), heap_.end());
    if (stats_) ++stats_->full_passes;
  }

  const StrategyContext& ctx_;
  const int64_t n_, d_;
  std::vector<float> mind_;
  std::vector<int32_t> upto_;  // centres already folded into mind_
  std::vector<Entry> heap_;
  torch::Tensor centres_;
  std::vector<float> cnorm_;
  int64_t num_centres_ = 0;
  int64_t max_batch_;
  std::atomic<int64_t> products_{0};
  DotFn dot_;
  KCenterStats* stats_;

 public:
  int64_t products() const { return products_; }
};

}  // namespace

std::vector<Pick> RunKCenterWithStats(const StrategyContext& ctx, KCenterStats* stats) {
  KCenter k(ctx, stats);
  std::vector<Pick> picks = k.Run();
  if (stats) stats->row_centre_products = k.products();
  return picks;
}

std::vector<Pick> RunKCenter(const StrategyContext& ctx) {
  return RunKCenterWithStats(ctx, nullptr);
}

}  // namespace updp::select
