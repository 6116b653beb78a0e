// Near-duplicates over the real API: FindDuplicates + GetDuplicates (groups, pages,
// errors) and Select with dedup.
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "server/model/npy.h"
#include "tests/service/test_env.h"

namespace updp::testing {
namespace {

class DuplicatesTest : public ::testing::Test {
 protected:
  // 60 distinct rows, then copies: item-60..64 copy item-0 (exactly or nearly),
  // item-65 and item-66 copy item-1 (nearly), item-67 is an exact copy of item-2.
  void SetUp() override {
    root_ = MakeTempDir("dups");
    server_ = std::make_unique<Server>(root_, /*model_dir=*/"");
    torch::manual_seed(1);
    torch::Tensor base = torch::randn({60, 32});
    std::vector<torch::Tensor> rows{base};
    for (int i = 0; i < 5; ++i)
      rows.push_back(base[0].unsqueeze(0) + 0.01 * i * torch::randn({1, 32}));
    rows.push_back(base[1].unsqueeze(0) + 0.01 * torch::randn({1, 32}));
    rows.push_back(base[1].unsqueeze(0) + 0.01 * torch::randn({1, 32}));
    rows.push_back(base[2].unsqueeze(0));
    x_ = torch::cat(rows, 0);
    ASSERT_TRUE(model::WriteNpy(root_ + "/emb.npy", x_).ok());
    std::ofstream ids(root_ + "/ids.txt");
    for (int i = 0; i < x_.size(0); ++i) ids << "item-" << i << "\n";
    ids.close();
    ASSERT_TRUE(server_->RegisterNpy("emb", root_ + "/emb.npy", root_ + "/ids.txt").ok());
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(root_);
  }

  grpc::Status Find(double threshold, v1::Job* job, const std::string& dataset = "emb") {
    v1::FindDuplicatesRequest r;
    r.set_dataset(dataset);
    r.set_threshold(threshold);
    grpc::ClientContext c;
    return server_->stub()->FindDuplicates(&c, r, job);
  }
  grpc::Status Get(const std::string& job, int page_size, const std::string& token,
                   v1::GetDuplicatesResponse* out) {
    v1::GetDuplicatesRequest r;
    r.set_job_id(job);
    r.set_page_size(page_size);
    r.set_page_token(token);
    grpc::ClientContext c;
    return server_->stub()->GetDuplicates(&c, r, out);
  }

