// RegisterDataset as a REGISTER job on a real server: progress while it runs (held
// by the JobGate at a progress report), the async form, cancel and failure roll back.
#include <fstream>
#include <future>

#include "server/model/npy.h"
#include "tests/core/core_test_util.h"
#include "tests/service/test_env.h"

namespace updp::testing {
namespace {

class RegistrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempDir("register");
    images_ = root_ + "/images";
    WriteImages(images_, 0, 40);
    server_ = std::make_unique<Server>(root_, "");  // registrations need no model
  }
  void TearDown() override {
    if (server_) server_->Stop();
  }
  // Holds the REGISTER job of `name` at its first progress report in `stage`.
  void HoldAt(const std::string& name, const std::string& stage) {
    server_->gate().Arm([name, stage](const core::JobInfo& j) {
      return j.kind == core::JobKind::kRegister && j.dataset == name && j.progress.stage == stage;
    });
  }
  grpc::Status RegisterAsync(const std::string& name, const std::string& images, v1::Dataset* out) {
    v1::RegisterDatasetRequest r;
    r.set_name(name);
    r.mutable_images()->set_path(images);
    r.set_async(true);
    grpc::ClientContext c;
    return server_->stub()->RegisterDataset(&c, r, out);
  }
  grpc::Status GetDataset(const std::string& name, v1::Dataset* out) {
    grpc::ClientContext c;
    v1::GetDatasetRequest r;
    r.set_name(name);
    return server_->stub()->GetDataset(&c, r, out);
  }
  grpc::Status Cancel(const std::string& id) {
    grpc::ClientContext c;
    v1::CancelJobRequest r;
    r.set_job_id(id);
    v1::Job j;
    return server_->stub()->CancelJob(&c, r, &j);
  }
  std::vector<v1::Job> RegisterJobs() {
    grpc::ClientContext c;
    v1::ListJobsRequest r;
    v1::ListJobsResponse l;
    EXPECT_TRUE(server_->stub()->ListJobs(&c, r, &l).ok());
    std::vector<v1::Job> out;
    for (const auto& j : l.jobs()) {
      if (j.kind() == v1::REGISTER) out.push_back(j);
    }
    return out;
  }

  std::string root_, images_;
  std::unique_ptr<Server> server_;
};

TEST_F(RegistrationTest, ASynchronousRegistrationIsAJobWithProgressWhileItRuns) {
  HoldAt("fm", "items");
  auto call = std::async(std::launch::async, [&] {
    v1::Dataset d;
    grpc::Status s = server_->Register("fm", images_, &d);
    return std::make_pair(s, d);
  });
  ASSERT_TRUE(server_->gate().WaitHeld());
  const std::string id = server_->gate().held().id;
  v1::Job running = server_->GetJob(id);
  EXPECT_EQ(running.kind(), v1::REGISTER);
  EXPECT_EQ(running.state(), v1::RUNNING);
  EXPECT_EQ(running.dataset(), "fm");
  EXPECT_EQ(running.progress().stage(), "items");
  EXPECT_EQ(running.progress().total(), 40);  // the files found
  EXPECT_NE(running.parameters_json().find(images_), std::string::npos);
  ASSERT_EQ(RegisterJobs().size(), 1u);
  v1::Dataset d;
  EXPECT_EQ(GetDataset("fm", &d).error_code(), grpc::NOT_FOUND);  // invisible until committed
  EXPECT_EQ(server_->Register("fm", images_, &d).error_code(), grpc::ALREADY_EXISTS);
  server_->gate().Release();
  auto [status, registered] = call.get();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(registered.state(), v1::DATASET_STATE_READY);
  EXPECT_EQ(registered.num_items(), 40);
  EXPECT_EQ(registered.registration_job_id(), id);
  v1::Job done = server_->GetJob(id);
  EXPECT_EQ(done.state(), v1::SUCCEEDED);
  EXPECT_EQ(done.progress().done(), 40);
  EXPECT_NE(done.result_json().find("\"num_items\":40"), std::string::npos) << done.result_json();
}

