// `--help` for our binaries. Abseil's --help lists only the flags defined in a file
// named like the program (updp-server.cc, ...), which ours are not, so it printed "No
// flags matched"; this makes it list every flag defined outside Abseil itself.
#ifndef UPDP_SERVER_UTIL_FLAGS_HELP_H_
#define UPDP_SERVER_UTIL_FLAGS_HELP_H_

namespace updp {

// Call before absl::ParseCommandLine.
void ShowOwnFlagsInHelp();

}  // namespace updp

#endif  // UPDP_SERVER_UTIL_FLAGS_HELP_H_
