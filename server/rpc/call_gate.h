// The door every updp.v1.Updp call passes: authentication (the bearer token),
// authorization (the method's role), the request limits; and at the end of the call
// its metrics and audit line. Health and reflection are other services: they stay
// open.
#ifndef UPDP_SERVER_RPC_CALL_GATE_H_
#define UPDP_SERVER_RPC_CALL_GATE_H_

#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "server/core/audit_log.h"
#include "server/core/auth.h"
#include "server/core/metrics.h"
#include "server/rpc/limits.h"

namespace updp::rpc {

// What the gate learned about one call, kept until the call ends.
struct CallRecord {
  const char* method = "";
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  std::string caller = "anonymous";
  std::string role;    // empty: not authenticated (or no --auth_tokens)
  std::string target;  // the dataset, job or prompt the request names
  std::string peer;
};

class CallGate {
 public:
  // `tokens` null: no authentication (every caller may call everything). `audit` null:
  // no audit trail (tests of other things).
  CallGate(core::Metrics* metrics, std::shared_ptr<const core::TokenTable> tokens,
           std::shared_ptr<core::AuditLog> audit, const RequestLimits& limits)
      : metrics_(metrics), tokens_(std::move(tokens)), audit_(std::move(audit)),
        limits_(limits) {}

  // OK, or UNAUTHENTICATED (no or unknown token), PERMISSION_DENIED (role too low),
  // INVALID_ARGUMENT (a limit). `req` may be null (client streams: checked per message).
  // A refused call is recorded (metrics, audit) here: finish it with the status and
  // do not call Done.
  grpc::Status Admit(grpc::CallbackServerContext* ctx, const char* method,
                     const google::protobuf::Message* req, CallRecord* rec);
  // The call's end: its metrics, and its audit line if the method changes state.
  void Done(const CallRecord& rec, const grpc::Status& s);

  const RequestLimits& limits() const { return limits_; }

 private:
  void Audit(const CallRecord& rec, const grpc::Status& s);
  void Finished(const CallRecord& rec, const grpc::Status& s);  // metrics

  core::Metrics* metrics_;
  std::shared_ptr<const core::TokenTable> tokens_;
  std::shared_ptr<core::AuditLog> audit_;
  RequestLimits limits_;
};

}  // namespace updp::rpc

#endif  // UPDP_SERVER_RPC_CALL_GATE_H_
