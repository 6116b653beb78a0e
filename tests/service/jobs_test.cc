// Watching, cancelling, resuming and restarting jobs on a real server.
#include <atomic>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>

#include "server/core/store.h"
#include "tests/core/core_test_util.h"
#include "tests/service/test_env.h"

namespace updp::testing {
namespace {

class JobsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempDir("jobs");
    images_ = root_ + "/images";
    WriteImages(images_, 0, 256);
    // Running jobs are held at a checkpoint by the server's JobGate, so the tiny
    // checkpoint is enough: nothing depends on the model being slow.
    model_ = TinyModel(root_, 5);
    server_ = std::make_unique<Server>(root_, model_, /*chunk_size=*/16);
    v1::Dataset d;
    ASSERT_TRUE(server_->Register("fm", images_, &d).ok());
  }
  void TearDown() override {
    if (server_) server_->Stop();
  }
  // Holds the EMBED job at its first progress report at or past `items`.
  void HoldAt(int64_t items) {
    server_->gate().Arm([items](const core::JobInfo& j) {
      return j.state == core::JobState::kRunning && j.progress.stage == "embed" &&
             j.progress.done >= items;
    });
  }
  int64_t ChunkFiles() {
    int64_t n = 0;
    for (const auto& e : fs::directory_iterator(root_ + "/data/features/fm/image"))
      n += e.is_regular_file();
    return n;
  }
  std::string root_, images_, model_;
  std::unique_ptr<Server> server_;
};

struct Watched {
  std::vector<v1::JobEvent> events;
  grpc::Status status;
};

Watched WatchAll(v1::Updp::Stub* stub, const std::string& id, Note* first = nullptr) {
  Watched w;
  grpc::ClientContext c;
  v1::WatchJobRequest r;
  r.set_job_id(id);
  auto reader = stub->WatchJob(&c, r);
  v1::JobEvent ev;
  while (reader->Read(&ev)) {
    w.events.push_back(ev);
    if (first && w.events.size() == 1) first->Notify();
  }
  w.status = reader->Finish();
  return w;
}

TEST_F(JobsTest, TwoWatchersAndOneThatDisconnects) {
  // The job is held at its first progress report until every watcher is attached.
  server_->gate().Arm([](const core::JobInfo& j) { return j.state == core::JobState::kRunning; });
  v1::Job job = server_->Embed("fm");
  ASSERT_TRUE(server_->gate().WaitHeld());
  Watched a, b;
  Note a_attached, b_attached;
  std::thread ta([&] { a = WatchAll(server_->stub(), job.job_id(), &a_attached); });
  std::thread tb([&] { b = WatchAll(server_->stub(), job.job_id(), &b_attached); });
  ASSERT_TRUE(a_attached.Wait());
  ASSERT_TRUE(b_attached.Wait());
  // A watcher that goes away after its first event.
  {
    grpc::ClientContext c;
    v1::WatchJobRequest r;
    r.set_job_id(job.job_id());
    auto reader = server_->stub()->WatchJob(&c, r);
    v1::JobEvent ev;
    ASSERT_TRUE(reader->Read(&ev));
    c.TryCancel();
    while (reader->Read(&ev)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::CANCELLED);
  }
  // A watcher that never reads cannot stall the job.
  grpc::ClientContext stalled_ctx;
  v1::WatchJobRequest sr;
  sr.set_job_id(job.job_id());
  auto stalled = server_->stub()->WatchJob(&stalled_ctx, sr);
  server_->gate().Release();
  ta.join();
  tb.join();
  for (const Watched* w : {&a, &b}) {
    ASSERT_TRUE(w->status.ok()) << w->status.error_message();
    ASSERT_GE(w->events.size(), 2u);
    EXPECT_EQ(w->events.back().job().state(), v1::SUCCEEDED);
    EXPECT_TRUE(w->events.back().final());
    for (size_t i = 0; i + 1 < w->events.size(); ++i) EXPECT_FALSE(w->events[i].final());
    // Progress never goes backwards.
    for (size_t i = 1; i < w->events.size(); ++i) {
      EXPECT_GE(w->events[i].job().progress().done(), w->events[i - 1].job().progress().done());
    }
  }
  EXPECT_EQ(server_->GetJob(job.job_id()).state(), v1::SUCCEEDED);
  // The watcher that never read still gets a consistent stream once it reads: the
  // final event last, in SUCCEEDED (progress was coalesced while it stalled).
  {
    v1::JobEvent ev, last;
    int n = 0;
    while (stalled->Read(&ev)) {
      last = ev;
      ++n;
    }
    EXPECT_TRUE(stalled->Finish().ok());
    ASSERT_GE(n, 1);
    EXPECT_TRUE(last.final());
    EXPECT_EQ(last.job().state(), v1::SUCCEEDED);
  }
  stalled_ctx.TryCancel();
  // Watching a finished job: its final state at once, then the stream closes.
  Watched late = WatchAll(server_->stub(), job.job_id());
  ASSERT_EQ(late.events.size(), 1u);
  EXPECT_TRUE(late.events[0].final());
  EXPECT_EQ(WatchAll(server_->stub(), "job-404").status.error_code(), grpc::NOT_FOUND);
}

