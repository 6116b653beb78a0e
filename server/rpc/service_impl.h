// The updp.v1.Updp service on the gRPC callback API: thin handlers that convert
// protos to core calls and absl::Status to grpc::Status (cf. TF Serving's
// prediction_service_impl.cc over ServerCore). Reads answer inline; anything that
// writes, scans or imports runs on the server-owned WorkPool and finishes its reactor
// from there, so no handler blocks a gRPC thread.
#ifndef UPDP_SERVER_RPC_SERVICE_IMPL_H_
#define UPDP_SERVER_RPC_SERVICE_IMPL_H_

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "proto/updp/v1/updp.grpc.pb.h"
#include "server/core/server_core.h"
#include "server/core/work_pool.h"
#include "server/rpc/call_gate.h"
#include "server/rpc/limits.h"
#include "server/rpc/reactor_count.h"

namespace updp::rpc {

class UpdpServiceImpl final : public v1::Updp::CallbackService {
 public:
  // Every call passes `gate` first (tokens, roles, limits) and reports its end to it.
  UpdpServiceImpl(core::ServerCore* core, core::WorkPool* pool, CallGate* gate)
      : core_(core), pool_(pool), gate_(gate), watchers_(gate->limits()) {}

  grpc::ServerUnaryReactor* RegisterDataset(grpc::CallbackServerContext* ctx,
                                            const v1::RegisterDatasetRequest* req,
                                            v1::Dataset* resp) override;
  grpc::ServerReadReactor<v1::UploadEmbeddingsRequest>* UploadEmbeddings(
      grpc::CallbackServerContext* ctx, v1::Dataset* resp) override;
  grpc::ServerUnaryReactor* GetDataset(grpc::CallbackServerContext* ctx,
                                       const v1::GetDatasetRequest* req,
                                       v1::Dataset* resp) override;
  grpc::ServerUnaryReactor* ListDatasets(grpc::CallbackServerContext* ctx,
                                         const v1::ListDatasetsRequest* req,
                                         v1::ListDatasetsResponse* resp) override;
  grpc::ServerUnaryReactor* DeleteDataset(grpc::CallbackServerContext* ctx,
                                          const v1::DeleteDatasetRequest* req,
                                          v1::DeleteDatasetResponse* resp) override;
  grpc::ServerUnaryReactor* RefreshDataset(grpc::CallbackServerContext* ctx,
                                           const v1::RefreshDatasetRequest* req,
                                           v1::Job* resp) override;
  grpc::ServerUnaryReactor* ListItems(grpc::CallbackServerContext* ctx,
                                      const v1::ListItemsRequest* req,
                                      v1::ListItemsResponse* resp) override;
  grpc::ServerUnaryReactor* AttachFeatures(grpc::CallbackServerContext* ctx,
                                           const v1::AttachFeaturesRequest* req,
                                           v1::Job* resp) override;
  grpc::ServerUnaryReactor* StartEmbedding(grpc::CallbackServerContext* ctx,
                                           const v1::StartEmbeddingRequest* req,
                                           v1::Job* resp) override;
  grpc::ServerUnaryReactor* LearnPrompt(grpc::CallbackServerContext* ctx,
                                        const v1::LearnPromptRequest* req, v1::Job* resp) override;
  grpc::ServerUnaryReactor* Select(grpc::CallbackServerContext* ctx, const v1::SelectRequest* req,
                                   v1::Job* resp) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* ctx, const v1::GetJobRequest* req,
                                   v1::Job* resp) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* ctx,
                                     const v1::ListJobsRequest* req,
                                     v1::ListJobsResponse* resp) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* ctx,
                                      const v1::CancelJobRequest* req, v1::Job* resp) override;
  grpc::ServerUnaryReactor* ResumeJob(grpc::CallbackServerContext* ctx,
                                      const v1::ResumeJobRequest* req, v1::Job* resp) override;
  grpc::ServerWriteReactor<v1::JobEvent>* WatchJob(grpc::CallbackServerContext* ctx,
                                                   const v1::WatchJobRequest* req) override;
  grpc::ServerUnaryReactor* GetSelection(grpc::CallbackServerContext* ctx,
                                         const v1::GetSelectionRequest* req,
                                         v1::GetSelectionResponse* resp) override;
  grpc::ServerUnaryReactor* GetSelectionReport(grpc::CallbackServerContext* ctx,
                                               const v1::GetSelectionReportRequest* req,
                                               v1::SelectionReport* resp) override;
  grpc::ServerUnaryReactor* FindDuplicates(grpc::CallbackServerContext* ctx,
                                           const v1::FindDuplicatesRequest* req,
                                           v1::Job* resp) override;
  grpc::ServerUnaryReactor* GetDuplicates(grpc::CallbackServerContext* ctx,
                                          const v1::GetDuplicatesRequest* req,
                                          v1::GetDuplicatesResponse* resp) override;
  grpc::ServerUnaryReactor* ListPrompts(grpc::CallbackServerContext* ctx,
                                        const v1::ListPromptsRequest* req,
                                        v1::ListPromptsResponse* resp) override;
  grpc::ServerUnaryReactor* ExportPrompt(grpc::CallbackServerContext* ctx,
                                         const v1::ExportPromptRequest* req,
                                         v1::ExportPromptResponse* resp) override;
  grpc::ServerUnaryReactor* ImportPrompt(grpc::CallbackServerContext* ctx,
                                         const v1::ImportPromptRequest* req,
                                         v1::Prompt* resp) override;

  // After the gRPC server's Wait: returns once every register and watch reactor is done.
  void WaitForReactors() { live_.WaitAllDone(); }

 private:
  // Admits the call, then runs `fn` now (fast reads).
  template <typename Fn>
  grpc::ServerUnaryReactor* Inline(grpc::CallbackServerContext* ctx, const char* method,
                                   const google::protobuf::Message& req, Fn fn);
  // Admits the call, then runs `fn` on the pool; RESOURCE_EXHAUSTED when the pool's
  // queue is full.
  template <typename Fn>
  grpc::ServerUnaryReactor* Offload(grpc::CallbackServerContext* ctx, const char* method,
                                    const google::protobuf::Message& req, Fn fn);
  void Finish(grpc::ServerUnaryReactor* r, const CallRecord& rec, const grpc::Status& s);

  core::ServerCore* core_;
  core::WorkPool* pool_;
  CallGate* gate_;
  WatcherSlots watchers_;
  ReactorCount live_;
};

}  // namespace updp::rpc

#endif  // UPDP_SERVER_RPC_SERVICE_IMPL_H_
