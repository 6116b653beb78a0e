// The store: staged registration and deletion, prompt-name reservations, SQLite
// errors surfacing as INTERNAL.
#include "server/core/store.h"

#include <sqlite3.h>

#include "absl/strings/str_cat.h"
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

// A version-3 database (before growing datasets) gains the columns, and its chunks
// learn where their items end: a chunk is complete as it was.
TEST_F(StoreTest, MigratesAVersion3DatabaseWithChunkEnds) {
  ASSERT_TRUE(store_->ReserveDataset(Named("a")).ok());
  ASSERT_TRUE(store_->AddItems("a", {{0, "x", "/x"}, {1, "y", "/y"}, {2, "z", "/z"}}).ok());
  ASSERT_TRUE(store_->CommitDataset("a", "/m", 3, {}, "", {}).ok());
  ASSERT_TRUE(store_->AddFeatureChunk("a", "image", {0, 2, "/c0", 2}).ok());
  ASSERT_TRUE(store_->AddFeatureChunk("a", "image", {1, 1, "/c1", 3}).ok());
  store_.reset();
  {
    // Back to version 3: without the columns version 4 added.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir_ + "/updp.db").c_str(), &db), SQLITE_OK);
    const char* sql =
        "ALTER TABLE items DROP COLUMN generation; ALTER TABLE items DROP COLUMN missing;"
        "ALTER TABLE datasets DROP COLUMN generation; ALTER TABLE datasets DROP COLUMN "
        "num_missing; ALTER TABLE feature_chunks DROP COLUMN end_idx;"
        "UPDATE datasets SET chunk_size=2; PRAGMA user_version=3;";
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
  }
  auto s = core::Store::Open(dir_);
  ASSERT_TRUE(s.ok()) << s.status();
  store_ = std::move(*s);
  EXPECT_EQ(*store_->schema_version(), core::Store::kSchemaVersion);
  auto chunks = store_->FeatureChunks("a", "image");
  ASSERT_TRUE(chunks.ok());
  ASSERT_EQ(chunks->size(), 2u);
  EXPECT_EQ((*chunks)[0].end, 2);  // min((0 + 1) * 2, 3)
  EXPECT_EQ((*chunks)[1].end, 3);  // min((1 + 1) * 2, 3)
  auto d = store_->GetDataset("a");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->generation, 0);
  EXPECT_EQ(d->num_missing, 0);
  auto items = store_->ItemsRange("a", 0, 3);
  ASSERT_TRUE(items.ok());
  for (const auto& it : *items) {
    EXPECT_EQ(it.generation, 0);
    EXPECT_FALSE(it.missing);
  }
  EXPECT_EQ(*store_->IntegrityCheck(), "ok");
}

