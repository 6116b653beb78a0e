// Bad input gets a clear status naming the field or file, and never loses stored data.
#include <fstream>

#include "server/model/npy.h"
#include "server/util/atomic_file.h"
#include "tests/service/test_env.h"

namespace updp::testing {
namespace {

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempDir("bad");
    images_ = root_ + "/images";
    WriteImages(images_, 0, 20);
    server_ = std::make_unique<Server>(root_, TinyModel(root_));
    v1::Dataset d;
    ASSERT_TRUE(server_->Register("keep", images_, &d).ok());
  }
  void TearDown() override {
    // Whatever failed, the dataset registered first is intact.
    grpc::ClientContext c;
    v1::GetDatasetRequest r;
    r.set_name("keep");
    v1::Dataset d;
    EXPECT_TRUE(server_->stub()->GetDataset(&c, r, &d).ok());
    EXPECT_EQ(d.num_items(), 20);
    server_->Stop();
  }
  grpc::Status RegisterImages(const std::string& name, const std::string& path) {
    v1::Dataset d;
    return server_->Register(name, path, &d);
  }
  grpc::Status RegisterManifest(const std::string& name, const std::string& path) {
    v1::RegisterDatasetRequest r;
    r.set_name(name);
    r.mutable_manifest()->set_path(path);
    grpc::ClientContext c;
    v1::Dataset d;
    return server_->stub()->RegisterDataset(&c, r, &d);
  }
  grpc::Status Select(const std::string& ds, const std::string& strategy, int64_t budget,
                      std::vector<std::string> labeled = {}, bool strict_labeled = false) {
    v1::SelectRequest r;
    r.set_dataset(ds);
    r.set_strategy(strategy);
    r.set_budget(budget);
    for (auto& l : labeled) r.add_labeled_ids(l);
    r.set_strict_labeled(strict_labeled);
    grpc::ClientContext c;
    v1::Job j;
    return server_->stub()->Select(&c, r, &j);
  }
  std::string root_, images_;
  std::unique_ptr<Server> server_;
};

#define EXPECT_STATUS(expr, code, needle)                                                \
  do {                                                                                   \
    grpc::Status _s = (expr);                                                            \
    EXPECT_EQ(_s.error_code(), code) << _s.error_message();                              \
    EXPECT_NE(_s.error_message().find(needle), std::string::npos) << _s.error_message(); \
  } while (0)

TEST_F(BadInputTest, ImageDirectory) {
  EXPECT_STATUS(RegisterImages("a", root_ + "/nope"), grpc::NOT_FOUND, "images.path");
  EXPECT_STATUS(RegisterImages("a", "/etc"), grpc::PERMISSION_DENIED, "outside the allowed roots");
  fs::create_directories(root_ + "/empty");
  EXPECT_STATUS(RegisterImages("a", root_ + "/empty"), grpc::INVALID_ARGUMENT, "no images");
  // A symlink inside the root that points outside it is refused.
  fs::create_symlink("/usr/share", root_ + "/escape");
  EXPECT_STATUS(RegisterImages("a", root_ + "/escape"), grpc::PERMISSION_DENIED, "escape");
  EXPECT_STATUS(RegisterImages("keep", images_), grpc::ALREADY_EXISTS, "keep");
  EXPECT_STATUS(RegisterImages("bad name!", images_), grpc::INVALID_ARGUMENT, "name");
  v1::RegisterDatasetRequest none;
  none.set_name("x");
  grpc::ClientContext c;
  v1::Dataset d;
  EXPECT_STATUS(server_->stub()->RegisterDataset(&c, none, &d), grpc::INVALID_ARGUMENT, "source");
}

TEST_F(BadInputTest, CorruptImagesAreSkippedCountedAndListed) {
  std::string dir = root_ + "/mixed";
  WriteImages(dir, 100, 10);
  ASSERT_TRUE(WriteFileAtomically(dir + "/broken.png", "\x89PNG\r\n\x1a\n garbage").ok());
  ASSERT_TRUE(WriteFileAtomically(dir + "/empty.jpg", "").ok());
  v1::Dataset d;
  ASSERT_TRUE(server_->Register("mixed", dir, &d).ok());
  EXPECT_EQ(d.num_items(), 12);
  v1::Job done = server_->WaitJob(server_->Embed("mixed").job_id());
  ASSERT_EQ(done.state(), v1::SUCCEEDED) << done.error();
  grpc::ClientContext c;
  v1::GetDatasetRequest r;
  r.set_name("mixed");
  ASSERT_TRUE(server_->stub()->GetDataset(&c, r, &d).ok());
  EXPECT_EQ(d.num_failed(), 2);
  ASSERT_EQ(d.failed_items_size(), 2);
  EXPECT_EQ(d.failed_items(0).item_id(), "broken.png");
  EXPECT_NE(d.failed_items(0).error().find("broken.png"), std::string::npos);
  // Selection works on the 10 good images; never picks a failed one.
  v1::GetSelectionResponse picks;
  ASSERT_TRUE(server_->SelectAndGet("mixed", "kcenter", 50, &picks));
  EXPECT_EQ(picks.total(), 10);  // every good image, no failed one, despite B = 50
  for (const auto& it : picks.items()) {
    EXPECT_NE(it.item_id(), "broken.png");
    EXPECT_NE(it.item_id(), "empty.jpg");
  }
}

