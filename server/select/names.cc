#include "server/select/names.h"

namespace updp::select {

const std::vector<StrategyName>& StrategyNameList() {
  static const std::vector<StrategyName> kNames = {
      {"random", "uniform among unlabeled items (baseline)"},
      {"kmeans", "nearest item to each of B k-means centroids"},
      {"kcenter", "greedy farthest-point coverage (core-set)"},
      {"typiclust", "most typical item of the largest uncovered clusters"},
      {"usl", "densest item per cluster, regularised away from other picks"},
      {"activeft", "optimised parameters matched to their nearest items"},
      {"probcover", "greedy max coverage of delta-balls"},
      {"updp", "UP-DP: kmeans (or the cluster-head rule) on a learned prompt's features"},
  };
  return kNames;
}

std::vector<std::string> StrategyNames() {
  std::vector<std::string> out;
  for (const auto& s : StrategyNameList()) out.emplace_back(s.name);
  return out;
}

bool IsStrategy(const std::string& name) {
  for (const auto& s : StrategyNameList()) {
    if (name == s.name) return true;
  }
  return false;
}

std::string StrategyNamesText() {
  const auto& l = StrategyNameList();
  std::string out;
  for (size_t i = 0; i < l.size(); ++i) {
    if (i > 0) out += i + 1 == l.size() ? " or " : ", ";
    out += l[i].name;
  }
  return out;
}

}  // namespace updp::select
