#include "server/rpc/service_impl.h"

#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include "server/rpc/convert.h"
#include "server/rpc/reactor_count.h"
#include "server/rpc/upload_reactor.h"

namespace updp::rpc {
namespace {

// Streams a job's events. Updates arrive from the job's worker thread through a
// non-blocking callback; progress-only updates replace the pending one (so a slow
// client sees the latest progress, never a backlog), state changes are all kept.
class WatchReactor : public grpc::ServerWriteReactor<v1::JobEvent> {
 public:
  // Holds one of `slots` (acquired by the caller) until the stream ends.
  WatchReactor(core::ServerCore* core, CallGate* gate, ReactorCount* live, const CallRecord& rec,
               WatcherSlots* slots, const std::string& job_id)
      : core_(core), gate_(gate), live_(live), rec_(rec), slots_(slots), job_id_(job_id) {
    live_->Add();
    auto token = core_->jobs().Subscribe(job_id, [this](const core::JobInfo& j) { OnUpdate(j); });
    if (!token.ok()) {
      std::lock_guard<std::mutex> l(mu_);
      finished_ = true;
      status_ = ToGrpc(token.status());
      ReleaseSlotLocked();
      Finish(status_);
      return;
    }
    std::lock_guard<std::mutex> l(mu_);
    token_ = *token;
    subscribed_ = true;
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> l(mu_);
    writing_ = false;
    if (finished_) return;
    if (!ok || cancelled_) {
      FinishLocked(grpc::Status::CANCELLED);
      return;
    }
    if (sent_final_) {
      FinishLocked(grpc::Status::OK);
      return;
    }
    WriteNextLocked();
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> l(mu_);
    cancelled_ = true;
    if (!writing_ && !finished_) FinishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    int64_t token;
    bool sub;
    {
      std::lock_guard<std::mutex> l(mu_);
      token = token_;
      sub = subscribed_;
    }
    // After Unsubscribe returns no callback can reach this object.
    if (sub) core_->jobs().Unsubscribe(token);
    {
      std::lock_guard<std::mutex> l(mu_);
      ReleaseSlotLocked();
    }
    gate_->Done(rec_, status_);
    ReactorCount* live = live_;
    delete this;
    live->Done();
  }

 private:
  void OnUpdate(const core::JobInfo& j) {
    std::lock_guard<std::mutex> l(mu_);
    if (finished_ || sent_final_ || final_queued_) return;
    if (!pending_.empty() && pending_.back().state == j.state) {
      pending_.back() = j;
    } else {
      pending_.push_back(j);
    }
    if (core::IsTerminal(j.state)) final_queued_ = true;
    if (!writing_) WriteNextLocked();
  }

  void WriteNextLocked() {
    if (pending_.empty() || writing_ || finished_) return;
    core::JobInfo j = pending_.front();
    pending_.pop_front();
    event_.Clear();
    ToProto(j, event_.mutable_job());
    const bool final = core::IsTerminal(j.state);
    event_.set_final(final);
    sent_final_ = final;
    writing_ = true;
    StartWrite(&event_);
  }

  // Before the status goes out: a client that saw its stream end finds the slot free.
  void ReleaseSlotLocked() {
    if (slot_released_) return;
    slot_released_ = true;
    slots_->Release(job_id_);
  }

  void FinishLocked(grpc::Status s) {
    ReleaseSlotLocked();
    finished_ = true;
    status_ = s;
    Finish(s);
  }

