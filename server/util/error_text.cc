#include "server/util/error_text.h"

#include "absl/strings/str_cat.h"

namespace updp {

std::string Quote(absl::string_view s, size_t max) {
  std::string out = "'";
  const size_t n = std::min(s.size(), max);
  for (size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    out.push_back(c < 0x20 || c == 0x7f ? '?' : static_cast<char>(c));
  }
  out.push_back('\'');
  if (s.size() > max) absl::StrAppend(&out, "... (", s.size(), " bytes)");
  return out;
}

std::string CleanErrorText(absl::string_view msg, size_t max) {
  for (absl::string_view marker : {"Exception raised from", "\nframe #", "frame #0"}) {
    size_t at = msg.find(marker);
    if (at != absl::string_view::npos) msg = msg.substr(0, at);
  }
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.remove_suffix(1);
  std::string out;
  out.reserve(std::min(msg.size(), max));
  for (size_t i = 0; i < msg.size() && out.size() < max; ++i) {
    const unsigned char c = static_cast<unsigned char>(msg[i]);
    out.push_back(c == '\n' || c == '\t' ? ' ' : (c < 0x20 || c == 0x7f ? '?' : msg[i]));
  }
  if (msg.size() > max) absl::StrAppend(&out, "... (message cut)");
  return out;
}

absl::Status CleanStatus(const absl::Status& s, size_t max) {
  if (s.ok()) return s;
  return absl::Status(s.code(), CleanErrorText(s.message(), max));
}

}  // namespace updp
