// What the selection benches share: peak RSS, elapsed seconds, and the thread count
// from a --threads flag (0 = one per core).
#ifndef UPDP_BENCH_BENCH_UTIL_H_
#define UPDP_BENCH_BENCH_UTIL_H_

#include <sys/resource.h>

#include <chrono>
#include <thread>

namespace updp::bench {

// This process's peak resident set so far, in MB.
inline double PeakMb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;
}

inline double Since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

inline int ThreadsOr(int flag) {
  return flag > 0 ? flag : static_cast<int>(std::thread::hardware_concurrency());
}

}  // namespace updp::bench

#endif  // UPDP_BENCH_BENCH_UTIL_H_