  core::ServerCore* core_;
  CallGate* gate_;
  ReactorCount* live_;
  const CallRecord rec_;
  WatcherSlots* slots_;
  const std::string job_id_;
  std::mutex mu_;
  int64_t token_ = 0;
  bool subscribed_ = false;
  bool writing_ = false, finished_ = false, cancelled_ = false;
  bool sent_final_ = false, final_queued_ = false;
  bool slot_released_ = false;
  std::deque<core::JobInfo> pending_;
  v1::JobEvent event_;
  grpc::Status status_ = grpc::Status::OK;
};

core::SourceKind KindOf(const v1::RegisterDatasetRequest& r, std::string* path, std::string* ids) {
  switch (r.source_case()) {
    case v1::RegisterDatasetRequest::kImages:
      *path = r.images().path();
      return core::SourceKind::kImages;
    case v1::RegisterDatasetRequest::kManifest:
      *path = r.manifest().path();
      return core::SourceKind::kManifest;
    case v1::RegisterDatasetRequest::kEmbeddings:
      *path = r.embeddings().path();
      *ids = r.embeddings().ids_path();
      return core::SourceKind::kEmbeddings;
    default:
      return core::SourceKind::kUnspecified;
  }
}

// RegisterDataset: the registration is queued as a REGISTER job from the request pool;
// an async call finishes there, a synchronous one when the job ends (a one-shot
// JobManager::WhenDone: no thread waits). The job does not depend on the call: a
// client that goes away (or a server that stops taking calls) ends the call with
// CANCELLED, and the job carries on.
class RegisterReactor : public grpc::ServerUnaryReactor {
 public:
  RegisterReactor(core::ServerCore* core, core::WorkPool* pool, CallGate* gate, ReactorCount* live,
                  const CallRecord& rec, const v1::RegisterDatasetRequest& req, v1::Dataset* resp)
      : core_(core), gate_(gate), live_(live), rec_(rec), call_(std::make_shared<Call>()) {
    live_->Add();
    call_->reactor = this;
    call_->resp = resp;
    // Everything the pool needs is copied: it never touches the request.
    Request r;
    r.name = req.name();
    r.kind = KindOf(req, &r.path, &r.ids);
    r.async = req.async();
    auto call = call_;
    if (!pool->TrySchedule([call, core, pool, r] { Begin(call, core, pool, r); })) {
      Answer(call_, grpc::Status(grpc::RESOURCE_EXHAUSTED,
                                 "server busy: too many requests in progress (--rpc_queue); "
                                 "retry later"));
    }
  }

  void OnCancel() override {
    Answer(call_, grpc::Status(grpc::CANCELLED, "call cancelled; the registration job goes on"));
  }

  void OnDone() override {
    int64_t token = 0;
    {
      std::lock_guard<std::mutex> l(call_->mu);
      token = call_->token;
      call_->reactor = nullptr;
    }
    // A job callback still pending finds the call finished and returns.
    if (token) core_->jobs().Unsubscribe(token);
    ReactorCount* live = live_;
    delete this;
    live->Done();
  }

 private:
  struct Request {
    std::string name, path, ids;
    core::SourceKind kind = core::SourceKind::kUnspecified;
    bool async = false;
  };
  // Shared with the pool task and the job callback, which may outlive the reactor:
  // they touch the reactor and the response only while the call is not finished.
  struct Call {
    std::mutex mu;
    bool finished = false;
    int64_t token = 0;
    RegisterReactor* reactor = nullptr;
    v1::Dataset* resp = nullptr;
  };

  // On the pool: check, reserve and queue; then answer, or answer when the job ends.
  static void Begin(const std::shared_ptr<Call>& call, core::ServerCore* core, core::WorkPool* pool,
                    const Request& req) {
    {
      std::lock_guard<std::mutex> l(call->mu);
      if (call->finished) return;  // the client is gone: queue nothing
    }
    absl::StatusOr<core::Registration> r;
    try {
      r = core->StartRegistration(req.name, req.kind, req.path, req.ids);
    } catch (const std::exception& e) {
      r = absl::InternalError(e.what());
    }
    if (!r.ok()) {
      Answer(call, ToGrpc(r.status()));
      return;
    }
    if (req.async) {
      Answer(call, grpc::Status::OK, &r->dataset);
      return;
    }
    // Called on the job's worker (or here, if the job already ended); the dataset is
    // read on the pool, or right there when the pool refuses more work.
    auto token = core->jobs().WhenDone(r->job.id, [call, core, pool](const core::JobInfo& j) {
      auto done = [call, core, j] { Ended(call, core, j); };
      if (!pool->TrySchedule(done)) done();
    });
    if (!token.ok()) {
      Answer(call, ToGrpc(token.status()));
      return;
    }
    std::lock_guard<std::mutex> l(call->mu);
    call->token = *token;
  }

  static void Ended(const std::shared_ptr<Call>& call, core::ServerCore* core,
                    const core::JobInfo& j) {
    if (j.state != core::JobState::kSucceeded) {
      Answer(call, RegistrationStatus(j));
      return;
    }
    auto d = core->GetDataset(j.dataset);
    if (!d.ok()) {
      Answer(call, ToGrpc(d.status()));
      return;
    }
    Answer(call, grpc::Status::OK, &*d);
  }

