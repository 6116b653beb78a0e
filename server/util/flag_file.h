// Reading a file named by a command-line flag (certificates, keys), with errors that
// name the flag: the server and updpctl share it.
#ifndef UPDP_SERVER_UTIL_FLAG_FILE_H_
#define UPDP_SERVER_UTIL_FLAG_FILE_H_

#include <string>

#include "absl/status/statusor.h"

namespace updp {

// The whole file; INVALID_ARGUMENT "--FLAG PATH: cannot read (reason)" otherwise.
absl::StatusOr<std::string> ReadFlagFile(const char* flag, const std::string& path);

}  // namespace updp

#endif  // UPDP_SERVER_UTIL_FLAG_FILE_H_
