// The updp strategy: selection on the joint image-text features of a learned UP-DP
// prompt. Rule "kmeans" (default): the kmeans strategy on those features. Rule
// "cluster-head": the most confident row of every cluster of the prompt's cluster
// head, completed by kmeans picks when fewer clusters are used than the budget.
#ifndef UPDP_SERVER_SELECT_UPDP_RULE_H_
#define UPDP_SERVER_SELECT_UPDP_RULE_H_

#include <string>
#include <vector>

#include "server/select/strategy.h"

namespace updp::select {

struct UpdpParameters {
  std::string rule = "kmeans";  // kmeans | cluster-head
  ClusterFn cluster;            // required by cluster-head
};

// Memory: as kmeans; cluster-head adds O(K) per-cluster bests and one block of
// probabilities.
std::vector<Pick> RunUpdp(const StrategyContext& ctx);

}  // namespace updp::select

#endif  // UPDP_SERVER_SELECT_UPDP_RULE_H_