  // Finishes the call once (later answers are dropped); `d` is the response.
  static void Answer(const std::shared_ptr<Call>& call, const grpc::Status& s,
                     const core::DatasetInfo* d = nullptr) {
    RegisterReactor* r;
    {
      std::lock_guard<std::mutex> l(call->mu);
      if (call->finished || call->reactor == nullptr) return;
      call->finished = true;
      if (d && s.ok()) ToProto(*d, call->resp);
      r = call->reactor;
    }
    // Metrics and audit before the answer: a caller who has it finds its audit line.
    r->gate_->Done(r->rec_, s);
    r->Finish(s);  // outside the lock: OnDone takes it
  }

  core::ServerCore* core_;
  CallGate* gate_;
  ReactorCount* live_;
  const CallRecord rec_;
  std::shared_ptr<Call> call_;
};

// A streaming call the gate refused: finishes at once.
template <typename Base>
class Refused : public Base {
 public:
  explicit Refused(const grpc::Status& s) { this->Finish(s); }
  void OnDone() override { delete this; }
};

}  // namespace

template <typename Fn>
grpc::Status RunGuarded(Fn& fn) {
  try {
    return ToGrpc(fn());
  } catch (const std::exception& e) {
    return ToGrpc(absl::InternalError(e.what()));
  }
}

void UpdpServiceImpl::Finish(grpc::ServerUnaryReactor* r, const CallRecord& rec,
                             const grpc::Status& s) {
  gate_->Done(rec, s);
  r->Finish(s);
}

template <typename Fn>
grpc::ServerUnaryReactor* UpdpServiceImpl::Inline(grpc::CallbackServerContext* ctx,
                                                  const char* method,
                                                  const google::protobuf::Message& req, Fn fn) {
  auto* r = ctx->DefaultReactor();
  CallRecord rec;
  if (auto s = gate_->Admit(ctx, method, &req, &rec); !s.ok()) {
    r->Finish(s);
    return r;
  }
  Finish(r, rec, RunGuarded(fn));
  return r;
}

template <typename Fn>
grpc::ServerUnaryReactor* UpdpServiceImpl::Offload(grpc::CallbackServerContext* ctx,
                                                   const char* method,
                                                   const google::protobuf::Message& req, Fn fn) {
  auto* r = ctx->DefaultReactor();
  CallRecord rec;
  if (auto s = gate_->Admit(ctx, method, &req, &rec); !s.ok()) {
    r->Finish(s);
    return r;
  }
  // The request and response stay valid until Finish: gRPC owns them until then.
  const bool queued = pool_->TrySchedule(
      [this, r, rec, fn = std::move(fn)]() mutable { Finish(r, rec, RunGuarded(fn)); });
  if (!queued) {
    Finish(r, rec,
           grpc::Status(grpc::RESOURCE_EXHAUSTED,
                        "server busy: too many requests in progress (--rpc_queue); retry later"));
  }
  return r;
}

grpc::ServerUnaryReactor* UpdpServiceImpl::RegisterDataset(grpc::CallbackServerContext* ctx,
                                                           const v1::RegisterDatasetRequest* req,
                                                           v1::Dataset* resp) {
  CallRecord rec;
  if (auto s = gate_->Admit(ctx, "RegisterDataset", req, &rec); !s.ok()) {
    auto* r = ctx->DefaultReactor();
    r->Finish(s);
    return r;
  }
  return new RegisterReactor(core_, pool_, gate_, &live_, rec, *req, resp);
}

grpc::ServerReadReactor<v1::UploadEmbeddingsRequest>* UpdpServiceImpl::UploadEmbeddings(
    grpc::CallbackServerContext* ctx, v1::Dataset* resp) {
  CallRecord rec;
  if (auto s = gate_->Admit(ctx, "UploadEmbeddings", nullptr, &rec); !s.ok()) {
    return new Refused<grpc::ServerReadReactor<v1::UploadEmbeddingsRequest>>(s);
  }
  return NewUploadReactor(ctx, core_, pool_, gate_, rec, resp);
}

grpc::ServerUnaryReactor* UpdpServiceImpl::GetDataset(grpc::CallbackServerContext* ctx,
                                                      const v1::GetDatasetRequest* req,
                                                      v1::Dataset* resp) {
  return Inline(ctx, "GetDataset", *req, [&]() -> absl::Status {
    auto d = core_->GetDataset(req->name());
    if (!d.ok()) return d.status();
    ToProto(*d, resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* UpdpServiceImpl::ListDatasets(grpc::CallbackServerContext* ctx,
                                                        const v1::ListDatasetsRequest* req,
                                                        v1::ListDatasetsResponse* resp) {
  return Inline(ctx, "ListDatasets", *req, [&]() -> absl::Status {
    auto list = core_->ListDatasets();
    if (!list.ok()) return list.status();
    for (const auto& d : *list) ToProto(d, resp->add_datasets());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* UpdpServiceImpl::DeleteDataset(grpc::CallbackServerContext* ctx,
                                                         const v1::DeleteDatasetRequest* req,
                                                         v1::DeleteDatasetResponse*) {
  return Offload(ctx, "DeleteDataset", *req, [this, req] { return core_->DeleteDataset(req->name()); });
}

grpc::ServerUnaryReactor* UpdpServiceImpl::StartEmbedding(grpc::CallbackServerContext* ctx,
                                                          const v1::StartEmbeddingRequest* req,
                                                          v1::Job* resp) {
  return Offload(ctx, "StartEmbedding", *req, [this, req, resp]() -> absl::Status {
    auto j = core_->StartEmbedding(req->dataset(), req->batch_size());
    if (!j.ok()) return j.status();
    ToProto(*j, resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* UpdpServiceImpl::AttachFeatures(grpc::CallbackServerContext* ctx,
                                                          const v1::AttachFeaturesRequest* req,
                                                          v1::Job* resp) {
  return Offload(ctx, "AttachFeatures", *req, [this, req, resp]() -> absl::Status {
    auto j = core_->AttachFeatures(req->dataset(), req->dir());
    if (!j.ok()) return j.status();
    ToProto(*j, resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* UpdpServiceImpl::RefreshDataset(grpc::CallbackServerContext* ctx,
                                                          const v1::RefreshDatasetRequest* req,
                                                          v1::Job* resp) {
  return Offload(ctx, "RefreshDataset", *req, [this, req, resp]() -> absl::Status {
    auto j = core_->StartRefresh(req->name());
    if (!j.ok()) return j.status();
    ToProto(*j, resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* UpdpServiceImpl::ListItems(grpc::CallbackServerContext* ctx,
                                                     const v1::ListItemsRequest* req,
                                                     v1::ListItemsResponse* resp) {
  return Inline(ctx, "ListItems", *req, [&]() -> absl::Status {
    auto page = core_->ListItems(req->dataset(), req->page_size(), req->page_token());
    if (!page.ok()) return page.status();
    for (const auto& r : page->items) {
      auto* it = resp->add_items();
      it->set_index(r.idx);
      it->set_item_id(r.item_id);
      it->set_path(r.path);
      it->set_generation(r.generation);
      it->set_missing(r.missing);
    }
    resp->set_next_page_token(page->next_page_token);
    resp->set_total(page->total);
    resp->set_chunk_size(page->chunk_size);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* UpdpServiceImpl::LearnPrompt(grpc::CallbackServerContext* ctx,
                                                       const v1::LearnPromptRequest* req,
                                                       v1::Job* resp) {
  return Offload(ctx, "LearnPrompt", *req, [this, req, resp]() -> absl::Status {
    core::LearnPromptParams p;
    p.prompt_name = req->prompt_name();
    if (req->num_context()) p.num_context = req->num_context();
    p.num_clusters = req->num_clusters();
    p.intended_budget = req->intended_budget();
    if (req->epochs()) p.epochs = req->epochs();
    if (req->batch_size()) p.batch_size = req->batch_size();
    if (req->learning_rate() != 0) p.learning_rate = req->learning_rate();
    if (req->views()) p.views = req->views();
    p.seed = req->seed();
    if (!req->init_phrase().empty()) p.init_phrase = req->init_phrase();
    p.max_train_items = req->max_train_items();
    auto j = core_->LearnPrompt(req->dataset(), std::move(p));
    if (!j.ok()) return j.status();
    ToProto(*j, resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* UpdpServiceImpl::Select(grpc::CallbackServerContext* ctx,
                                                  const v1::SelectRequest* req, v1::Job* resp) {
  return Offload(ctx, "Select", *req, [this, req, resp]() -> absl::Status {
    core::SelectParams p;
    p.strategy = req->strategy();
    p.budget = req->budget();
    p.seed = req->seed();
    p.features = req->features();
    p.prompt = req->prompt();
    p.labeled_ids.assign(req->labeled_ids().begin(), req->labeled_ids().end());
    p.rule = req->rule();
    p.strict_labeled = req->strict_labeled();
    p.dedup = req->dedup();
    p.only_new = req->only_new();
    auto j = core_->Select(req->dataset(), std::move(p));
    if (!j.ok()) return j.status();
    ToProto(*j, resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* UpdpServiceImpl::GetJob(grpc::CallbackServerContext* ctx,
                                                  const v1::GetJobRequest* req, v1::Job* resp) {
  return Inline(ctx, "GetJob", *req, [&]() -> absl::Status {
    auto j = core_->jobs().Get(req->job_id());
    if (!j.ok()) return j.status();
    ToProto(*j, resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* UpdpServiceImpl::ListJobs(grpc::CallbackServerContext* ctx,
                                                    const v1::ListJobsRequest* req,
                                                    v1::ListJobsResponse* resp) {
  return Inline(ctx, "ListJobs", *req, [&]() -> absl::Status {
    auto list = core_->ListJobs(req->dataset(), FromProto(req->state()), req->limit());
    if (!list.ok()) return list.status();
    for (const auto& j : *list) {
      // Running jobs: the live progress, not the last persisted one.
      auto live = core_->jobs().Get(j.id);
      ToProto(live.ok() ? *live : j, resp->add_jobs());
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* UpdpServiceImpl::CancelJob(grpc::CallbackServerContext* ctx,
                                                     const v1::CancelJobRequest* req,
                                                     v1::Job* resp) {
  return Offload(ctx, "CancelJob", *req, [this, req, resp]() -> absl::Status {
    auto j = core_->jobs().Cancel(req->job_id());
    if (!j.ok()) return j.status();
    ToProto(*j, resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* UpdpServiceImpl::ResumeJob(grpc::CallbackServerContext* ctx,
                                                     const v1::ResumeJobRequest* req,
                                                     v1::Job* resp) {
  return Offload(ctx, "ResumeJob", *req, [this, req, resp]() -> absl::Status {
    auto j = core_->jobs().Resume(req->job_id());
    if (!j.ok()) return j.status();
    ToProto(*j, resp);
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::JobEvent>* UpdpServiceImpl::WatchJob(grpc::CallbackServerContext* ctx,
                                                                  const v1::WatchJobRequest* req) {
  CallRecord rec;
  if (auto s = gate_->Admit(ctx, "WatchJob", req, &rec); !s.ok()) {
    return new Refused<grpc::ServerWriteReactor<v1::JobEvent>>(s);
  }
  if (auto st = watchers_.Acquire(req->job_id()); !st.ok()) {
    const grpc::Status s = ToGrpc(st);
    gate_->Done(rec, s);
    return new Refused<grpc::ServerWriteReactor<v1::JobEvent>>(s);
  }
  return new WatchReactor(core_, gate_, &live_, rec, &watchers_, req->job_id());
}

grpc::ServerUnaryReactor* UpdpServiceImpl::GetSelection(grpc::CallbackServerContext* ctx,
                                                        const v1::GetSelectionRequest* req,
                                                        v1::GetSelectionResponse* resp) {
  return Inline(ctx, "GetSelection", *req, [&]() -> absl::Status {
    auto page = core_->GetSelection(req->job_id(), req->page_size(), req->page_token());
    if (!page.ok()) return page.status();
    for (const auto& r : page->items) {
      auto* it = resp->add_items();
      it->set_rank(r.rank);
      it->set_item_id(r.item_id);
      it->set_path(r.path);
      it->set_cluster(r.cluster);
      it->set_score(r.score);
    }
    resp->set_next_page_token(page->next_page_token);
    resp->set_total(page->total);
    resp->set_strategy(page->strategy);
    resp->set_dataset(page->dataset);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* UpdpServiceImpl::GetSelectionReport(
    grpc::CallbackServerContext* ctx, const v1::GetSelectionReportRequest* req,
    v1::SelectionReport* resp) {
  // Decodes images for the thumbnails: on the work pool.
  return Offload(ctx, "GetSelectionReport", *req, [this, req, resp]() -> absl::Status {
    core::SelectionReportRequest r;
    r.job_id = req->job_id();
    r.thumbnail_size = req->thumbnail_size();
    r.page_size = req->page_size();
    r.page_token = req->page_token();
    r.max_thumbnails = req->max_thumbnails();
    auto rep = core_->GetSelectionReport(r);
    if (!rep.ok()) return rep.status();
    if (rep->summary) {
      ToProto(rep->dataset, resp->mutable_dataset());
      ToProto(rep->job, resp->mutable_job());
      for (const auto& c : rep->clusters) {
        auto* o = resp->add_clusters();
        o->set_cluster(c.id);
        o->set_size(c.size);
        o->set_picks(c.picks);
      }
      for (const auto& p : rep->points) {
        auto* o = resp->add_points();
        o->set_x(p.x);
        o->set_y(p.y);
        o->set_item_index(p.item_idx);
        o->set_rank(p.rank);
        o->set_cluster(p.cluster);
      }
      resp->set_explained_x(rep->explained[0]);
      resp->set_explained_y(rep->explained[1]);
      resp->set_pca_sample_items(rep->sample_rows);
      resp->set_cluster_rule(rep->cluster_rule);
    }
    resp->set_has_images(rep->has_images);
    resp->set_thumbnail_size(rep->thumbnail_size);
    for (auto& p : rep->picks) {
      auto* o = resp->add_picks();
      auto* it = o->mutable_item();
      it->set_rank(p.row.rank);
      it->set_item_id(p.row.item_id);
      it->set_path(p.row.path);
      it->set_cluster(p.row.cluster);
      it->set_score(p.row.score);
      o->set_report_cluster(p.report_cluster);
      o->set_thumbnail_jpeg(std::move(p.thumbnail));
      o->set_thumbnail_error(p.thumbnail_error);
    }
    resp->set_next_page_token(rep->next_page_token);
    resp->set_total_picks(rep->total_picks);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* UpdpServiceImpl::FindDuplicates(grpc::CallbackServerContext* ctx,
                                                          const v1::FindDuplicatesRequest* req,
                                                          v1::Job* resp) {
  return Offload(ctx, "FindDuplicates", *req, [this, req, resp]() -> absl::Status {
    core::DuplicatesParams p;
    p.threshold = req->threshold();
    p.features = req->features();
    auto j = core_->FindDuplicates(req->dataset(), std::move(p));
    if (!j.ok()) return j.status();
    ToProto(*j, resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* UpdpServiceImpl::GetDuplicates(grpc::CallbackServerContext* ctx,
                                                         const v1::GetDuplicatesRequest* req,
                                                         v1::GetDuplicatesResponse* resp) {
  return Inline(ctx, "GetDuplicates", *req, [&]() -> absl::Status {
    auto page = core_->GetDuplicates(req->job_id(), req->page_size(), req->page_token());
    if (!page.ok()) return page.status();
    for (const auto& d : page->items) {
      auto* it = resp->add_items();
      it->set_group(d.row.cluster);
      it->set_representative(d.representative);
      it->set_similarity(d.row.score);
      auto* item = it->mutable_item();
      item->set_index(d.row.item_idx);
      item->set_item_id(d.row.item_id);
      item->set_path(d.row.path);
    }
    resp->set_next_page_token(page->next_page_token);
    resp->set_total_items(page->total_items);
    resp->set_total_groups(page->total_groups);
    resp->set_threshold(page->threshold);
    resp->set_dataset(page->dataset);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* UpdpServiceImpl::ListPrompts(grpc::CallbackServerContext* ctx,
                                                       const v1::ListPromptsRequest* req,
                                                       v1::ListPromptsResponse* resp) {
  return Inline(ctx, "ListPrompts", *req, [&]() -> absl::Status {
    auto list = core_->ListPrompts();
    if (!list.ok()) return list.status();
    for (const auto& p : *list) ToProto(p, resp->add_prompts());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* UpdpServiceImpl::ExportPrompt(grpc::CallbackServerContext* ctx,
                                                        const v1::ExportPromptRequest* req,
                                                        v1::ExportPromptResponse* resp) {
  return Offload(ctx, "ExportPrompt", *req, [this, req, resp]() -> absl::Status {
    auto p = core_->ExportPrompt(req->name());
    if (!p.ok()) return p.status();
    ToProto(p->first, resp->mutable_prompt());
    resp->set_artifact(p->second);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* UpdpServiceImpl::ImportPrompt(grpc::CallbackServerContext* ctx,
                                                        const v1::ImportPromptRequest* req,
                                                        v1::Prompt* resp) {
  return Offload(ctx, "ImportPrompt", *req, [this, req, resp]() -> absl::Status {
    auto p = core_->ImportPrompt(req->name(), req->artifact());
    if (!p.ok()) return p.status();
    ToProto(*p, resp);
    return absl::OkStatus();
  });
}

}  // namespace updp::rpc
