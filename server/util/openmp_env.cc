#include "server/util/openmp_env.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace updp {

void PreferPassiveOpenMp(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0) return;
  execv("/proc/self/exe", argv);
  // Still here: the exec failed (no /proc?). Run on with OpenMP's default policy.
  std::fprintf(stderr, "note: could not re-execute with OMP_WAIT_POLICY=PASSIVE (%s)\n",
               std::strerror(errno));
}

}  // namespace updp
