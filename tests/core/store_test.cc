// The store: staged registration and deletion, prompt-name reservations, SQLite
// errors surfacing as INTERNAL.
#include "server/core/store.h"

#include <sqlite3.h>

#include "tests/core/core_test_util.h"

namespace updp::testing {
namespace {

using core::JobState;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = CoreTempDir("store");
    auto s = core::Store::Open(dir_);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  core::DatasetInfo Named(const std::string& n) {
    core::DatasetInfo d;
    d.name = n;
    d.source_kind = core::SourceKind::kManifest;
    return d;
  }
  core::JobParams Learn(const std::string& prompt) {
    core::LearnPromptParams p;
    p.prompt_name = prompt;
    return p;
  }
  void SetState(const std::string& id, JobState from, JobState to) {
    core::JobInfo j = *store_->GetJob(id);
    ASSERT_TRUE(store_->Transition(id, from, to, j).ok());
  }
  std::string dir_;
  std::unique_ptr<core::Store> store_;
};

TEST_F(StoreTest, SchemaIsCurrent) {
  EXPECT_EQ(*store_->schema_version(), core::Store::kSchemaVersion);
  EXPECT_EQ(*store_->IntegrityCheck(), "ok");
}

TEST_F(StoreTest, ARegistrationHoldsItsNameAndIsInvisibleUntilCommitted) {
  ASSERT_TRUE(store_->ReserveDataset(Named("a")).ok());
  auto again = store_->ReserveDataset(Named("a"));
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(again.message().find("being registered"), std::string::npos) << again;
  EXPECT_EQ(store_->GetDataset("a").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store_->ListDatasets()->empty());
  EXPECT_EQ(store_->CreateJob("a", core::EmbedParams{}).status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(store_->AddItems("a", {{0, "x", "/x"}, {1, "y", "/y"}}).ok());
  ASSERT_TRUE(store_->CommitDataset("a", "/m", 2, {{"y", "/y", "bad"}}, "", nullptr).ok());
  auto d = store_->GetDataset("a");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->num_items, 2);
  EXPECT_EQ(d->num_failed, 1);
  EXPECT_EQ(d->source_path, "/m");
  EXPECT_EQ(store_->ReserveDataset(Named("a")).code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(StoreTest, RollBackRemovesEveryRow) {
  ASSERT_TRUE(store_->ReserveDataset(Named("a")).ok());
  ASSERT_TRUE(store_->AddItems("a", {{0, "x", "/x"}}).ok());
  auto unfinished = store_->UnfinishedDatasets();
  ASSERT_EQ(unfinished->size(), 1u);
  EXPECT_EQ((*unfinished)[0].second, core::DatasetState::kRegistering);
  ASSERT_TRUE(store_->RemoveDataset("a").ok());
  EXPECT_TRUE(store_->UnfinishedDatasets()->empty());
  EXPECT_TRUE(store_->Items("a")->empty());
  EXPECT_TRUE(store_->ReserveDataset(Named("a")).ok());  // the name is free again
}

TEST_F(StoreTest, DeleteIsRefusedWhileAJobIsQueuedAndBlocksNewJobsOnceStarted) {
  AddReadyDataset(*store_, "a");
  auto j = store_->CreateJob("a", core::EmbedParams{});
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(store_->BeginDeleteDataset("a").status().code(), absl::StatusCode::kFailedPrecondition);
  SetState(j->id, JobState::kQueued, JobState::kCancelled);
  auto ids = store_->BeginDeleteDataset("a");
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, std::vector<std::string>{j->id});
  // DELETING: no new job, no resume, the name stays taken, invisible to readers.
  EXPECT_EQ(store_->CreateJob("a", core::EmbedParams{}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  core::JobInfo cur = *store_->GetJob(j->id);
  EXPECT_EQ(store_->Transition(j->id, JobState::kCancelled, JobState::kQueued, cur).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->GetJob(j->id)->state, JobState::kCancelled);
  EXPECT_EQ(store_->ReserveDataset(Named("a")).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(store_->GetDataset("a").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(store_->RemoveDataset("a").ok());
  EXPECT_EQ(store_->GetJob(j->id).status().code(), absl::StatusCode::kNotFound);  // job rows go too
  EXPECT_TRUE(store_->ReserveDataset(Named("a")).ok());
}

TEST_F(StoreTest, APromptNameIsReservedByItsLearningJob) {
  AddReadyDataset(*store_, "a");
  auto learn = store_->CreateJob("a", Learn("p"));
  ASSERT_TRUE(learn.ok());
  // Neither a second job nor an import can take the name while the job may run.
  EXPECT_EQ(store_->CreateJob("a", Learn("p")).status().code(), absl::StatusCode::kAlreadyExists);
  core::PromptInfo imported{"p", "a", "id", 4, 10, "{}", "/p.safetensors", 1};
  auto s = store_->CreatePrompt(imported);
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(s.message().find(learn->id), std::string::npos) << s;
  EXPECT_EQ(store_->GetPrompt("p").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store_->ListPrompts()->empty());
  // The job finishes: its commit makes the prompt visible.
  core::PromptInfo learned{"p", "a", "id", 4, 10, "{}", "/p.job.safetensors", 2};
  ASSERT_TRUE(store_->CommitLearnedPrompt(learned, learn->id).ok());
  EXPECT_EQ(store_->GetPrompt("p")->path, "/p.job.safetensors");
  EXPECT_EQ(store_->CreatePrompt(imported).code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(StoreTest, AnImportTakesOverTheNameOfAFailedJobWhoseLateCommitThenFails) {
  AddReadyDataset(*store_, "a");
  auto learn = store_->CreateJob("a", Learn("p"));
  SetState(learn->id, JobState::kQueued, JobState::kRunning);
  SetState(learn->id, JobState::kRunning, JobState::kFailed);
  core::PromptInfo imported{"p", "a", "id", 4, 10, "{}", "/import.safetensors", 1};
  ASSERT_TRUE(store_->CreatePrompt(imported).ok());
  // The failed job is resumed and finishes later: it must not overwrite the import.
  core::PromptInfo learned{"p", "a", "id", 4, 10, "{}", "/job.safetensors", 2};
  EXPECT_EQ(store_->CommitLearnedPrompt(learned, learn->id).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(store_->GetPrompt("p")->path, "/import.safetensors");
  // Resuming it is refused up front rather than after hours of training.
  core::JobInfo j = *store_->GetJob(learn->id);
  auto s = store_->Transition(learn->id, JobState::kFailed, JobState::kQueued, j);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("was taken"), std::string::npos) << s;
  EXPECT_EQ(store_->GetJob(learn->id)->state, JobState::kFailed);
}

TEST_F(StoreTest, ALearnedPromptCommitIsIdempotentForItsJob) {
  // The process may die after the commit and before the job's SUCCEEDED: the resumed
  // job commits again and must succeed.
  AddReadyDataset(*store_, "a");
  auto learn = store_->CreateJob("a", Learn("p"));
  core::PromptInfo learned{"p", "a", "id", 4, 10, "{}", "/p.job.safetensors", 2};
  ASSERT_TRUE(store_->CommitLearnedPrompt(learned, learn->id).ok());
  SetState(learn->id, JobState::kQueued, JobState::kRunning);
  SetState(learn->id, JobState::kRunning, JobState::kInterrupted);
  SetState(learn->id, JobState::kInterrupted, JobState::kQueued);
  EXPECT_TRUE(store_->CommitLearnedPrompt(learned, learn->id).ok());
}

TEST_F(StoreTest, JobIdsAreNeverReused) {
  AddReadyDataset(*store_, "a");
  AddReadyDataset(*store_, "b");
  ASSERT_TRUE(store_->CreateJob("a", core::EmbedParams{}).ok());
  auto last = store_->CreateJob("b", core::EmbedParams{});
  ASSERT_EQ(last->id, "job-2");
  SetState(last->id, JobState::kQueued, JobState::kCancelled);
  ASSERT_TRUE(store_->BeginDeleteDataset("b").ok());
  ASSERT_TRUE(store_->RemoveDataset("b").ok());
  EXPECT_EQ(store_->CreateJob("a", core::EmbedParams{})->id, "job-3");
}

TEST_F(StoreTest, AHalfDoneDeletionCanBeContinued) {
  AddReadyDataset(*store_, "a");
  ASSERT_TRUE(store_->BeginDeleteDataset("a").ok());
  // (removing its files failed here)
  EXPECT_TRUE(store_->BeginDeleteDataset("a").ok());
  ASSERT_TRUE(store_->RemoveDataset("a").ok());
  EXPECT_EQ(store_->BeginDeleteDataset("a").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(StoreTest, AnSqliteErrorIsInternalNotNoRows) {
  AddReadyDataset(*store_, "a");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/updp.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "DROP TABLE selections;", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto n = store_->CountSelection("job-1");
  EXPECT_EQ(n.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(n.status().message().find("selections"), std::string::npos) << n.status();
  EXPECT_EQ(store_->GetSelection("job-1", 0, 10).status().code(), absl::StatusCode::kInternal);
}

TEST_F(StoreTest, UnknownItemIds) {
  AddReadyDataset(*store_, "a", 3);
  auto u = store_->UnknownItemIds("a", {"item0", "zz", "item2", "yy"}, 10);
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(*u, (std::vector<std::string>{"zz", "yy"}));
}

}  // namespace
}  // namespace updp::testing
