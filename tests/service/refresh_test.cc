// Growing pools over the real API: RefreshDataset appends new files as new items with
// stable ids, marks gone files missing, EMBED then embeds only the new items (the old
// rows kept as they were), and Select with only_new picks among the new items.
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "server/core/server_core.h"
#include "server/engine/feature_io.h"
#include "server/model/npy.h"
#include "tests/service/test_env.h"

namespace updp::testing {
namespace {

class RefreshTest : public ::testing::Test {
 protected:
  // 100 images in chunks of 64: chunk 1 (items 64..99) is partly filled.
  void SetUp() override {
    root_ = MakeTempDir("refresh");
    images_ = root_ + "/images";
    WriteImages(images_, 0, 100);
    server_ = std::make_unique<Server>(root_, TinyModel(root_));
    v1::Dataset d;
    auto s = server_->Register("pool", images_, &d);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(d.num_items(), 100);
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(root_);
  }

  grpc::Status Refresh(v1::Job* job, const std::string& name = "pool") {
    v1::RefreshDatasetRequest r;
    r.set_name(name);
    grpc::ClientContext c;
    return server_->stub()->RefreshDataset(&c, r, job);
  }
  // Runs a refresh to its end; its result.
  nlohmann::json RefreshDone() {
    v1::Job job;
    auto s = Refresh(&job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(job.kind(), v1::REFRESH);
    const v1::Job done = server_->WaitJob(job.job_id());
    EXPECT_EQ(done.state(), v1::SUCCEEDED) << done.error();
    return nlohmann::json::parse(done.result_json(), nullptr, false);
  }
  nlohmann::json EmbedDone() {
    const v1::Job done = server_->WaitJob(server_->Embed("pool").job_id());
    EXPECT_EQ(done.state(), v1::SUCCEEDED) << done.error();
    return nlohmann::json::parse(done.result_json(), nullptr, false);
  }
  v1::Dataset Get() {
    v1::GetDatasetRequest r;
    r.set_name("pool");
    grpc::ClientContext c;
    v1::Dataset d;
    EXPECT_TRUE(server_->stub()->GetDataset(&c, r, &d).ok());
    return d;
  }
  std::vector<v1::Item> Items() {
    v1::ListItemsRequest r;
    r.set_dataset("pool");
    r.set_page_size(10000);
    grpc::ClientContext c;
    v1::ListItemsResponse out;
    EXPECT_TRUE(server_->stub()->ListItems(&c, r, &out).ok());
    return {out.items().begin(), out.items().end()};
  }
  grpc::Status Select(const std::string& strategy, int budget, bool only_new, v1::Job* job) {
    v1::SelectRequest r;
    r.set_dataset("pool");
    r.set_strategy(strategy);
    r.set_budget(budget);
    r.set_only_new(only_new);
    grpc::ClientContext c;
    return server_->stub()->Select(&c, r, job);
  }
  // The item indexes a finished selection picked.
  std::vector<int64_t> Picks(const std::string& strategy, int budget, bool only_new) {
    v1::Job job;
    auto s = Select(strategy, budget, only_new, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    const v1::Job done = server_->WaitJob(job.job_id());
    EXPECT_EQ(done.state(), v1::SUCCEEDED) << done.error();
    v1::GetSelectionRequest r;
    r.set_job_id(job.job_id());
    r.set_page_size(10000);
    grpc::ClientContext c;
    v1::GetSelectionResponse out;
    EXPECT_TRUE(server_->stub()->GetSelection(&c, r, &out).ok());
    std::map<std::string, int64_t> index_of;
    for (const auto& it : Items()) index_of[it.item_id()] = it.index();
    std::vector<int64_t> idx;
    for (const auto& it : out.items()) idx.push_back(index_of.at(it.item_id()));
    return idx;
  }
  // Every stored image feature row: item index -> the row's float16 bits.
  std::map<int64_t, std::vector<int16_t>> FeatureRows() {
    auto chunks = server_->app().core().store().FeatureChunks("pool", core::kImageFeatures);
    EXPECT_TRUE(chunks.ok());
    std::map<int64_t, std::vector<int16_t>> rows;
    for (const auto& c : *chunks) {
      auto r = engine::ReadChunkRows(c, c.end);
      EXPECT_TRUE(r.ok()) << r.status();
      const torch::Tensor bits = r->features.view(torch::kInt16).contiguous();
      for (size_t i = 0; i < r->index.size(); ++i) {
        const int16_t* p = bits[static_cast<int64_t>(i)].data_ptr<int16_t>();
        rows[r->index[i]] = std::vector<int16_t>(p, p + bits.size(1));
      }
    }
    return rows;
  }

  std::string root_, images_;
  std::unique_ptr<Server> server_;
};

TEST_F(RefreshTest, NewFilesBecomeNewItemsAndOnlyTheyAreEmbedded) {
  nlohmann::json first = EmbedDone();
  EXPECT_EQ(first["embedded_this_run"], 100);
  const auto before_rows = FeatureRows();
  ASSERT_EQ(before_rows.size(), 100u);
  const auto before = Items();
  // 30 new files; two files removed (one in the full chunk, one in the partial one).
  WriteImages(images_, 100, 30);
  const std::string gone0 = before[5].path(), gone1 = before[70].path();
  fs::remove(gone0);
  fs::remove(gone1);

  nlohmann::json r = RefreshDone();
  EXPECT_EQ(r["items_before"], 100);
  EXPECT_EQ(r["added"], 30);
  EXPECT_EQ(r["num_items"], 130);
  EXPECT_EQ(r["now_missing"], 2);
  EXPECT_EQ(r["generation"], 1);
  v1::Dataset d = Get();
  EXPECT_EQ(d.num_items(), 130);
  EXPECT_EQ(d.generation(), 1);
  EXPECT_EQ(d.num_missing(), 2);

  // Old items keep their index and id; new ones follow, of generation 1.
  const auto after = Items();
  ASSERT_EQ(after.size(), 130u);
  std::set<std::string> old_ids;
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(after[i].index(), before[i].index());
    EXPECT_EQ(after[i].item_id(), before[i].item_id());
    EXPECT_EQ(after[i].path(), before[i].path());
    EXPECT_EQ(after[i].generation(), 0);
    EXPECT_EQ(after[i].missing(), i == 5 || i == 70) << i;
    old_ids.insert(before[i].item_id());
  }
  for (size_t i = 100; i < 130; ++i) {
    EXPECT_EQ(after[i].index(), static_cast<int64_t>(i));
    EXPECT_EQ(after[i].generation(), 1);
    EXPECT_FALSE(after[i].missing());
    EXPECT_FALSE(old_ids.count(after[i].item_id())) << after[i].item_id();
  }

  // The image features no longer cover every item: selection waits for EMBED.
  v1::Job job;
  auto s = Select("kmeans", 5, false, &job);
  EXPECT_EQ(s.error_code(), grpc::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("incomplete"), std::string::npos) << s.error_message();

  // EMBED embeds the 30 new items only: chunk 0 stays, chunk 1 keeps its 36 rows and
  // gains 28, chunk 2 is new.
  nlohmann::json e = EmbedDone();
  EXPECT_EQ(e["embedded_this_run"], 30);
  EXPECT_EQ(e["rows_kept"], 36);
  EXPECT_EQ(e["chunks_reused"], 1);
  EXPECT_EQ(e["chunks_computed"], 2);
  const auto after_rows = FeatureRows();
  EXPECT_EQ(after_rows.size(), 130u);
  for (const auto& [idx, bits] : before_rows) {
    auto it = after_rows.find(idx);
    ASSERT_NE(it, after_rows.end()) << idx;
    EXPECT_EQ(it->second, bits) << "the features of item " << idx << " changed";
  }

  // only_new: picks come from the new items only.
  for (const std::string strategy : {"kmeans", "kcenter", "random", "typiclust"}) {
    const auto picks = Picks(strategy, 10, /*only_new=*/true);
    EXPECT_EQ(picks.size(), 10u) << strategy;
    for (int64_t idx : picks) EXPECT_GE(idx, 100) << strategy;
  }
  // Missing items are never picked: asking for every item gives the 128 that exist.
  const auto all = Picks("random", 130, false);
  EXPECT_EQ(all.size(), 128u);
  for (int64_t idx : all) EXPECT_TRUE(idx != 5 && idx != 70) << idx;

  // A refresh that finds nothing new keeps the generation; a file that returns is no
  // longer missing.
  WriteImages(images_, 5, 1);
  ASSERT_TRUE(fs::exists(gone0));
  r = RefreshDone();
  EXPECT_EQ(r["added"], 0);
  EXPECT_EQ(r["found_again"], 1);
  EXPECT_EQ(r["generation"], 1);
  d = Get();
  EXPECT_EQ(d.num_items(), 130);
  EXPECT_EQ(d.generation(), 1);
  EXPECT_EQ(d.num_missing(), 1);
  EXPECT_EQ(EmbedDone()["chunks_computed"], 0);
  for (int64_t idx : Picks("random", 10, true)) EXPECT_GE(idx, 100);
}

TEST_F(RefreshTest, ACancelledRefreshLeavesNothingAndTheNextOneSucceeds) {
  WriteImages(images_, 100, 20);
  // Held after the new items are appended, before the commit.
  server_->gate().Arm([](const core::JobInfo& j) {
    return j.kind == core::JobKind::kRefresh && j.progress.stage == "items" &&
           j.progress.total > 0 && j.progress.done == j.progress.total;
  });
  v1::Job job;
  ASSERT_TRUE(Refresh(&job).ok());
  ASSERT_TRUE(server_->gate().WaitHeld());
  // A second refresh of the same dataset is refused while this one runs.
  v1::Job second;
  auto s = Refresh(&second);
  EXPECT_EQ(s.error_code(), grpc::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("already being refreshed"), std::string::npos)
      << s.error_message();
  {
    v1::CancelJobRequest r;
    r.set_job_id(job.job_id());
    grpc::ClientContext c;
    v1::Job j;
    ASSERT_TRUE(server_->stub()->CancelJob(&c, r, &j).ok());
  }
  server_->gate().Release();
  EXPECT_EQ(server_->WaitJob(job.job_id()).state(), v1::CANCELLED);
  EXPECT_EQ(Get().num_items(), 100);
  EXPECT_EQ(Get().generation(), 0);
  EXPECT_EQ(Items().size(), 100u);
  // The appended rows are gone: the next refresh appends the same files again.
  nlohmann::json r = RefreshDone();
  EXPECT_EQ(r["added"], 20);
  EXPECT_EQ(Get().num_items(), 120);
}

TEST_F(RefreshTest, AStoppedRefreshIsUndoneAtStartAndResumable) {
  WriteImages(images_, 100, 10);
  server_->Stop();
  std::string job_id;
  {
    // What a process that died in a refresh leaves: its job RUNNING, and items
    // appended beyond num_items.
    auto store = core::Store::Open(root_ + "/data");
    ASSERT_TRUE(store.ok()) << store.status();
    auto j = (*store)->CreateJob("pool", core::RefreshParams{});
    ASSERT_TRUE(j.ok()) << j.status();
    job_id = j->id;
    core::JobInfo running = *j;
    running.state = core::JobState::kRunning;
    ASSERT_TRUE((*store)
                    ->Transition(j->id, core::JobState::kQueued, core::JobState::kRunning, running)
                    .ok());
    ASSERT_TRUE((*store)
                    ->AddItems("pool", {{100, "00100.png", images_ + "/00100.png", 1},
                                        {101, "stale", "/nowhere/stale.png", 1}})
                    .ok());
  }
  server_->Start();
  EXPECT_EQ(server_->GetJob(job_id).state(), v1::INTERRUPTED);
  EXPECT_TRUE(server_->app().core().store().ItemsRange("pool", 100, 200)->empty());
  EXPECT_EQ(Get().num_items(), 100);
  // Resumed, it runs again from the start.
  v1::ResumeJobRequest rr;
  rr.set_job_id(job_id);
  grpc::ClientContext c;
  v1::Job j;
  ASSERT_TRUE(server_->stub()->ResumeJob(&c, rr, &j).ok());
  const v1::Job done = server_->WaitJob(job_id);
  ASSERT_EQ(done.state(), v1::SUCCEEDED) << done.error();
  EXPECT_EQ(nlohmann::json::parse(done.result_json())["added"], 10);
  EXPECT_EQ(Get().num_items(), 110);
  for (const auto& it : Items()) EXPECT_NE(it.item_id(), "stale");
}

TEST_F(RefreshTest, ErrorsNameTheField) {
  v1::Job job;
  auto s = Refresh(&job, "nope");
  EXPECT_EQ(s.error_code(), grpc::NOT_FOUND);
  EXPECT_NE(s.error_message().find("nope"), std::string::npos) << s.error_message();
  s = Refresh(&job, "bad name!");
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT);
  // An embeddings dataset has no files to rescan.
  ASSERT_TRUE(model::WriteNpy(root_ + "/e.npy", torch::randn({4, 8})).ok());
  ASSERT_TRUE(server_->RegisterNpy("emb", root_ + "/e.npy").ok());
  s = Refresh(&job, "emb");
  EXPECT_EQ(s.error_code(), grpc::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("embeddings"), std::string::npos) << s.error_message();
  // only_new before any refresh added items.
  EmbedDone();
  s = Select("random", 3, /*only_new=*/true, &job);
  EXPECT_EQ(s.error_code(), grpc::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("only_new"), std::string::npos) << s.error_message();
}

}  // namespace
}  // namespace updp::testing
