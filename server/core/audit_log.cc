#include "server/core/audit_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace updp::core {

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path) {
  if (path.empty() || path == "-") return std::unique_ptr<AuditLog>(new AuditLog(stderr, false));
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  std::FILE* f = fd < 0 ? nullptr : ::fdopen(fd, "a");
  if (f == nullptr) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat("--audit_log ", path, ": cannot open for appending (", std::strerror(err),
                     ")"));
  }
  return std::unique_ptr<AuditLog>(new AuditLog(f, true));
}

AuditLog::~AuditLog() {
  if (owned_) std::fclose(out_);
}

void AuditLog::Write(const AuditRecord& r) {
  nlohmann::json j;
  j["ts"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  j["audit"] = "updp";
  j["caller"] = r.caller;
  if (!r.role.empty()) j["role"] = r.role;
  j["method"] = r.method;
  if (!r.target.empty()) j["target"] = r.target;
  if (!r.peer.empty()) j["peer"] = r.peer;
  j["outcome"] = r.outcome;
  if (!r.message.empty()) j["message"] = r.message.substr(0, 512);
  // Request fields may hold any bytes: invalid UTF-8 is replaced, never thrown on.
  const std::string line =
      j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  std::lock_guard<std::mutex> l(mu_);
  std::fwrite(line.data(), 1, line.size(), out_);
  std::fflush(out_);
}

}  // namespace updp::core
