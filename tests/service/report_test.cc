// GetSelectionReport over the real API: clusters, map, thumbnails (decoded back), a
// corrupt image as a placeholder, pages, embeddings datasets, and the errors.
#include <fstream>
#include <map>
#include <set>

#include "server/model/image_codec.h"
#include "server/model/npy.h"
#include "tests/service/test_env.h"

namespace updp::testing {
namespace {

class ReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempDir("report");
    images_ = root_ + "/images";
    WriteImages(images_, 0, kItems);
    // One image that no decoder reads: the dataset has kItems - 1 items with features.
    std::ofstream(images_ + "/broken.png") << "not a png";
    server_ = std::make_unique<Server>(root_, TinyModel(root_));
    v1::Dataset d;
    ASSERT_TRUE(server_->Register("fm", images_, &d).ok());
    ASSERT_EQ(d.num_items(), kItems + 1);
    ASSERT_EQ(server_->WaitJob(server_->Embed("fm").job_id()).state(), v1::SUCCEEDED);
  }
  void TearDown() override {
    if (server_) server_->Stop();
    fs::remove_all(root_);
  }

  // Starts a SELECT job and waits for it; its id.
  std::string Select(const std::string& ds, const std::string& strategy, int budget) {
    v1::SelectRequest sr;
    sr.set_dataset(ds);
    sr.set_strategy(strategy);
    sr.set_budget(budget);
    sr.set_seed(5);
    grpc::ClientContext c;
    v1::Job job;
    EXPECT_TRUE(server_->stub()->Select(&c, sr, &job).ok());
    const v1::Job done = server_->WaitJob(job.job_id());
    EXPECT_EQ(done.state(), v1::SUCCEEDED) << done.error();
    return job.job_id();
  }
  grpc::Status Report(const std::string& job, v1::SelectionReport* out, int thumbnail_size = 0,
                      int page_size = 0, const std::string& token = "") {
    v1::GetSelectionReportRequest r;
    r.set_job_id(job);
    r.set_thumbnail_size(thumbnail_size);
    r.set_page_size(page_size);
    r.set_page_token(token);
    grpc::ClientContext c;
    return server_->stub()->GetSelectionReport(&c, r, out);
  }

  static constexpr int kItems = 60;
  std::string root_, images_;
  std::unique_ptr<Server> server_;
};

TEST_F(ReportTest, ClustersMapAndThumbnailsOfEveryStrategyKind) {
  // kmeans picks carry clusters; random picks do not (each is its own cluster).
  for (const std::string strategy : {"kmeans", "random"}) {
    SCOPED_TRACE(strategy);
    const int budget = 8;
    const std::string job = Select("fm", strategy, budget);
    v1::SelectionReport r;
    ASSERT_TRUE(Report(job, &r, /*thumbnail_size=*/16).ok());
    EXPECT_EQ(r.dataset().name(), "fm");
    EXPECT_EQ(r.job().job_id(), job);
    EXPECT_NE(r.job().parameters_json().find(strategy), std::string::npos);
    EXPECT_EQ(r.cluster_rule(), "nearest-pick");
    EXPECT_TRUE(r.has_images());
    EXPECT_EQ(r.total_picks(), budget);
    EXPECT_TRUE(r.next_page_token().empty());
    // Every item with features is in exactly one cluster; the picks add up to the budget.
    int64_t size = 0, picks = 0;
    std::set<int64_t> ids;
    for (const auto& c : r.clusters()) {
      size += c.size();
      picks += c.picks();
      EXPECT_GE(c.picks(), 1);
      ids.insert(c.cluster());
    }
    EXPECT_EQ(size, kItems);
    EXPECT_EQ(picks, budget);
    if (strategy == "random") EXPECT_EQ(r.clusters_size(), budget);
    // Every pick is on the map, with its cluster; all points are distinct items.
    std::map<int64_t, int64_t> cluster_of_rank;
    std::set<int64_t> items;
    for (const auto& p : r.points()) {
      EXPECT_TRUE(items.insert(p.item_index()).second);
      EXPECT_TRUE(ids.count(p.cluster())) << p.cluster();
      if (p.rank() > 0) cluster_of_rank[p.rank()] = p.cluster();
    }
    EXPECT_EQ(r.points_size(), kItems);  // 60 items: all on the map (under the caps)
    ASSERT_EQ(cluster_of_rank.size(), static_cast<size_t>(budget));
    EXPECT_GT(r.explained_x(), 0);
    EXPECT_GE(r.explained_x(), r.explained_y());
    // Thumbnails: real JPEGs that fit 16 x 16 (the images are 28 x 28).
    ASSERT_EQ(r.picks_size(), budget);
    for (int i = 0; i < budget; ++i) {
      const v1::ReportPick& p = r.picks(i);
      EXPECT_EQ(p.item().rank(), i + 1);
      EXPECT_EQ(p.report_cluster(), cluster_of_rank[i + 1]);
      if (strategy == "kmeans") EXPECT_EQ(p.report_cluster(), p.item().cluster());
      EXPECT_TRUE(p.thumbnail_error().empty()) << p.thumbnail_error();
      auto img = model::DecodeJpeg(p.thumbnail_jpeg(), p.item().item_id());
      ASSERT_TRUE(img.ok()) << img.status();
      EXPECT_EQ(img->width, 16);
      EXPECT_EQ(img->height, 16);
    }
  }
}

