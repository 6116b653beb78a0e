// The whole server wired together, in one place (used by main and the tests):
// ServerCore (data dir lock, store, jobs) + the model engine registered into the job
// manager + the gRPC server. Start order: listen with health NOT_SERVING, load the
// model (model-backed RPCs get UNAVAILABLE meanwhile), start the job executors, turn
// health SERVING.
#ifndef UPDP_SERVER_APP_APP_H_
#define UPDP_SERVER_APP_APP_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/core/metrics.h"
#include "server/core/server_core.h"
#include "server/engine/model_engine.h"
#include "server/rpc/server.h"

namespace updp::app {

struct AppOptions {
  rpc::RpcOptions rpc;
  // Tests: called once listening (with the port), before the model loads.
  std::function<void(int port)> before_model_load;
  // Tests: see JobManager::SetProgressHookForTest.
  std::function<void(const core::JobInfo&)> progress_hook;
};

class App {
 public:
  static absl::StatusOr<std::unique_ptr<App>> Start(const core::ServerOptions& options,
                                                    const std::string& address,
                                                    core::Metrics* metrics,
                                                    const AppOptions& app_options = {});
  // Shutdown(0) if not done; then waits for job workers (never destroys the store
  // under one).
  ~App();

  int port() const { return server_->port(); }
  core::ServerCore& core() { return *core_; }
  engine::ModelEngine& engine() { return *engine_; }

  // Graceful: health NOT_SERVING, refuse new jobs, let running jobs reach a
  // checkpoint within grace_ms (they become INTERRUPTED), stop gRPC. Returns false
  // when a job did not stop in time: gRPC is left running and the caller must end
  // the process with _exit (main does), so that no destructor runs under a live
  // worker; the job becomes INTERRUPTED at the next start.
  bool Shutdown(int64_t grace_ms);

 private:
  App() = default;
  // Destruction order matters: gRPC first, then the core (joins job workers), then
  // the engine the workers used.
  std::unique_ptr<engine::ModelEngine> engine_;
  std::unique_ptr<core::ServerCore> core_;
  std::unique_ptr<rpc::UpdpServer> server_;
  bool shut_down_ = false;
};

}  // namespace updp::app

#endif  // UPDP_SERVER_APP_APP_H_