TEST_F(BadInputTest, Manifest) {
  EXPECT_STATUS(RegisterManifest("m", root_ + "/missing.txt"), grpc::NOT_FOUND, "manifest.path");
  ASSERT_TRUE(
      WriteFileAtomically(root_ + "/dup.csv", "id,path\na,images/00000.png\na,images/00001.png\n")
          .ok());
  EXPECT_STATUS(RegisterManifest("m", root_ + "/dup.csv"), grpc::INVALID_ARGUMENT,
                "duplicate item id 'a'");
  ASSERT_TRUE(WriteFileAtomically(root_ + "/outside.txt", "/etc/passwd\n").ok());
  {
    // A line outside the roots is a failed item (like a missing file), not a refusal.
    v1::RegisterDatasetRequest r;
    r.set_name("outside");
    r.mutable_manifest()->set_path(root_ + "/outside.txt");
    grpc::ClientContext c;
    v1::Dataset d;
    ASSERT_TRUE(server_->stub()->RegisterDataset(&c, r, &d).ok());
    ASSERT_EQ(d.num_failed(), 1);
    EXPECT_EQ(d.failed_items(0).error(), "outside the allowed roots");
    EXPECT_EQ(d.failed_items(0).path(), "/etc/passwd");
  }
  ASSERT_TRUE(WriteFileAtomically(root_ + "/empty.txt", "\n# nothing\n").ok());
  EXPECT_STATUS(RegisterManifest("m", root_ + "/empty.txt"), grpc::INVALID_ARGUMENT, "no items");
  // Plain list with one missing file: registered, the missing file listed as failed.
  ASSERT_TRUE(
      WriteFileAtomically(root_ + "/ok.txt", "images/00000.png\nimages/00001.png\nimages/zz.png\n")
          .ok());
  v1::RegisterDatasetRequest r;
  r.set_name("m");
  r.mutable_manifest()->set_path(root_ + "/ok.txt");
  grpc::ClientContext c;
  v1::Dataset d;
  ASSERT_TRUE(server_->stub()->RegisterDataset(&c, r, &d).ok());
  EXPECT_EQ(d.num_items(), 3);
  EXPECT_EQ(d.num_failed(), 1);
}

TEST_F(BadInputTest, Embeddings) {
  EXPECT_STATUS(server_->RegisterNpy("e", root_ + "/none.npy"), grpc::NOT_FOUND, "embeddings.path");
  ASSERT_TRUE(model::WriteNpy(root_ + "/good.npy", torch::randn({10, 4})).ok());
  auto bytes = *ReadFile(root_ + "/good.npy");
  ASSERT_TRUE(WriteFileAtomically(root_ + "/trunc.npy", bytes.substr(0, bytes.size() - 7)).ok());
  EXPECT_STATUS(server_->RegisterNpy("e", root_ + "/trunc.npy"), grpc::INVALID_ARGUMENT,
                "truncated");
  ASSERT_TRUE(
      model::WriteNpy(root_ + "/int.npy", torch::arange(10, torch::kLong).view({5, 2})).ok());
  EXPECT_STATUS(server_->RegisterNpy("e", root_ + "/int.npy"), grpc::INVALID_ARGUMENT, "dtype");
  ASSERT_TRUE(model::WriteNpy(root_ + "/flat.npy", torch::randn({10})).ok());
  EXPECT_STATUS(server_->RegisterNpy("e", root_ + "/flat.npy"), grpc::INVALID_ARGUMENT, "[N, D]");
  torch::Tensor nan = torch::randn({10, 4});
  nan[6][1] = std::numeric_limits<float>::quiet_NaN();
  ASSERT_TRUE(model::WriteNpy(root_ + "/nan.npy", nan).ok());
  EXPECT_STATUS(server_->RegisterNpy("e", root_ + "/nan.npy"), grpc::INVALID_ARGUMENT, "row 6");
  ASSERT_TRUE(WriteFileAtomically(root_ + "/ids_dup.txt", "a\nb\nc\nd\ne\nf\ng\nh\ni\na\n").ok());
  EXPECT_STATUS(server_->RegisterNpy("e", root_ + "/good.npy", root_ + "/ids_dup.txt"),
                grpc::INVALID_ARGUMENT, "duplicate item id 'a'");
  ASSERT_TRUE(WriteFileAtomically(root_ + "/ids_short.txt", "a\nb\n").ok());
  EXPECT_STATUS(server_->RegisterNpy("e", root_ + "/good.npy", root_ + "/ids_short.txt"),
                grpc::INVALID_ARGUMENT, "embeddings.ids_path");
  EXPECT_FALSE(fs::exists(root_ + "/data/features/e"));
  ASSERT_TRUE(server_->RegisterNpy("e", root_ + "/good.npy").ok());
}