TEST_F(JobsTest, CancelStopsWithinABatchAndResumeContinues) {
  HoldAt(32);
  v1::Job job = server_->Embed("fm");
  ASSERT_TRUE(server_->gate().WaitHeld());
  grpc::ClientContext c;
  v1::CancelJobRequest r;
  r.set_job_id(job.job_id());
  v1::Job j;
  ASSERT_TRUE(server_->stub()->CancelJob(&c, r, &j).ok());
  server_->gate().Release();
  v1::Job cancelled = server_->WaitJob(job.job_id(), 60);
  ASSERT_EQ(cancelled.state(), v1::CANCELLED);
  // It stopped within the batch it was in: at most the chunk being written finished.
  const int64_t kept = ChunkFiles();
  EXPECT_GE(kept, 1);
  EXPECT_LE(kept, 3);
  grpc::ClientContext rc;
  v1::ResumeJobRequest rr;
  rr.set_job_id(job.job_id());
  ASSERT_TRUE(server_->stub()->ResumeJob(&rc, rr, &j).ok());
  v1::Job done = server_->WaitJob(job.job_id());
  ASSERT_EQ(done.state(), v1::SUCCEEDED);
  auto res = nlohmann::json::parse(done.result_json());
  EXPECT_EQ(res["chunks_reused"].get<int64_t>(), kept);
  EXPECT_EQ(res["chunks_reused"].get<int>() + res["chunks_computed"].get<int>(), 16);
}

TEST_F(JobsTest, RestartMidJobInterruptsAndResumeSkipsFinishedChunks) {
  HoldAt(48);
  v1::Job job = server_->Embed("fm");
  ASSERT_TRUE(server_->gate().WaitHeld());
  // Stop the server mid-job: once the stop is requested, let the job go on to its
  // next checkpoint, where it becomes INTERRUPTED.
  auto stopping = std::async(std::launch::async, [&] { server_->Stop(/*grace_ms=*/60000); });
  while (!server_->app().core().jobs().stopping()) std::this_thread::yield();
  server_->gate().Release();
  stopping.get();
  // Record the chunk files written so far with their modification times.
  std::map<std::string, fs::file_time_type> before;
  for (const auto& e : fs::directory_iterator(root_ + "/data/features/fm/image")) {
    before[e.path().string()] = fs::last_write_time(e.path());
  }
  ASSERT_GE(before.size(), 2u);
  ASSERT_LE(before.size(), 4u);
  server_->Start();
  v1::Job after = server_->GetJob(job.job_id());
  EXPECT_EQ(after.state(), v1::INTERRUPTED);
  grpc::ClientContext rc;
  v1::ResumeJobRequest rr;
  rr.set_job_id(job.job_id());
  v1::Job j;
  ASSERT_TRUE(server_->stub()->ResumeJob(&rc, rr, &j).ok());
  v1::Job done = server_->WaitJob(job.job_id());
  ASSERT_EQ(done.state(), v1::SUCCEEDED) << done.error();
  auto res = nlohmann::json::parse(done.result_json());
  EXPECT_EQ(res["chunks_reused"].get<size_t>(), before.size());
  EXPECT_EQ(res["chunks_computed"].get<size_t>(), 16 - before.size());
  for (const auto& [path, t] : before) EXPECT_EQ(fs::last_write_time(path), t) << path;
  // The features cover every image.
  grpc::ClientContext sc;
  v1::SelectRequest s;
  s.set_dataset("fm");
  s.set_strategy("random");
  s.set_budget(1000);
  ASSERT_TRUE(server_->stub()->Select(&sc, s, &j).ok());
  EXPECT_EQ(server_->WaitJob(j.job_id()).state(), v1::SUCCEEDED);
  EXPECT_NE(server_->GetJob(j.job_id()).result_json().find("\"rows\":256"), std::string::npos);
}

TEST(CrashTest, RunningJobsBecomeInterruptedOnStart) {
  std::string root = MakeTempDir("crash");
  {
    auto store = core::Store::Open(root + "/data");
    ASSERT_TRUE(store.ok());
    EXPECT_EQ(*(*store)->schema_version(), core::Store::kSchemaVersion);
    core::DatasetInfo d;
    d.name = "ds";
    ASSERT_TRUE((*store)->ReserveDataset(d).ok());
    ASSERT_TRUE((*store)->CommitDataset("ds", "/x", 0, {}, "", {}).ok());
    auto j = (*store)->CreateJob("ds", core::EmbedParams{});
    ASSERT_TRUE(j.ok());
    // As if the process died mid-job.
    ASSERT_TRUE(
        (*store)->Transition(j->id, core::JobState::kQueued, core::JobState::kRunning, *j).ok());
  }
  Server server(root, "");
  EXPECT_EQ(server.GetJob("job-1").state(), v1::INTERRUPTED);
  server.Stop();
}

TEST(StartupTest, RefusesCheckpointThatDoesNotLoad) {
  std::string root = MakeTempDir("badmodel");
  fs::create_directories(root + "/model");
  std::ofstream(root + "/model/config.json") << "{\"model_type\": \"blip-2\"}";
  core::ServerOptions o;
  o.data_dir = root + "/data";
  o.model_dir = root + "/model";
  core::Metrics m;
  auto s = app::App::Start(o, "127.0.0.1:0", &m);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("model.safetensors"), std::string::npos) << s.status();
}

}  // namespace
}  // namespace updp::testing
