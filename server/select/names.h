// The selection strategies by name: the one list the server (request validation),
// the CLI help, the registry of implementations and the tests read. No LibTorch here,
// so the service core and the CLI can use it.
#ifndef UPDP_SERVER_SELECT_NAMES_H_
#define UPDP_SERVER_SELECT_NAMES_H_

#include <string>
#include <vector>

namespace updp::select {

struct StrategyName {
  const char* name;
  const char* summary;
};

// In registry order (server/select/registry.cc pairs each with its implementation).
const std::vector<StrategyName>& StrategyNameList();
std::vector<std::string> StrategyNames();
bool IsStrategy(const std::string& name);
// "random, kmeans, ... or updp", for error messages and help.
std::string StrategyNamesText();

}  // namespace updp::select

#endif  // UPDP_SERVER_SELECT_NAMES_H_
