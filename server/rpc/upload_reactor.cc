#include "server/rpc/upload_reactor.h"

#include <chrono>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/core/embeddings_upload.h"
#include "server/rpc/convert.h"

namespace updp::rpc {
namespace {

core::UploadDType FromProto(v1::EmbeddingDType t) {
  switch (t) {
    case v1::EMBEDDING_DTYPE_FLOAT16:
      return core::UploadDType::kFloat16;
    case v1::EMBEDDING_DTYPE_FLOAT32:
      return core::UploadDType::kFloat32;
    case v1::EMBEDDING_DTYPE_FLOAT64:
      return core::UploadDType::kFloat64;
    default:
      return core::UploadDType::kUnspecified;
  }
}

class UploadReactor : public grpc::ServerReadReactor<v1::UploadEmbeddingsRequest> {
 public:
  UploadReactor(grpc::CallbackServerContext* ctx, core::ServerCore* core, core::WorkPool* pool,
                CallGate* gate, const CallRecord& rec, v1::Dataset* resp)
      : ctx_(ctx), call_(std::make_shared<Call>()), gate_(gate) {
    call_->reactor = this;
    call_->core = core;
    call_->pool = pool;
    call_->limits = &gate->limits();
    call_->rec = rec;
    call_->resp = resp;
    std::lock_guard<std::mutex> l(call_->mu);
    StartRead(&call_->req);
  }

  void OnReadDone(bool ok) override {
    const auto c = call_;
    // A read that fails on a cancelled call is a broken stream, else the client's end.
    const bool broken = !ok && ctx_->IsCancelled();
    {
      std::lock_guard<std::mutex> l(c->mu);
      if (c->finished || c->cancelled) return;  // OnCancel took over
      c->busy = true;                           // the call's progress is ours now
      if (broken) c->cancelled = true;
    }
    if (broken) {
      FailSoon(c, Broken());
      return;
    }
    // ok: a message to check and write; else the client closed the stream: register.
    const bool queued =
        ok ? c->pool->TrySchedule([c] { Handle(c); }) : c->pool->TrySchedule([c] { End(c); });
    if (!queued) {
      Fail(c, grpc::Status(grpc::RESOURCE_EXHAUSTED,
                           "server busy: too many requests in progress (--rpc_queue); retry "
                           "later; nothing was registered"));
    }
  }

  void OnCancel() override {
    const auto c = call_;
    {
      std::lock_guard<std::mutex> l(c->mu);
      c->cancelled = true;
      if (c->finished) return;
      if (c->registered) {  // the stream was complete: its job does not depend on the call
        FinishLocked(c,
                     grpc::Status(grpc::CANCELLED, "call cancelled; the registration job goes on"));
        return;
      }
      if (c->busy) return;  // the task in flight sees `cancelled` and cleans up
      c->busy = true;       // taken from the outstanding read, which ends with !ok
    }
    FailSoon(c, Broken());
  }

  void OnDone() override {
    {
      std::lock_guard<std::mutex> l(call_->mu);
      call_->reactor = nullptr;
    }
    delete this;
  }

 private:
  // Shared with the pool tasks and the job's end callback, which may outlive the
  // reactor. Who may touch `upload` and `req`: whoever holds the call's progress (a
  // task in flight, `busy`), never two at once.
  struct Call {
    std::mutex mu;
    UploadReactor* reactor = nullptr;  // until OnDone
    bool busy = false;                 // a pool task owns the call's progress
    bool cancelled = false;
    bool registered = false;  // the REGISTER job is queued; the upload belongs to it
    bool finished = false;
    v1::UploadEmbeddingsRequest req;  // the message being read or handled
    const RequestLimits* limits = nullptr;
    CallRecord rec;  // its target is the header's name, once read
    int64_t messages = 0;
    std::shared_ptr<core::EmbeddingsUpload> upload;
    core::ServerCore* core = nullptr;
    core::WorkPool* pool = nullptr;
    v1::Dataset* resp = nullptr;
  };
  using CallPtr = std::shared_ptr<Call>;

  static grpc::Status Broken() {
    return grpc::Status(grpc::CANCELLED,
                        "the stream broke off or was cancelled; nothing was registered");
  }

  // Finishes the call once.
  static void FinishLocked(const CallPtr& c, const grpc::Status& s) {
    if (c->finished) return;
    c->finished = true;
    c->busy = false;
    // Metrics and audit before the answer: a caller who has it finds its audit line.
    c->reactor->gate_->Done(c->rec, s);
    c->reactor->Finish(s);  // OnDone runs later, on another thread
  }

  // By the owner of the call's progress: removes the temporary files, then answers, so
  // that a caller who hears of the failure finds nothing left.
  static void Fail(const CallPtr& c, const grpc::Status& s) {
    c->upload.reset();
    std::lock_guard<std::mutex> l(c->mu);
    FinishLocked(c, s);
  }
  // The same from a gRPC thread: the file removal goes to the pool when it can.
  static void FailSoon(const CallPtr& c, const grpc::Status& s) {
    auto task = [c, s] { Fail(c, s); };
    if (!c->pool->TrySchedule(task)) task();
  }

