// Bounded, safe error text: what reaches a client names the problem in a few hundred
// characters, never echoes a huge input in full and never carries a C++ backtrace.
#ifndef UPDP_SERVER_UTIL_ERROR_TEXT_H_
#define UPDP_SERVER_UTIL_ERROR_TEXT_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace updp {

// `s` in single quotes, cut to `max` bytes with a note of its full length; control
// characters shown as '?'. For echoing client input in error messages.
std::string Quote(absl::string_view s, size_t max = 80);

// The message without anything from a backtrace marker on ("Exception raised from",
// "frame #", LibTorch's "Exception raised from ... (most recent call first)"), cut to
// `max` bytes.
std::string CleanErrorText(absl::string_view msg, size_t max = 1024);

// The same status with CleanErrorText applied to its message.
absl::Status CleanStatus(const absl::Status& s, size_t max = 1024);

}  // namespace updp

#endif  // UPDP_SERVER_UTIL_ERROR_TEXT_H_
