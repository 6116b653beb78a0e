// Strategy implementations by name (the names and their order: names.h).
#ifndef UPDP_SERVER_SELECT_REGISTRY_H_
#define UPDP_SERVER_SELECT_REGISTRY_H_

#include <string>
#include <vector>

#include "server/select/names.h"
#include "server/select/strategy.h"

namespace updp::select {

using StrategyFn = std::vector<Pick> (*)(const StrategyContext&);

struct StrategyEntry {
  const StrategyName* name;
  StrategyFn run;
};

const std::vector<StrategyEntry>& Registry();
// nullptr for an unknown name.
StrategyFn FindStrategy(const std::string& name);

}  // namespace updp::select

#endif  // UPDP_SERVER_SELECT_REGISTRY_H_
