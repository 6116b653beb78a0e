// Small helpers shared by the engine's job bodies.
#ifndef UPDP_SERVER_ENGINE_JOB_UTIL_H_
#define UPDP_SERVER_ENGINE_JOB_UTIL_H_

#include <chrono>
#include <cstdint>
#include <string>

#include "server/core/job_manager.h"

namespace updp::engine {

// A selection kernel's progress (its phase and the fraction done) as the job's, in
// thousandths.
inline void ReportFraction(core::JobContext& ctx, const std::string& phase, double f) {
  core::Progress q;
  q.stage = phase;
  q.done = static_cast<int64_t>(f * 1000);
  q.total = 1000;
  ctx.SetProgress(q);
}

inline double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace updp::engine

#endif  // UPDP_SERVER_ENGINE_JOB_UTIL_H_
