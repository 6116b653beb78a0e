#include "server/rpc/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "server/rpc/service_impl.h"

namespace updp::rpc {
namespace {

constexpr char kServiceName[] = "updp.v1.Updp";

void SetHealth(grpc::Server* s, bool serving) {
  if (auto* h = s->GetHealthCheckService()) {
    h->SetServingStatus(serving);  // overall ("") and every service
    h->SetServingStatus(kServiceName, serving);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<UpdpServer>> UpdpServer::Start(const core::ServerOptions& options,
                                                              const std::string& address,
                                                              core::Metrics* metrics) {
  std::unique_ptr<UpdpServer> s(new UpdpServer());
  auto core = core::ServerCore::Create(options, metrics);
  if (!core.ok()) return core.status();
  s->core_ = std::move(*core);
  s->service_ = std::make_unique<UpdpServiceImpl>(s->core_.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &s->port_);
  builder.RegisterService(s->service_.get());
  builder.SetMaxReceiveMessageSize(256 << 20);  // prompt artifacts
  builder.SetMaxSendMessageSize(256 << 20);
  s->server_ = builder.BuildAndStart();
  if (!s->server_ || s->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address));
  }
  SetHealth(s->server_.get(), false);
  if (auto st = s->core_->LoadModel(); !st.ok()) {
    s->Shutdown(0);
    return absl::FailedPreconditionError(
        absl::StrCat("model_dir: checkpoint does not load: ", st.message()));
  }
  s->core_->Start();
  SetHealth(s->server_.get(), true);
  return s;
}

UpdpServer::~UpdpServer() { Shutdown(0); }

void UpdpServer::Shutdown(int64_t grace_ms) {
  if (shut_down_) return;
  shut_down_ = true;
  if (server_) SetHealth(server_.get(), false);
  if (core_) core_->Shutdown(grace_ms);
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(grace_ms));
    server_->Wait();
  }
}

}  // namespace updp::rpc
