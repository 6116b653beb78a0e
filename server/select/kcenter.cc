#include "server/select/kcenter.h"

#include <algorithm>
#include <cmath>

#include "server/select/kernels.h"
#include "server/select/select.h"

namespace updp::select {
namespace {

class KCenter {
 public:
  KCenter(const StrategyContext& ctx, KCenterStats* stats)
      : ctx_(ctx), n_(ctx.x.rows()), d_(ctx.x.dim()), mind_(n_, kInf), upto_(n_, 0),
        dot_(BestDot()), stats_(stats) {}

  std::vector<Pick> Run() {
    std::vector<int64_t> labeled;
    for (int64_t i = 0; i < n_; ++i) {
      if (ctx_.excluded[i]) labeled.push_back(i);
    }
    std::vector<Pick> picks;
    if (!labeled.empty()) {
      // The picks complement the labeled set: bounds start at the distance to it.
      ScanRequest req;
      req.assign = true;
      ScanResult s = NearestScan(ctx_.x, ctx_.x.Gather(labeled, &ctx_.pool), req, ctx_.pool,
                                 ctx_.cancelled);
      if (s.cancelled) return {};
      mind_ = std::move(s.dist);
    } else {
      // Start from the row nearest the mean.
      torch::Tensor sum = torch::zeros({1, d_}, torch::kFloat64);
      ctx_.x.ForEachBlock([&](int64_t, const torch::Tensor& b) {
        sum += b.to(torch::kFloat64).sum(0, true);
        return true;
      });
      ScanRequest req;
      req.assign = true;
      ScanResult s = NearestScan(ctx_.x, (sum / n_).to(torch::kFloat32), req, ctx_.pool,
                                 ctx_.cancelled);
      if (s.cancelled) return {};
      const int64_t start = std::min_element(s.dist.begin(), s.dist.end()) - s.dist.begin();
      picks.push_back({start, 0, 0.0});
      AddCentre(start);
    }
    heap_.reserve(n_);
    for (int64_t i = 0; i < n_; ++i) {
      if (!ctx_.excluded[i] && !(picks.size() == 1 && picks[0].index == i)) {
        heap_.push_back(static_cast<int64_t>(i));
      }
    }
    if (num_centres_ > 0) {
      RefreshAll();  // distances to the first centre: one parallel pass
    } else {
      std::make_heap(heap_.begin(), heap_.end(), Less());
    }
    while (static_cast<int64_t>(picks.size()) < ctx_.want && !heap_.empty()) {
      if (picks.size() % 16 == 0) {
        if (ctx_.Cancelled()) return {};
        ctx_.Report("kcenter", static_cast<double>(picks.size()) / ctx_.want);
      }
      const int64_t next = Farthest();
      if (next < 0 || mind_[next] <= 0.0f) break;  // the rest duplicates a centre
      std::pop_heap(heap_.begin(), heap_.end(), Less());
      heap_.pop_back();
      // Score: the coverage radius this pick closes (distance to the nearest centre).
      picks.push_back({next, static_cast<int64_t>(picks.size()), std::sqrt(mind_[next])});
      AddCentre(next);
    }
    return picks;
  }

 private:
  struct LessFn {
    const std::vector<float>* mind;
    // Max-heap on the bound; among equal bounds the lower row comes first.
    bool operator()(int64_t a, int64_t b) const {
      const float x = (*mind)[a], y = (*mind)[b];
      return x < y || (x == y && a > b);
    }
  };
  LessFn Less() const { return LessFn{&mind_}; }

  void AddCentre(int64_t row) {
    centres_.resize((num_centres_ + 1) * d_);
    ctx_.x.Row(row, centres_.data() + num_centres_ * d_);
    cnorm_.push_back(dot_(centres_.data() + num_centres_ * d_,
                          centres_.data() + num_centres_ * d_, d_));
    ++num_centres_;
    mind_[row] = 0.0f;
    upto_[row] = static_cast<int32_t>(num_centres_);
  }

  // Lowers row i's bound with the centres added since its last refresh.
  void Refresh(int64_t i, float* buf) {
    ctx_.x.Row(i, buf);
    const float xn = dot_(buf, buf, d_);
    float m = mind_[i];
    for (int64_t c = upto_[i]; c < num_centres_; ++c) {
      const float dist = std::max(0.0f, xn + cnorm_[c] - 2.0f * dot_(buf, centres_.data() + c * d_, d_));
      m = std::min(m, dist);
    }
    mind_[i] = m;
    upto_[i] = static_cast<int32_t>(num_centres_);
  }

  // The exact farthest row: refresh stale heap tops until the top is current (its
  // bound then is its distance, and no other row's distance exceeds its bound).
  int64_t Farthest() {
    std::vector<float> buf(d_);
    int64_t refreshed = 0;
    const auto budget = static_cast<int64_t>(ctx_.opt.kcenter.max_refresh_fraction * n_);
    while (!heap_.empty()) {
      const int64_t top = heap_.front();
      if (upto_[top] == num_centres_) return top;
      if (!ctx_.opt.kcenter.lazy || refreshed > budget) {
        RefreshAll();
        continue;
      }
      std::pop_heap(heap_.begin(), heap_.end(), Less());
      Refresh(top, buf.data());
      std::push_heap(heap_.begin(), heap_.end(), Less());
      ++refreshed;
      if (stats_) ++stats_->refreshed_rows;
    }
    return -1;
  }

  void RefreshAll() {
    ctx_.pool.ParallelRanges(static_cast<int64_t>(heap_.size()), [&](int64_t lo, int64_t hi) {
      std::vector<float> buf(d_);
      for (int64_t j = lo; j < hi; ++j) Refresh(heap_[j], buf.data());
    });
    std::make_heap(heap_.begin(), heap_.end(), Less());
    if (stats_) ++stats_->full_passes;
  }

  const StrategyContext& ctx_;
  const int64_t n_, d_;
  std::vector<float> mind_;
  std::vector<int32_t> upto_;  // centres already folded into mind_
  std::vector<int64_t> heap_;
  std::vector<float> centres_, cnorm_;
  int64_t num_centres_ = 0;
  DotFn dot_;
  KCenterStats* stats_;
};

}  // namespace

std::vector<Pick> RunKCenterWithStats(const StrategyContext& ctx, KCenterStats* stats) {
  return KCenter(ctx, stats).Run();
}

std::vector<Pick> RunKCenter(const StrategyContext& ctx) { return RunKCenterWithStats(ctx, nullptr); }

}  // namespace updp::select
