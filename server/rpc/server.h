// The gRPC server around a ServerCore: updp.v1.Updp, grpc.health.v1 (NOT_SERVING
// until the model is loaded and while draining) and server reflection.
#ifndef UPDP_SERVER_RPC_SERVER_H_
#define UPDP_SERVER_RPC_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/core/metrics.h"
#include "server/core/server_core.h"

namespace updp::rpc {

class UpdpServiceImpl;

class UpdpServer {
 public:
  // Opens the store, starts listening on `address` ("0.0.0.0:50051"; port 0 picks a
  // free one) with health NOT_SERVING, loads the model, starts the job executors and
  // turns health SERVING. Fails (and stops) when the checkpoint does not load.
  static absl::StatusOr<std::unique_ptr<UpdpServer>> Start(const core::ServerOptions& options,
                                                           const std::string& address,
                                                           core::Metrics* metrics);
  ~UpdpServer();

  int port() const { return port_; }
  core::ServerCore& core() { return *core_; }
  // Graceful: health NOT_SERVING, refuse new jobs, let running jobs reach a
  // checkpoint (up to grace_ms), then stop the gRPC server (in-flight RPCs get
  // another grace_ms before being cancelled).
  void Shutdown(int64_t grace_ms);

 private:
  UpdpServer() = default;
  std::unique_ptr<core::ServerCore> core_;
  std::unique_ptr<UpdpServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace updp::rpc

#endif  // UPDP_SERVER_RPC_SERVER_H_
