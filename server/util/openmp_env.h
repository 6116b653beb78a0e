// OpenMP's wait policy for processes that mix OpenMP (LibTorch's elementwise ops), the
// selection ThreadPool and OpenBLAS threads.
#ifndef UPDP_SERVER_UTIL_OPENMP_ENV_H_
#define UPDP_SERVER_UTIL_OPENMP_ENV_H_

namespace updp {

// GNU OpenMP reads OMP_WAIT_POLICY once, when it is loaded (before main). By default
// its idle threads spin between parallel regions; next to the selection pool and
// OpenBLAS's threads they take the cores those need (k-means at N = 1M on 2 cores:
// 36-42 s spinning, 14 s passive; docs/PERFORMANCE.md). When the variable is unset this
// sets OMP_WAIT_POLICY=PASSIVE and re-executes the program in place (same pid, same
// arguments); a value set by the operator is kept. Call first thing in main.
void PreferPassiveOpenMp(char** argv);

}  // namespace updp

#endif  // UPDP_SERVER_UTIL_OPENMP_ENV_H_