TEST_F(BadInputTest, SelectAndJobs) {
  EXPECT_STATUS(Select("nope", "kmeans", 3), grpc::NOT_FOUND, "nope");
  EXPECT_STATUS(Select("keep", "kmeans", 3), grpc::FAILED_PRECONDITION, "StartEmbedding");
  ASSERT_EQ(server_->WaitJob(server_->Embed("keep").job_id()).state(), v1::SUCCEEDED);
  EXPECT_STATUS(Select("keep", "magic", 3), grpc::INVALID_ARGUMENT, "strategy");
  EXPECT_STATUS(Select("keep", "kmeans", 0), grpc::INVALID_ARGUMENT, "budget");
  EXPECT_STATUS(Select("keep", "kmeans", 3, {"ghost.png"}, /*strict_labeled=*/true),
                grpc::INVALID_ARGUMENT, "ghost.png");
  EXPECT_STATUS(Select("keep", "updp", 3), grpc::INVALID_ARGUMENT, "prompt");
  grpc::ClientContext c;
  v1::GetJobRequest g;
  g.set_job_id("job-999");
  v1::Job j;
  EXPECT_STATUS(server_->stub()->GetJob(&c, g, &j), grpc::NOT_FOUND, "job-999");
  grpc::ClientContext c2;
  v1::GetSelectionRequest gs;
  gs.set_job_id("job-1");  // the EMBED job
  v1::GetSelectionResponse r;
  EXPECT_STATUS(server_->stub()->GetSelection(&c2, gs, &r), grpc::INVALID_ARGUMENT, "not a SELECT");
  v1::LearnPromptRequest lp;
  lp.set_dataset("keep");
  lp.set_prompt_name("p");
  lp.set_views(1);
  grpc::ClientContext c3;
  EXPECT_STATUS(server_->stub()->LearnPrompt(&c3, lp, &j), grpc::INVALID_ARGUMENT, "views");
}

TEST(QueueTest, FullQueueIsResourceExhausted) {
  std::string root = MakeTempDir("queue");
  WriteImages(root + "/images", 0, 40);
  Server server(root, TinyModel(root), /*chunk_size=*/16, /*queue_capacity=*/1);
  v1::Dataset d;
  ASSERT_TRUE(server.Register("a", root + "/images", &d).ok());
  ASSERT_TRUE(server.Register("b", root + "/images", &d).ok());
  ASSERT_TRUE(server.Register("c", root + "/images", &d).ok());
  // The first job is held running at its first progress report.
  server.gate().Arm([](const core::JobInfo& j) { return j.dataset == "a"; });
  v1::Job first = server.Embed("a");
  ASSERT_TRUE(server.gate().WaitHeld());
  v1::Job second = server.Embed("b");  // waits: the queue is now full
  v1::StartEmbeddingRequest r;
  r.set_dataset("c");
  grpc::ClientContext c;
  v1::Job j;
  grpc::Status s = server.stub()->StartEmbedding(&c, r, &j);
  EXPECT_EQ(s.error_code(), grpc::RESOURCE_EXHAUSTED) << s.error_message();
  for (const auto& id : {second.job_id(), first.job_id()}) {
    grpc::ClientContext cc;
    v1::CancelJobRequest cr;
    cr.set_job_id(id);
    EXPECT_TRUE(server.stub()->CancelJob(&cc, cr, &j).ok());
  }
  server.gate().Release();
  EXPECT_EQ(server.WaitJob(second.job_id()).state(), v1::CANCELLED);
  EXPECT_EQ(server.WaitJob(first.job_id()).state(), v1::CANCELLED);
  server.Stop();
}

}  // namespace
}  // namespace updp::testing