TEST_F(ReportTest, CorruptImageIsAPlaceholderAndPagesCarryTheRest) {
  const std::string job = Select("fm", "kmeans", 7);
  v1::GetSelectionResponse sel;
  {
    grpc::ClientContext c;
    v1::GetSelectionRequest g;
    g.set_job_id(job);
    ASSERT_TRUE(server_->stub()->GetSelection(&c, g, &sel).ok());
  }
  // The second pick's file is damaged after the selection.
  const std::string damaged = sel.items(1).path();
  std::ofstream(damaged, std::ios::trunc) << "garbage";
  std::vector<v1::ReportPick> all;
  std::string token;
  int pages = 0;
  do {
    v1::SelectionReport r;
    ASSERT_TRUE(Report(job, &r, 0, /*page_size=*/3, token).ok());
    // The summary only on the first page.
    EXPECT_EQ(r.clusters_size() > 0, pages == 0);
    EXPECT_EQ(r.points_size() > 0, pages == 0);
    EXPECT_EQ(r.has_dataset(), pages == 0);
    for (const auto& p : r.picks()) all.push_back(p);
    token = r.next_page_token();
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(all.size(), 7u);
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].item().rank(), static_cast<int64_t>(i + 1));
    if (i == 1) {
      EXPECT_TRUE(all[i].thumbnail_jpeg().empty());
      EXPECT_NE(all[i].thumbnail_error().find(damaged), std::string::npos)
          << all[i].thumbnail_error();
    } else {
      EXPECT_TRUE(model::DecodeJpeg(all[i].thumbnail_jpeg(), "thumb").ok()) << i;
    }
  }
}

TEST_F(ReportTest, EmbeddingsDatasetsHaveNoThumbnails) {
  torch::manual_seed(2);
  ASSERT_TRUE(model::WriteNpy(root_ + "/emb.npy", torch::randn({50, 12})).ok());
  ASSERT_TRUE(server_->RegisterNpy("emb", root_ + "/emb.npy").ok());
  const std::string job = Select("emb", "kcenter", 5);
  v1::SelectionReport r;
  ASSERT_TRUE(Report(job, &r).ok());
  EXPECT_FALSE(r.has_images());
  ASSERT_EQ(r.picks_size(), 5);
  int64_t size = 0;
  for (const auto& c : r.clusters()) size += c.size();
  EXPECT_EQ(size, 50);
  for (const auto& p : r.picks()) {
    EXPECT_TRUE(p.thumbnail_jpeg().empty());
    EXPECT_TRUE(p.thumbnail_error().empty());
  }
}

TEST_F(ReportTest, ErrorsNameTheJobAndTheField) {
  v1::SelectionReport r;
  auto s = Report("no-such-job", &r);
  EXPECT_EQ(s.error_code(), grpc::NOT_FOUND);
  EXPECT_NE(s.error_message().find("no-such-job"), std::string::npos) << s.error_message();
  // An EMBED job.
  v1::ListJobsRequest lr;
  lr.set_dataset("fm");
  v1::ListJobsResponse jobs;
  {
    grpc::ClientContext c;
    ASSERT_TRUE(server_->stub()->ListJobs(&c, lr, &jobs).ok());
  }
  std::string embed;
  for (const auto& j : jobs.jobs()) {
    if (j.kind() == v1::EMBED) embed = j.job_id();
  }
  ASSERT_FALSE(embed.empty());
  s = Report(embed, &r);
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("job_id"), std::string::npos) << s.error_message();
  EXPECT_NE(s.error_message().find("EMBED"), std::string::npos) << s.error_message();

  const std::string job = Select("fm", "kmeans", 4);
  s = Report(job, &r, /*thumbnail_size=*/513);
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("thumbnail_size"), std::string::npos) << s.error_message();
  s = Report(job, &r, 0, /*page_size=*/-1);
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("page_size"), std::string::npos) << s.error_message();
  s = Report(job, &r, 0, 0, "x");
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("page_token"), std::string::npos) << s.error_message();

  // A selection made before reports existed has no stored map.
  fs::remove(server_->options().data_dir + "/jobs/" + job + "/report_map.json");
  s = Report(job, &r);
  EXPECT_EQ(s.error_code(), grpc::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find(job), std::string::npos) << s.error_message();
  EXPECT_NE(s.error_message().find("again"), std::string::npos) << s.error_message();

  // A selection still running: held at its first progress report.
  server_->gate().Arm([](const core::JobInfo& j) {
    return j.kind == core::JobKind::kSelect && j.state == core::JobState::kRunning;
  });
  v1::SelectRequest sr;
  sr.set_dataset("fm");
  sr.set_strategy("kmeans");
  sr.set_budget(3);
  v1::Job running;
  {
    grpc::ClientContext c;
    ASSERT_TRUE(server_->stub()->Select(&c, sr, &running).ok());
  }
  ASSERT_TRUE(server_->gate().WaitHeld());
  s = Report(running.job_id(), &r);
  server_->gate().Release();
  EXPECT_EQ(s.error_code(), grpc::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("RUNNING"), std::string::npos) << s.error_message();
  EXPECT_EQ(server_->WaitJob(running.job_id()).state(), v1::SUCCEEDED);
}

}  // namespace
}  // namespace updp::testing
