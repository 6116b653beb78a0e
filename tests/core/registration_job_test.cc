// REGISTER jobs through the ServerCore: checks at the door, and what start-up makes
// of registrations a stopped process left behind (rolled back and not resumable,
// committed, or never started).
#include <filesystem>
#include <fstream>

#include "server/core/server_core.h"
#include "tests/core/core_test_util.h"

namespace updp::testing {
namespace {

namespace fs = std::filesystem;
using core::JobState;

class RegistrationJobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = CoreTempDir("regjob");
    options_.data_dir = root_ + "/data";
    options_.allowed_roots = {root_};
    std::ofstream(root_ + "/list.txt") << "a.png\nb.png\n";  // missing files: failed items
  }
  std::unique_ptr<core::ServerCore> NewCore() {
    auto c = core::ServerCore::Create(options_, nullptr);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }
  core::RegisterParams Manifest() {
    core::RegisterParams p;
    p.source_kind = core::SourceKind::kManifest;
    p.path = root_ + "/list.txt";
    return p;
  }
  // The job's final state, by a one-shot callback (no polling).
  core::JobInfo WaitFinal(core::ServerCore& c, const std::string& id) {
    Note done;
    core::JobInfo last;
    std::mutex mu;
    auto token = c.jobs().WhenDone(id, [&](const core::JobInfo& j) {
      std::lock_guard<std::mutex> l(mu);
      last = j;
      done.Notify();
    });
    EXPECT_TRUE(token.ok()) << token.status();
    EXPECT_TRUE(done.Wait()) << id << " never finished";
    std::lock_guard<std::mutex> l(mu);
    return last;
  }

  std::string root_;
  core::ServerOptions options_;
};

TEST_F(RegistrationJobTest, CheapChecksFailAtTheDoorBeforeAJobExists) {
  auto c = NewCore();
  ASSERT_NE(c, nullptr);
  const auto kManifest = core::SourceKind::kManifest;
  EXPECT_EQ(c->StartRegistration("bad name!", kManifest, root_ + "/list.txt", "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->StartRegistration("a", core::SourceKind::kUnspecified, root_, "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->StartRegistration("a", kManifest, "/etc/hostname", "").status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(c->StartRegistration("a", kManifest, root_ + "/none.txt", "").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(c->ListJobs("", JobState::kUnspecified, 10)->empty());
  EXPECT_TRUE(c->store().UnfinishedDatasets()->empty());
  // A good one is queued with its REGISTERING dataset, and runs once started.
  auto r = c->StartRegistration("a", kManifest, root_ + "/list.txt", "");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->dataset.state, core::DatasetState::kRegistering);
  EXPECT_EQ(r->dataset.registration_job_id, r->job.id);
  EXPECT_EQ(r->job.state, JobState::kQueued);
  c->StartRegistrations();
  core::JobInfo done = WaitFinal(*c, r->job.id);
  EXPECT_EQ(done.state, JobState::kSucceeded) << done.error;
  EXPECT_EQ(done.progress.stage, "items");
  EXPECT_EQ(done.progress.done, 2);
  auto d = c->GetDataset("a");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->num_items, 2);
  EXPECT_EQ(d->num_failed, 2);
  EXPECT_EQ(d->registration_job_id, r->job.id);
}

TEST_F(RegistrationJobTest, StartUpSettlesRegistrationsAStoppedProcessLeft) {
  std::string crashed, committed, queued;
  {
    auto store = core::Store::Open(options_.data_dir);
    ASSERT_TRUE(store.ok());
    auto& s = **store;
    // Crashed while writing items (and a feature file, as an embeddings import would).
    crashed = s.CreateJob("crashed", Manifest())->id;
    core::JobInfo j = *s.GetJob(crashed);
    ASSERT_TRUE(s.Transition(crashed, JobState::kQueued, JobState::kRunning, j).ok());
    ASSERT_TRUE(s.AddItems("crashed", {{0, "x", "/x"}}).ok());
    fs::create_directories(options_.data_dir + "/features/crashed/embeddings");
    std::ofstream(options_.data_dir + "/features/crashed/embeddings/chunk.safetensors") << "x";
    // Crashed between its commit and its final state.
    committed = s.CreateJob("committed", Manifest())->id;
    j = *s.GetJob(committed);
    ASSERT_TRUE(s.Transition(committed, JobState::kQueued, JobState::kRunning, j).ok());
    ASSERT_TRUE(s.CommitDataset("committed", root_ + "/list.txt", 0, {}, "", {}).ok());
    // Never started.
    queued = s.CreateJob("queued", Manifest())->id;
  }
  auto c = NewCore();
  ASSERT_NE(c, nullptr);
  auto rolled = c->store().GetJob(crashed);
  ASSERT_TRUE(rolled.ok());
  EXPECT_EQ(rolled->state, JobState::kInterrupted);
  EXPECT_NE(rolled->progress.message.find("rolled back"), std::string::npos)
      << rolled->progress.message;
  EXPECT_FALSE(fs::exists(options_.data_dir + "/features/crashed"));
  EXPECT_TRUE(c->store().Items("crashed")->empty());
  auto resumed = c->jobs().Resume(crashed);
  EXPECT_EQ(resumed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(resumed.status().message().find("cannot be resumed"), std::string::npos);
  EXPECT_EQ(c->store().GetJob(committed)->state, JobState::kSucceeded);
  EXPECT_TRUE(c->GetDataset("committed").ok());
  // The queued one kept its reservation and runs once the lane starts.
  auto unfinished = c->store().UnfinishedDatasets();
  ASSERT_EQ(unfinished->size(), 1u);
  EXPECT_EQ((*unfinished)[0].name, "queued");
  c->StartRegistrations();
  EXPECT_EQ(WaitFinal(*c, queued).state, JobState::kSucceeded);
  EXPECT_TRUE(c->GetDataset("queued").ok());
  // The rolled-back name is free again.
  auto again =
      c->StartRegistration("crashed", core::SourceKind::kManifest, root_ + "/list.txt", "");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(WaitFinal(*c, again->job.id).state, JobState::kSucceeded);
}

}  // namespace
}  // namespace updp::testing
