// Shared helpers for service tests: a temp workspace, a tiny checkpoint, Fashion-MNIST
// PNGs, and an in-process updp server on a real loopback port.
#ifndef UPDP_TESTS_SERVICE_TEST_ENV_H_
#define UPDP_TESTS_SERVICE_TEST_ENV_H_

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "proto/updp/v1/updp.grpc.pb.h"
#include "server/app/app.h"
#include "server/core/metrics.h"
#include "server/model/test_model.h"
#include "tools/fmnist_lib.h"

namespace updp::testing {

namespace fs = std::filesystem;

inline std::string MakeTempDir(const std::string& tag) {
  std::string tmpl = ::testing::TempDir() + "/updp_" + tag + "_XXXXXX";
  char* d = mkdtemp(tmpl.data());
  return fs::canonical(d).string();
}

// Writes `n` Fashion-MNIST training images (from `offset`) as PNG into `dir`.
inline void WriteImages(const std::string& dir, int offset, int n) {
  static auto* data = new absl::StatusOr<tools::FashionMnist>(tools::LoadFashionMnist("train"));
  ASSERT_TRUE(data->ok()) << data->status();
  ASSERT_TRUE(tools::ExportFashionMnistPng(**data, dir, offset, n).ok());
  fs::remove(dir + "/labels.txt");
  fs::remove(dir + "/labels.npy");
}

inline std::string TinyModel(const std::string& root, uint64_t seed = 3,
                             const char* preset = "tiny") {
  std::string dir = root + "/model-" + preset + "-" + std::to_string(seed);
  if (!fs::exists(dir + "/model.safetensors")) {
    auto cfg = model::PresetConfig(preset);
    EXPECT_TRUE(model::WriteRandomCheckpoint(dir, *cfg, seed).ok());
  }
  return dir;
}

// Holds a running job at a progress checkpoint, deterministically: the job's worker
// blocks inside its progress report once `when` holds, until Release(). No sleeps,
// no "slow enough" models.
class JobGate {
 public:
  void Arm(std::function<bool(const core::JobInfo&)> when) {
    std::lock_guard<std::mutex> l(mu_);
    when_ = std::move(when);
    paused_ = released_ = false;
  }
  // The hook for the job manager.
  void OnProgress(const core::JobInfo& j) {
    std::unique_lock<std::mutex> l(mu_);
    if (!when_ || paused_ || !when_(j)) return;
    paused_ = true;
    at_ = j;
    cv_.notify_all();
    // Bounded, so that a test that failed before Release() cannot hang the suite.
    cv_.wait_for(l, std::chrono::seconds(300), [&] { return released_; });
    when_ = nullptr;
  }
  // Waits until a job is held; false after `timeout_s` (a test failure, not a timing
  // assumption: the job would have had to pass the checkpoint without matching).
  bool WaitHeld(double timeout_s = 300) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, std::chrono::duration<double>(timeout_s), [&] { return paused_; });
  }
  core::JobInfo held() {
    std::lock_guard<std::mutex> l(mu_);
    return at_;
  }
  void Release() {
    std::lock_guard<std::mutex> l(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::function<bool(const core::JobInfo&)> when_;
  bool paused_ = false, released_ = false;
  core::JobInfo at_;
};

class Server {
 public:
  // `base`: options of the gRPC side (tokens, limits, audit) for the tests of those.
  Server(const std::string& root, const std::string& model_dir, int chunk_size = 64,
         int queue_capacity = 64, const app::AppOptions& base = {})
      : base_(base) {
    opts_.data_dir = root + "/data";
    opts_.model_dir = model_dir;
    opts_.allowed_roots = {root};
    opts_.chunk_size = chunk_size;
    opts_.embed_batch_size = 16;
    opts_.queue_capacity = queue_capacity;
    Start();
  }
  void Start() {
    app::AppOptions ao = base_;
    ao.progress_hook = [this](const core::JobInfo& j) { gate_.OnProgress(j); };
    auto s = app::App::Start(opts_, "127.0.0.1:0", &metrics_, ao);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Updp::NewStub(channel_);
  }
  ~Server() {
    gate_.Release();  // never leave a job held (a failed assertion skips Release)
  }
  void Stop(int64_t grace_ms = 10000) {
    gate_.Release();
    stub_.reset();
    channel_.reset();
    EXPECT_TRUE(server_->Shutdown(grace_ms));
    server_.reset();
  }
  JobGate& gate() { return gate_; }
  v1::Updp::Stub* stub() { return stub_.get(); }
  std::shared_ptr<grpc::Channel> channel() { return channel_; }
  app::App& app() { return *server_; }
  core::Metrics& metrics() { return metrics_; }
  core::ServerOptions& options() { return opts_; }

  // Unary helpers returning the status; the response goes to *out.
  grpc::Status Register(const std::string& name, const std::string& images, v1::Dataset* out) {
    v1::RegisterDatasetRequest r;
    r.set_name(name);
    r.mutable_images()->set_path(images);
    grpc::ClientContext c;
    return stub_->RegisterDataset(&c, r, out);
  }
  grpc::Status RegisterNpy(const std::string& name, const std::string& path,
                           const std::string& ids = "") {
    v1::RegisterDatasetRequest r;
    r.set_name(name);
    r.mutable_embeddings()->set_path(path);
    r.mutable_embeddings()->set_ids_path(ids);
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));  // never hang
    v1::Dataset d;
    return stub_->RegisterDataset(&c, r, &d);
  }
  v1::Job Embed(const std::string& ds) {
    v1::StartEmbeddingRequest r;
    r.set_dataset(ds);
    grpc::ClientContext c;
    v1::Job j;
    auto s = stub_->StartEmbedding(&c, r, &j);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return j;
  }
  v1::Job GetJob(const std::string& id) {
    v1::GetJobRequest r;
    r.set_job_id(id);
    grpc::ClientContext c;
    v1::Job j;
    EXPECT_TRUE(stub_->GetJob(&c, r, &j).ok());
    return j;
  }
  // Starts a SELECT job, follows it to its end and fetches the selection; false (the
  // failing step recorded) when any step fails.
  bool SelectAndGet(const std::string& ds, const std::string& strategy, int budget,
                    v1::GetSelectionResponse* out) {
    v1::SelectRequest sr;
    sr.set_dataset(ds);
    sr.set_strategy(strategy);
    sr.set_budget(budget);
    grpc::ClientContext sc;
    v1::Job job;
    if (auto s = stub_->Select(&sc, sr, &job); !s.ok()) {
      ADD_FAILURE() << "Select: " << s.error_message();
      return false;
    }
    if (const v1::Job done = WaitJob(job.job_id()); done.state() != v1::SUCCEEDED) {
      ADD_FAILURE() << "select job " << v1::JobState_Name(done.state()) << ": " << done.error();
      return false;
    }
    grpc::ClientContext gc;
    v1::GetSelectionRequest gr;
    gr.set_job_id(job.job_id());
    if (auto s = stub_->GetSelection(&gc, gr, out); !s.ok()) {
      ADD_FAILURE() << "GetSelection: " << s.error_message();
      return false;
    }
    return true;
  }
  // Follows the job with WatchJob until its final event (or `timeout_s`).
  v1::Job WaitJob(const std::string& id, double timeout_s = 300) {
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
    v1::WatchJobRequest r;
    r.set_job_id(id);
    auto reader = stub_->WatchJob(&c, r);
    v1::JobEvent ev;
    v1::Job last;
    while (reader->Read(&ev)) {
      last = ev.job();
      if (ev.final()) break;
    }
    if (!ev.final()) {
      c.TryCancel();
      ADD_FAILURE() << "job " << id << " did not finish; state " << v1::JobState_Name(last.state());
    }
    reader->Finish().IgnoreError();
    return last;
  }

 private:
  app::AppOptions base_;
  core::ServerOptions opts_;
  core::Metrics metrics_;
  JobGate gate_;
  std::unique_ptr<app::App> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Updp::Stub> stub_;
};

}  // namespace updp::testing

#endif  // UPDP_TESTS_SERVICE_TEST_ENV_H_
