// Helpers shared by the fuzz targets.
#ifndef UPDP_FUZZ_COMMON_H_
#define UPDP_FUZZ_COMMON_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace updp::fuzz {

// A private directory for this process (created once, removed at exit).
const std::string& ScratchDir();

// Writes the input to one file per process, `name` in ScratchDir(), overwritten on each
// call (for readers that only take a path); returns its path. Aborts if it cannot.
std::string WriteInput(const std::string& name, const uint8_t* data, size_t size);

// tests/testdata of the source tree the fuzzers were built from (for fixtures).
const char* FixturesDir();

}  // namespace updp::fuzz

#endif  // UPDP_FUZZ_COMMON_H_