// A refresh's commit checks that the dataset did not change since it was read, and
// items appended but not committed are not items (and are dropped).
TEST_F(StoreTest, RefreshCommitIsACompareAndSet) {
  ASSERT_TRUE(store_->ReserveDataset(Named("a")).ok());
  ASSERT_TRUE(store_->AddItems("a", {{0, "x", "/x"}, {1, "y", "/y"}}).ok());
  ASSERT_TRUE(store_->CommitDataset("a", "/m", 2, {}, "", {}).ok());
  ASSERT_TRUE(store_->AddItems("a", {{2, "z", "/z", 1}}).ok());
  EXPECT_TRUE(store_->FindItemIds("a", {"z"})->empty());
  EXPECT_EQ(store_->UnknownItemIds("a", {"z"}, 5)->size(), 1u);
  core::Store::RefreshCommit c;
  c.expected_items = 2;
  c.expected_generation = 1;  // stale
  c.num_items = 3;
  EXPECT_EQ(store_->CommitRefresh("a", c).code(), absl::StatusCode::kAborted);
  c.expected_generation = 0;
  c.now_missing = {0};
  ASSERT_TRUE(store_->CommitRefresh("a", c).ok());
  auto d = store_->GetDataset("a");
  EXPECT_EQ(d->num_items, 3);
  EXPECT_EQ(d->generation, 1);
  EXPECT_EQ(d->num_missing, 1);
  EXPECT_EQ(*store_->ExcludedItems("a", 0), std::vector<int64_t>{0});
  EXPECT_EQ(*store_->ExcludedItems("a", 1), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(store_->CommitRefresh("a", c).code(), absl::StatusCode::kAborted);  // now stale
  ASSERT_TRUE(store_->AddItems("a", {{3, "w", "/w", 2}}).ok());
  ASSERT_TRUE(store_->DropUncommittedItems("a").ok());
  EXPECT_EQ(store_->ItemsRange("a", 0, 10)->size(), 3u);
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
  ASSERT_TRUE(store_->CommitDataset("a", "/m", 2, {{"y", "/y", "bad"}}, "", {}).ok());
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
  EXPECT_EQ((*unfinished)[0].state, core::DatasetState::kRegistering);
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

core::JobParams RegisterFrom(const std::string& path) {
  core::RegisterParams p;
  p.source_kind = core::SourceKind::kManifest;
  p.path = path;
  return p;
}

TEST_F(StoreTest, ARegisterJobReservesItsDatasetNameInTheSameTransaction) {
  auto job = store_->CreateJob("r", RegisterFrom("/m.txt"));
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->kind, core::JobKind::kRegister);
  EXPECT_EQ(std::get<core::RegisterParams>(job->params).path, "/m.txt");
  auto unfinished = store_->UnfinishedDatasets();
  ASSERT_EQ(unfinished->size(), 1u);
  EXPECT_EQ((*unfinished)[0].name, "r");
  EXPECT_EQ((*unfinished)[0].state, core::DatasetState::kRegistering);
  EXPECT_EQ((*unfinished)[0].registration_job_id, job->id);
  EXPECT_EQ(store_->GetDataset("r").status().code(), absl::StatusCode::kNotFound);
  // The name is taken for registrations of either kind, and a READY name refuses a
  // REGISTER job without creating it.
  EXPECT_EQ(store_->CreateJob("r", RegisterFrom("/n.txt")).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(store_->ReserveDataset(Named("r")).code(), absl::StatusCode::kAlreadyExists);
  AddReadyDataset(*store_, "ready");
  EXPECT_EQ(store_->CreateJob("ready", RegisterFrom("/m.txt")).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(store_->ListJobs("", JobState::kUnspecified, 10)->size(), 1u);
  // Other jobs still need the dataset READY.
  EXPECT_EQ(store_->CreateJob("r", core::EmbedParams{}).status().code(),
            absl::StatusCode::kNotFound);
  // The commit makes it visible, naming its job.
  SetState(job->id, JobState::kQueued, JobState::kRunning);
  ASSERT_TRUE(store_->CommitDataset("r", "/m.txt", 0, {}, "", {}).ok());
  EXPECT_EQ(store_->GetDataset("r")->registration_job_id, job->id);
}

TEST_F(StoreTest, ARegisterJobCancelledWhileQueuedReleasesItsName) {
  auto job = store_->CreateJob("r", RegisterFrom("/m.txt"));
  ASSERT_TRUE(job.ok());
  SetState(job->id, JobState::kQueued, JobState::kCancelled);
  EXPECT_TRUE(store_->UnfinishedDatasets()->empty());
  EXPECT_TRUE(store_->ReserveDataset(Named("r")).ok());
  // A cancelled job of another kind leaves its READY dataset alone.
  AddReadyDataset(*store_, "a");
  auto embed = store_->CreateJob("a", core::EmbedParams{});
  SetState(embed->id, JobState::kQueued, JobState::kCancelled);
  EXPECT_TRUE(store_->GetDataset("a").ok());
}

TEST_F(StoreTest, ARegisterJobIsNotResumableAndItsRollBackKeepsIt) {
  auto job = store_->CreateJob("r", RegisterFrom("/m.txt"));
  ASSERT_TRUE(job.ok());
  SetState(job->id, JobState::kQueued, JobState::kRunning);
  ASSERT_TRUE(store_->AddItems("r", {{0, "x", "/x"}}).ok());
  ASSERT_TRUE(store_->RemoveDataset("r", job->id).ok());
  EXPECT_TRUE(store_->UnfinishedDatasets()->empty());
  EXPECT_TRUE(store_->Items("r")->empty());
  core::JobInfo failed = *store_->GetJob(job->id);
  failed.error = "manifest.path: no items";
  failed.error_code = static_cast<int>(absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(store_->Transition(job->id, JobState::kRunning, JobState::kFailed, failed).ok());
  auto stored = store_->GetJob(job->id);
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->state, JobState::kFailed);
  EXPECT_EQ(stored->error_code, static_cast<int>(absl::StatusCode::kInvalidArgument));
  // Even with the name registered again (READY), the old job cannot be re-queued.
  AddReadyDataset(*store_, "r");
  auto resumed = store_->Transition(job->id, JobState::kFailed, JobState::kQueued, *stored);
  EXPECT_EQ(resumed.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(resumed.message().find("cannot be resumed"), std::string::npos) << resumed;
  EXPECT_EQ(store_->GetJob(job->id)->state, JobState::kFailed);
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

TEST_F(StoreTest, ItemsRangeIsOnePageOfOneDatasetInIdxOrder) {
  AddReadyDataset(*store_, "a", 1200);
  AddReadyDataset(*store_, "b", 5);
  auto page = store_->ItemsRange("a", 1000, 1100);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->size(), 100u);
  for (int64_t k = 0; k < 100; ++k) {
    EXPECT_EQ((*page)[k].idx, 1000 + k);
    EXPECT_EQ((*page)[k].item_id, absl::StrCat("item", 1000 + k));
  }
  EXPECT_EQ(store_->ItemsRange("a", 1190, 5000)->size(), 10u);  // the short last page
  EXPECT_TRUE(store_->ItemsRange("a", 7, 7)->empty());
  EXPECT_TRUE(store_->ItemsRange("a", 1200, 1300)->empty());
  EXPECT_EQ(store_->ItemsRange("b", 0, 100)->size(), 5u);  // never another dataset's rows
}

TEST_F(StoreTest, ItemsAtKeepsTheAskedOrderAcrossLookupBatches) {
  AddReadyDataset(*store_, "a", 1200);
  AddReadyDataset(*store_, "b", 5);
  std::vector<int64_t> idx;
  for (int64_t i = 1199; i >= 0; --i) idx.push_back(i);
  idx.push_back(1199);  // asked twice
  auto rows = store_->ItemsAt("a", idx);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), idx.size());
  for (size_t k = 0; k < idx.size(); ++k) {
    EXPECT_EQ((*rows)[k].idx, idx[k]);
    EXPECT_EQ((*rows)[k].item_id, absl::StrCat("item", idx[k]));
    EXPECT_EQ((*rows)[k].path, "/x");
  }
  EXPECT_TRUE(store_->ItemsAt("a", {})->empty());
  // The first missing idx is named, in the asked order (the batch of 7000 comes later).
  std::vector<int64_t> bad(600, 3);
  bad[10] = 5000;
  bad[599] = 7000;
  auto missing = store_->ItemsAt("a", bad);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("5000"), std::string::npos) << missing.status();
  auto other = store_->ItemsAt("b", {4, 5});  // idx 5 is an item of a, not of b
  EXPECT_EQ(other.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(other.status().message().find("index 5 "), std::string::npos) << other.status();
}

TEST_F(StoreTest, FindItemIdsLeavesOutUnknownIdsAndKeepsTheAskedOrder) {
  AddReadyDataset(*store_, "a", 1200);
  AddReadyDataset(*store_, "b", 1300);
  std::vector<std::string> ids;
  std::vector<std::pair<std::string, int64_t>> want;
  for (int i = 0; i < 1300; ++i) {    // three lookup batches, known and unknown mixed
    const int k = (i * 7919) % 1300;  // a permutation of 0..1299
    ids.push_back(absl::StrCat("item", k));
    if (k < 1200) want.emplace_back(ids.back(), k);  // 1200..1299 are items of b only
    if (i % 3 == 0) ids.push_back(absl::StrCat("zz", i));
  }
  auto found = store_->FindItemIds("a", ids);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(*found, want);
  EXPECT_EQ(*store_->FindItemIds("b", {"item1250", "zz"}),
            (std::vector<std::pair<std::string, int64_t>>{{"item1250", 1250}}));
  EXPECT_TRUE(store_->FindItemIds("a", {})->empty());
}

TEST_F(StoreTest, PagedReadsAnswerAHundredThousandItems) {
  constexpr int kN = 100000;
  AddReadyDataset(*store_, "a", kN);
  std::vector<int64_t> idx(kN);
  std::vector<std::string> ids(kN);
  for (int i = 0; i < kN; ++i) {
    idx[i] = (static_cast<int64_t>(i) * 48271) % kN;  // a permutation (48271 is prime)
    ids[i] = absl::StrCat("item", idx[i]);
  }
  auto rows = store_->ItemsAt("a", idx);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), static_cast<size_t>(kN));
  EXPECT_EQ((*rows)[kN - 1].item_id, ids[kN - 1]);
  auto found = store_->FindItemIds("a", ids);
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_EQ(found->size(), static_cast<size_t>(kN));
  for (int i = 0; i < kN; i += 997) EXPECT_EQ((*found)[i].second, idx[i]);
  EXPECT_EQ(store_->ItemsRange("a", 0, kN)->size(), static_cast<size_t>(kN));
}

}  // namespace
}  // namespace updp::testing
