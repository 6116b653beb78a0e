// ProbCover: balls of radius delta around every point; greedily pick the point whose
// ball covers the most points not yet covered (max coverage).
#ifndef UPDP_SERVER_SELECT_PROBCOVER_H_
#define UPDP_SERVER_SELECT_PROBCOVER_H_

#include <vector>

#include "server/select/strategy.h"

namespace updp::select {

struct ProbCoverParameters {
  // delta: the largest radius whose balls stay this pure w.r.t. k-means pseudo-labels.
  double purity = 0.95;
  int clusters = 0;  // pseudo-label clusters; 0 = the budget
  // ProbCover runs on a random sample of this many rows (plus the labeled ones): its
  // coverage graph is O(sample^2) to build.
  int64_t max_points = 20000;
};

// Memory: the sample's rows and its coverage graph; O(N) scalars.
std::vector<Pick> RunProbCover(const StrategyContext& ctx);

}  // namespace updp::select

#endif  // UPDP_SERVER_SELECT_PROBCOVER_H_
