#include "server/app/app.h"

#include "absl/strings/str_cat.h"

namespace updp::app {

absl::StatusOr<std::unique_ptr<App>> App::Start(const core::ServerOptions& options,
                                                const std::string& address, core::Metrics* metrics,
                                                const AppOptions& app_options) {
  std::unique_ptr<App> a(new App());
  auto core = core::ServerCore::Create(options, metrics);
  if (!core.ok()) return core.status();
  a->core_ = std::move(*core);
  a->engine_ = std::make_unique<engine::ModelEngine>(a->core_.get());
  a->engine_->RegisterJobs(a->core_->jobs());
  if (app_options.progress_hook) a->core_->jobs().SetProgressHookForTest(app_options.progress_hook);
  a->core_->SetEngine(a->engine_.get());
  // Registrations need no model: they run while it loads.
  a->core_->StartRegistrations();
  auto server = rpc::UpdpServer::Start(a->core_.get(), address, app_options.rpc);
  if (!server.ok()) return server.status();
  a->server_ = std::move(*server);
  if (app_options.before_model_load) app_options.before_model_load(a->server_->port());
  if (auto st = a->engine_->LoadModel(); !st.ok()) {
    a->Shutdown(0);
    return absl::FailedPreconditionError(
        absl::StrCat("model_dir: checkpoint does not load: ", st.message()));
  }
  a->core_->Start();
  a->server_->SetServing(true);
  return a;
}

App::~App() { Shutdown(0); }

bool App::Shutdown(int64_t grace_ms) {
  if (shut_down_) return true;
  if (server_) server_->SetServing(false);
  if (core_ && !core_->Shutdown(grace_ms)) return false;
  shut_down_ = true;
  if (server_) server_->Stop(grace_ms);
  return true;
}

}  // namespace updp::app