TEST_F(RegistrationTest, AsyncReturnsRegisteringAtOnceAndTheJobEndsWithTheDatasetReady) {
  // The job is held: the answer cannot have waited for it.
  HoldAt("fm", "list");
  v1::Dataset d;
  grpc::Status s = RegisterAsync("fm", images_, &d);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(d.name(), "fm");
  EXPECT_EQ(d.state(), v1::DATASET_STATE_REGISTERING);
  EXPECT_EQ(d.source_kind(), v1::SOURCE_KIND_IMAGES);
  ASSERT_FALSE(d.registration_job_id().empty());
  ASSERT_TRUE(server_->gate().WaitHeld());
  EXPECT_EQ(server_->gate().held().id, d.registration_job_id());
  server_->gate().Release();
  EXPECT_EQ(server_->WaitJob(d.registration_job_id()).state(), v1::SUCCEEDED);
  v1::Dataset ready;
  ASSERT_TRUE(GetDataset("fm", &ready).ok());
  EXPECT_EQ(ready.state(), v1::DATASET_STATE_READY);
  EXPECT_EQ(ready.num_items(), 40);
  EXPECT_EQ(ready.registration_job_id(), d.registration_job_id());
  // Cheap checks fail at the door: no job is created.
  EXPECT_EQ(RegisterAsync("out", "/usr/share", &d).error_code(), grpc::PERMISSION_DENIED);
  EXPECT_EQ(RegisterAsync("bad name!", images_, &d).error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_EQ(RegisterAsync("fm", images_, &d).error_code(), grpc::ALREADY_EXISTS);
  EXPECT_EQ(RegisterJobs().size(), 1u);
}

TEST_F(RegistrationTest, CancelStopsTheJobAndRollsTheDatasetBack) {
  // An embeddings source, held after its import: its rows and chunk files exist.
  ASSERT_TRUE(model::WriteNpy(root_ + "/emb.npy", torch::randn({12000, 4})).ok());
  HoldAt("emb", "items");
  auto call = std::async(std::launch::async,
                         [&] { return server_->RegisterNpy("emb", root_ + "/emb.npy"); });
  ASSERT_TRUE(server_->gate().WaitHeld());
  const std::string id = server_->gate().held().id;
  const std::string features = root_ + "/data/features/emb";
  EXPECT_FALSE(fs::is_empty(features + "/embeddings"));
  ASSERT_TRUE(Cancel(id).ok());
  server_->gate().Release();
  grpc::Status s = call.get();
  EXPECT_EQ(s.error_code(), grpc::CANCELLED) << s.error_message();
  EXPECT_NE(s.error_message().find("rolled back"), std::string::npos) << s.error_message();
  v1::Job job = server_->GetJob(id);
  EXPECT_EQ(job.state(), v1::CANCELLED);
  EXPECT_NE(job.progress().message().find("rolled back"), std::string::npos);
  EXPECT_FALSE(fs::exists(features));  // no files left
  // Not resumable; the name is free again, and its rows were removed with it.
  grpc::ClientContext c;
  v1::ResumeJobRequest r;
  r.set_job_id(id);
  v1::Job resumed;
  grpc::Status rs = server_->stub()->ResumeJob(&c, r, &resumed);
  EXPECT_EQ(rs.error_code(), grpc::FAILED_PRECONDITION);
  EXPECT_NE(rs.error_message().find("cannot be resumed"), std::string::npos) << rs.error_message();
  ASSERT_TRUE(server_->RegisterNpy("emb", root_ + "/emb.npy").ok());
  v1::Dataset d;
  ASSERT_TRUE(GetDataset("emb", &d).ok());
  EXPECT_EQ(d.num_items(), 12000);
}

TEST_F(RegistrationTest, ACancelledQueuedRegistrationNeverRunsAndFreesItsName) {
  // One registration executor, held: the next registration waits in the queue.
  server_->Stop();
  server_->options().register_jobs = 1;
  server_->Start();
  HoldAt("a", "list");
  v1::Dataset a, b, again;
  ASSERT_TRUE(RegisterAsync("a", images_, &a).ok());
  ASSERT_TRUE(server_->gate().WaitHeld());
  ASSERT_TRUE(RegisterAsync("b", images_, &b).ok());
  EXPECT_EQ(server_->GetJob(b.registration_job_id()).state(), v1::QUEUED);
  ASSERT_TRUE(Cancel(b.registration_job_id()).ok());
  EXPECT_EQ(server_->GetJob(b.registration_job_id()).state(), v1::CANCELLED);
  // Its name was released with the cancel, while "a" still holds the executor.
  ASSERT_TRUE(RegisterAsync("b", images_, &again).ok());
  EXPECT_NE(again.registration_job_id(), b.registration_job_id());
  server_->gate().Release();
  EXPECT_EQ(server_->WaitJob(a.registration_job_id()).state(), v1::SUCCEEDED);
  EXPECT_EQ(server_->WaitJob(again.registration_job_id()).state(), v1::SUCCEEDED);
  v1::Job never = server_->GetJob(b.registration_job_id());
  EXPECT_EQ(never.state(), v1::CANCELLED);
  EXPECT_EQ(never.started_at().seconds(), 0);  // it never ran
}

TEST_F(RegistrationTest, AFailedRegistrationJobIsFailedWithTheMessageAndTheCode) {
  std::ofstream(root_ + "/dup.csv") << "id,path\na,x.png\na,y.png\n";
  v1::RegisterDatasetRequest r;
  r.set_name("dup");
  r.mutable_manifest()->set_path(root_ + "/dup.csv");
  grpc::ClientContext c;
  v1::Dataset d;
  grpc::Status s = server_->stub()->RegisterDataset(&c, r, &d);
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("duplicate item id 'a'"), std::string::npos)
      << s.error_message();
  auto jobs = RegisterJobs();
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].state(), v1::FAILED);
  EXPECT_EQ(jobs[0].error(), s.error_message());
  EXPECT_EQ(jobs[0].error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_EQ(jobs[0].dataset(), "dup");
  // Nothing is left: the name registers once the manifest is fixed.
  std::ofstream(root_ + "/dup.csv") << "id,path\na,x.png\nb,y.png\n";
  grpc::ClientContext c2;
  EXPECT_TRUE(server_->stub()->RegisterDataset(&c2, r, &d).ok());
  EXPECT_EQ(d.num_failed(), 2);
}

}  // namespace
}  // namespace updp::testing
