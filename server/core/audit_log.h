// The audit trail: one JSON line per state-changing call (and per refused call),
// saying who did what to which dataset and how it ended. It never holds a token.
#ifndef UPDP_SERVER_CORE_AUDIT_LOG_H_
#define UPDP_SERVER_CORE_AUDIT_LOG_H_

#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"

namespace updp::core {

struct AuditRecord {
  std::string caller;  // the token's name; "anonymous" without --auth_tokens
  std::string role;    // the caller's role; empty when not authenticated
  std::string method;  // RPC method name
  std::string target;  // the dataset, job or prompt named by the request (may be empty)
  std::string peer;    // the client's address as gRPC reports it
  std::string outcome;  // a status code name: OK, PERMISSION_DENIED, ...
  std::string message;  // the error message, if any (bounded)
};

class AuditLog {
 public:
  // "-" or empty: standard error (the container's log). Else the file is opened for
  // appending (created 0600); INVALID_ARGUMENT naming --audit_log when it cannot be.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(const std::string& path);
  // Tests: lines go to `sink` (not owned, must outlive the log).
  explicit AuditLog(std::FILE* sink) : out_(sink), owned_(false) {}
  ~AuditLog();

  // {"ts":"2026-11-30T12:00:00.123Z","audit":"updp","caller":...}: one line, flushed.
  void Write(const AuditRecord& r);

 private:
  AuditLog(std::FILE* out, bool owned) : out_(out), owned_(owned) {}
  std::mutex mu_;
  std::FILE* out_;
  bool owned_;
};

}  // namespace updp::core

#endif  // UPDP_SERVER_CORE_AUDIT_LOG_H_