  // On the pool: checks and writes one message, then reads the next.
  static void Handle(const CallPtr& c) {
    absl::Status s;
    try {
      s = Apply(c);
    } catch (const std::exception& e) {
      s = absl::InternalError(absl::StrCat("upload failed: ", e.what()));
    }
    if (!s.ok()) {
      Fail(c, ToGrpc(s));
      return;
    }
    {
      std::lock_guard<std::mutex> l(c->mu);
      if (!c->cancelled) {
        c->busy = false;
        c->reactor->StartRead(&c->req);
        return;
      }
    }
    Fail(c, Broken());
  }

  static absl::Status Apply(const CallPtr& c) {
    const v1::UploadEmbeddingsRequest& req = c->req;
    ++c->messages;
    if (auto s = CheckRequest(req, *c->limits); !s.ok()) return s;
    switch (req.part_case()) {
      case v1::UploadEmbeddingsRequest::kHeader: {
        if (c->messages > 1) {
          return absl::InvalidArgumentError(
              absl::StrCat("header: only the first message may be the header; message ",
                           c->messages, " is another"));
        }
        const auto& h = req.header();
        {
          std::lock_guard<std::mutex> l(c->mu);
          c->rec.target = h.name();
        }
        core::UploadHeader header;
        header.name = h.name();
        header.rows = h.rows();
        header.dim = h.dim();
        header.dtype = FromProto(h.dtype());
        header.has_ids = h.has_ids();
        auto u = core::EmbeddingsUpload::Begin(c->core, header);
        if (!u.ok()) return u.status();
        c->upload = std::move(*u);
        return absl::OkStatus();
      }
      case v1::UploadEmbeddingsRequest::kChunk: {
        if (!c->upload) return absl::InvalidArgumentError("header: must be the first message");
        const auto& chunk = req.chunk();
        std::vector<absl::string_view> ids(chunk.ids().begin(), chunk.ids().end());
        return c->upload->Append(chunk.data(), ids);
      }
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("message ", c->messages, " has neither a header nor a chunk"));
    }
  }

  // On the pool, after the client closed the stream: registers the upload and answers
  // when its job ends.
  static void End(const CallPtr& c) {
    bool cancelled;
    {
      std::lock_guard<std::mutex> l(c->mu);
      cancelled = c->cancelled;
    }
    if (cancelled) {  // gone before its registration: register nothing
      Fail(c, Broken());
      return;
    }
    absl::StatusOr<core::Registration> r;
    try {
      r = c->upload ? c->upload->Finish()
                    : absl::InvalidArgumentError(
                          "header: must be the first message; the stream carried none");
    } catch (const std::exception& e) {
      r = absl::InternalError(absl::StrCat("upload failed: ", e.what()));
    }
    if (!r.ok()) {
      Fail(c, ToGrpc(r.status()));
      return;
    }
    // The job reads the files: they go when it ends, whatever becomes of the call.
    std::shared_ptr<core::EmbeddingsUpload> upload = std::move(c->upload);
    {
      std::lock_guard<std::mutex> l(c->mu);
      c->busy = false;
      c->registered = true;
      if (c->cancelled) {
        FinishLocked(c,
                     grpc::Status(grpc::CANCELLED, "call cancelled; the registration job goes on"));
      }
    }
    core::ServerCore* core = c->core;
    auto token = core->jobs().WhenDone(r->job.id, [c, upload](const core::JobInfo& j) mutable {
      upload.reset();  // before the answer: a caller who hears of the end finds no file
      auto done = [c, j] { Ended(c, j); };
      bool queued = false;
      {
        // The pool outlives every call that is not finished; under the lock the
        // call cannot finish.
        std::lock_guard<std::mutex> l(c->mu);
        if (c->finished) return;
        queued = c->pool->TrySchedule(done);
      }
      if (!queued) done();
    });
    if (!token.ok()) {
      std::lock_guard<std::mutex> l(c->mu);
      FinishLocked(c, ToGrpc(token.status()));
    }
  }

  // The job ended: the READY dataset, or how the job failed.
  static void Ended(const CallPtr& c, const core::JobInfo& j) {
    if (j.state != core::JobState::kSucceeded) {
      std::lock_guard<std::mutex> l(c->mu);
      FinishLocked(c, RegistrationStatus(j));
      return;
    }
    auto d = c->core->GetDataset(j.dataset);
    std::lock_guard<std::mutex> l(c->mu);
    if (c->finished) return;
    if (!d.ok()) {
      FinishLocked(c, ToGrpc(d.status()));
      return;
    }
    ToProto(*d, c->resp);
    FinishLocked(c, grpc::Status::OK);
  }

  grpc::CallbackServerContext* ctx_;
  CallPtr call_;
  CallGate* gate_;
};

}  // namespace

grpc::ServerReadReactor<v1::UploadEmbeddingsRequest>* NewUploadReactor(
    grpc::CallbackServerContext* ctx, core::ServerCore* core, core::WorkPool* pool,
    CallGate* gate, const CallRecord& rec, v1::Dataset* resp) {
  return new UploadReactor(ctx, core, pool, gate, rec, resp);
}

}  // namespace updp::rpc
