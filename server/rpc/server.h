// The gRPC server around a ServerCore: updp.v1.Updp, grpc.health.v1 (NOT_SERVING
// until SetServing(true): the model is loaded; and again while draining) and server
// reflection. It owns the request WorkPool the service offloads slow calls to.
#ifndef UPDP_SERVER_RPC_SERVER_H_
#define UPDP_SERVER_RPC_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/core/audit_log.h"
#include "server/core/auth.h"
#include "server/core/server_core.h"
#include "server/core/work_pool.h"
#include "server/rpc/limits.h"

namespace updp::rpc {

class CallGate;
class UpdpServiceImpl;

struct RpcOptions {
  int pool_threads = 8;  // request work (registrations, imports, submits)
  int pool_queue = 256;  // queued request work beyond which RESOURCE_EXHAUSTED
  // What clients may send (limits.max_request_bytes is the largest message).
  RequestLimits limits;
  // The largest message the server sends (an exported prompt artifact, a report page).
  int max_send_bytes = 256 << 20;
  // The listening port's credentials (tls.h); null: plaintext.
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // Bearer tokens and their roles (--auth_tokens); null: no authentication.
  std::shared_ptr<const core::TokenTable> tokens;
  // Where audit lines go; null: nowhere.
  std::shared_ptr<core::AuditLog> audit;
};

class UpdpServer {
 public:
  // Starts listening on `address` ("0.0.0.0:50051"; port 0 picks a free one) with
  // health NOT_SERVING. The port is not shared (no SO_REUSEPORT): a second server on
  // it fails to start.
  static absl::StatusOr<std::unique_ptr<UpdpServer>> Start(core::ServerCore* core,
                                                           const std::string& address,
                                                           const RpcOptions& options);
  ~UpdpServer();

  int port() const { return port_; }
  void SetServing(bool serving);
  // Stops the gRPC server (in-flight RPCs get grace_ms before being cancelled), then
  // the request pool. Idempotent.
  void Stop(int64_t grace_ms);

 private:
  UpdpServer() = default;
  std::unique_ptr<core::WorkPool> pool_;
  std::unique_ptr<CallGate> gate_;
  std::unique_ptr<UpdpServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool stopped_ = false;
};

}  // namespace updp::rpc

#endif  // UPDP_SERVER_RPC_SERVER_H_
