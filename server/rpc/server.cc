#include "server/rpc/server.h"

#include <grpc/grpc.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "server/rpc/service_impl.h"

namespace updp::rpc {
namespace {

constexpr char kServiceName[] = "updp.v1.Updp";

}  // namespace

absl::StatusOr<std::unique_ptr<UpdpServer>> UpdpServer::Start(core::ServerCore* core,
                                                              const std::string& address,
                                                              const RpcOptions& options) {
  if (auto st = ValidateLimits(options.limits); !st.ok()) return st;
  std::unique_ptr<UpdpServer> s(new UpdpServer());
  s->pool_ = std::make_unique<core::WorkPool>(options.pool_threads, options.pool_queue);
  s->gate_ = std::make_unique<CallGate>(core->metrics(), options.tokens, options.audit,
                                        options.limits);
  s->service_ = std::make_unique<UpdpServiceImpl>(core, s->pool_.get(), s->gate_.get());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(
      address, options.credentials ? options.credentials : grpc::InsecureServerCredentials(),
      &s->port_);
  // Two servers on one port would share requests between two states.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(s->service_.get());
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.limits.max_request_bytes));
  builder.SetMaxSendMessageSize(options.max_send_bytes);
  s->server_ = builder.BuildAndStart();
  if (!s->server_ || s->port_ == 0) {
    // gRPC also fails here on TLS material its handshaker rejects (tls.cc checks the
    // usual mistakes first).
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", address,
        options.credentials ? " (in use by another process, or TLS files gRPC rejects?)"
                            : " (in use by another process?)"));
  }
  s->SetServing(false);
  return s;
}

UpdpServer::~UpdpServer() { Stop(0); }

void UpdpServer::SetServing(bool serving) {
  if (!server_) return;
  if (auto* h = server_->GetHealthCheckService()) {
    h->SetServingStatus(serving);  // overall ("") and every service
    h->SetServingStatus(kServiceName, serving);
  }
}

void UpdpServer::Stop(int64_t grace_ms) {
  if (stopped_) return;
  stopped_ = true;
  if (server_) {
    SetServing(false);
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(grace_ms));
    server_->Wait();
    if (service_) service_->WaitForReactors();
  }
  if (pool_) pool_->Shutdown();
}

}  // namespace updp::rpc