  std::string root_;
  std::unique_ptr<Server> server_;
  torch::Tensor x_;
};

TEST_F(DuplicatesTest, GroupsUnderRepresentativesInPages) {
  v1::Job job;
  ASSERT_TRUE(Find(0.98, &job).ok());
  EXPECT_EQ(job.kind(), v1::DUPLICATES);
  const v1::Job done = server_->WaitJob(job.job_id());
  ASSERT_EQ(done.state(), v1::SUCCEEDED) << done.error();
  const auto result = nlohmann::json::parse(done.result_json());
  EXPECT_EQ(result["groups"], 3);
  EXPECT_EQ(result["items"], 3 + 6 + 2);
  EXPECT_EQ(result["duplicates"], 8);
  EXPECT_EQ(result["search"], "exact");
  // Pages of 3 over groups of 6, 3 and 2 items: the pages at 6 and 9 start with a
  // representative, the one at 3 inside a group (the flag must look back a row).
  std::map<int64_t, std::vector<std::string>> groups;
  std::vector<std::string> reps;
  std::string token;
  int pages = 0;
  do {
    v1::GetDuplicatesResponse r;
    ASSERT_TRUE(Get(job.job_id(), 3, token, &r).ok());
    EXPECT_EQ(r.total_items(), 11);
    EXPECT_EQ(r.total_groups(), 3);
    EXPECT_DOUBLE_EQ(r.threshold(), 0.98);
    EXPECT_EQ(r.dataset(), "emb");
    for (const auto& d : r.items()) {
      groups[d.group()].push_back(d.item().item_id());
      if (d.representative()) {
        reps.push_back(d.item().item_id());
        EXPECT_DOUBLE_EQ(d.similarity(), 1.0);
        EXPECT_EQ(groups[d.group()].size(), 1u) << "the representative comes first";
      } else {
        EXPECT_GE(d.similarity(), 0.98 - 1e-5);
      }
    }
    token = r.next_page_token();
    ++pages;
  } while (!token.empty());
  EXPECT_EQ(pages, 4);
  EXPECT_EQ(reps, (std::vector<std::string>{"item-0", "item-1", "item-2"}));
  EXPECT_EQ(groups[0], (std::vector<std::string>{"item-0", "item-60", "item-61", "item-62",
                                                 "item-63", "item-64"}));
  EXPECT_EQ(groups[1], (std::vector<std::string>{"item-1", "item-65", "item-66"}));
  EXPECT_EQ(groups[2], (std::vector<std::string>{"item-2", "item-67"}));
}

TEST_F(DuplicatesTest, BadRequestsNameTheField) {
  v1::Job job;
  for (double t : {0.0, -0.1, 1.01}) {
    auto s = Find(t, &job);
    EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT) << t;
    EXPECT_NE(s.error_message().find("threshold"), std::string::npos) << s.error_message();
  }
  EXPECT_EQ(Find(0.9, &job, "nope").error_code(), grpc::NOT_FOUND);
  {
    v1::FindDuplicatesRequest r;
    r.set_dataset("emb");
    r.set_threshold(0.9);
    r.set_features("image");
    grpc::ClientContext c;
    auto s = server_->stub()->FindDuplicates(&c, r, &job);
    EXPECT_EQ(s.error_code(), grpc::FAILED_PRECONDITION);
    EXPECT_NE(s.error_message().find("features"), std::string::npos);
  }
  // GetDuplicates of a SELECT job, and of an unknown job.
  v1::GetSelectionResponse sel;
  ASSERT_TRUE(server_->SelectAndGet("emb", "random", 3, &sel));
  v1::ListJobsRequest lr;
  lr.set_dataset("emb");
  grpc::ClientContext lc;
  v1::ListJobsResponse jobs;
  ASSERT_TRUE(server_->stub()->ListJobs(&lc, lr, &jobs).ok());
  std::string select_job;
  for (const auto& j : jobs.jobs())
    if (j.kind() == v1::SELECT) select_job = j.job_id();
  v1::GetDuplicatesResponse r;
  auto s = Get(select_job, 10, "", &r);
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("not a DUPLICATES job"), std::string::npos);
  EXPECT_EQ(Get("no-such-job", 10, "", &r).error_code(), grpc::NOT_FOUND);
}

TEST_F(DuplicatesTest, DedupSelectionPicksOneOfEachGroupAndNothingNearLabeled) {
  v1::SelectRequest sr;
  sr.set_dataset("emb");
  sr.set_strategy("random");
  sr.set_budget(1000);  // everything it may pick
  sr.set_dedup(0.98);
  sr.add_labeled_ids("item-1");  // its group (65, 66) must not be picked either
  grpc::ClientContext sc;
  v1::Job job;
  ASSERT_TRUE(server_->stub()->Select(&sc, sr, &job).ok());
  const v1::Job done = server_->WaitJob(job.job_id());
  ASSERT_EQ(done.state(), v1::SUCCEEDED) << done.error();
  const auto result = nlohmann::json::parse(done.result_json());
  EXPECT_EQ(result["dedup"]["left_out"], 5 + 2 + 1);
  EXPECT_EQ(result["picks"], 68 - 1 - 8);
  v1::GetSelectionRequest gr;
  gr.set_job_id(job.job_id());
  gr.set_page_size(1000);
  grpc::ClientContext gc;
  v1::GetSelectionResponse sel;
  ASSERT_TRUE(server_->stub()->GetSelection(&gc, gr, &sel).ok());
  std::set<std::string> picked;
  for (const auto& it : sel.items()) picked.insert(it.item_id());
  EXPECT_EQ(picked.size(), 59u);
  EXPECT_TRUE(picked.count("item-0"));
  EXPECT_TRUE(picked.count("item-2"));
  for (const char* never : {"item-1", "item-60", "item-64", "item-65", "item-66", "item-67"})
    EXPECT_FALSE(picked.count(never)) << never;
  {  // A bad dedup value is refused at once.
    sr.set_dedup(2);
    grpc::ClientContext c;
    auto s = server_->stub()->Select(&c, sr, &job);
    EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("dedup"), std::string::npos);
  }
}

}  // namespace
}  // namespace updp::testing
