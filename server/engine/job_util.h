// Small helpers shared by the engine's job bodies.
#ifndef UPDP_SERVER_ENGINE_JOB_UTIL_H_
#define UPDP_SERVER_ENGINE_JOB_UTIL_H_

#include <chrono>

namespace updp::engine {

inline double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace updp::engine

#endif  // UPDP_SERVER_ENGINE_JOB_UTIL_H_
