// FNV-1a 64: a stable, dependency-free fingerprint for identities and digests that
// guard against accidental mismatches (not a cryptographic hash).
#ifndef UPDP_SERVER_UTIL_FNV1A_H_
#define UPDP_SERVER_UTIL_FNV1A_H_

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace updp {

inline constexpr uint64_t kFnv1aOffset = 1469598103934665603ull;

inline uint64_t Fnv1a(uint64_t h, std::string_view data) {
  for (unsigned char c : data) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

inline std::string Hex64(uint64_t h) {
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

}  // namespace updp

#endif  // UPDP_SERVER_UTIL_FNV1A_H_
